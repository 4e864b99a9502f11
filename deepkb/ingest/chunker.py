"""Chunker: units become chunks sized in the embedding model's own tokens, with stable, content-defined cuts.

Cuts fall on headings and pages first, then between paragraphs. A cut between paragraphs is taken either when
the next paragraph would overflow the target size, or (once a chunk is half full) where a paragraph's content
hash says so, or before a lead-in (a definition list's term). The hash cuts make
boundaries depend on local content only, so an edit to one paragraph re-chunks its own neighbourhood and the rest
of the file keeps its chunks (and their embeddings). A chunk never ends on a lead-in: cut there, the term goes on
with its definition ("\\timing [ on | off ]" with "turns displaying of how long each SQL statement takes on or off").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from deepkb.loaders import Unit
from deepkb.types import MAX_GAP, Chunk, common_heading

TokenCounter = Callable[[Sequence[str]], list[int]]
CUT_EVERY = 3  # on average one paragraph in CUT_EVERY ends a chunk by its hash, once the chunk is half full


def _leads(unit: Unit) -> bool:
    """The unit introduces the one after it: a definition list's term (the loader says which)."""
    return unit.lead and not unit.boundary


@dataclass
class _Line:
    text: str
    start: int  # source lines this text comes from (a reflowed HTML paragraph spans several)
    end: int
    tokens: int


@dataclass
class _Draft:
    page: int | None
    heading: str | None
    paragraphs: list[list[_Line]]

    def chunk(self, n_tokens: int) -> Chunk:
        paragraphs = _trimmed(self.paragraphs)
        text = "\n\n".join("\n".join(line.text for line in para) for para in paragraphs)
        lines = [line for para in paragraphs for line in para]
        start, end = min(x.start for x in lines), max(x.end for x in lines)
        return Chunk(text, self.page, start, end, self.heading, n_tokens)


def _trimmed(paragraphs: list[list[_Line]]) -> list[list[_Line]]:
    """The paragraphs without the blank lines a chunk would start or end on. A code block larger than a chunk is cut
    between its lines, and a piece (or the overlap it starts with) may begin at a blank line of the block: its span
    began a line before its text (a README's `apt install` block, cited from the blank line above "# gcrypt
    libraries"). Blank lines inside stay."""
    lines = [(p, k) for p, para in enumerate(paragraphs) for k, line in enumerate(para) if line.text.strip()]
    if not lines:
        return paragraphs
    (p0, k0), (p1, k1) = lines[0], lines[-1]
    if p0 == p1:
        return [paragraphs[p0][k0 : k1 + 1]]
    return [paragraphs[p0][k0:], *paragraphs[p0 + 1 : p1], paragraphs[p1][: k1 + 1]]


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=4).digest(), "big")


def chunk_units(
    units: Sequence[Unit],
    count_tokens: TokenCounter,
    max_tokens: int,
    target_tokens: int = 200,
    overlap_tokens: int = 32,
) -> list[Chunk]:
    """Pack units into chunks of at most max_tokens (embedded text, heading included) and about target_tokens."""
    if not units:
        return []
    lines_per_unit = [u.text.split("\n") for u in units]
    flat = [line for lines in lines_per_unit for line in lines]
    headings = sorted({u.heading for u in units if u.heading})
    counts = count_tokens(flat + headings)
    heading_tokens = dict(zip(headings, counts[len(flat) :]))
    line_counts = iter(counts[: len(flat)])

    drafts: list[_Draft] = []
    current: list[list[_Line]] = []  # paragraphs of the open chunk
    cur_tokens = 0
    cur_unit: Unit | None = None
    body = False  # the open chunk holds more than headings
    leads: list[bool] = []  # of each paragraph of the open chunk: a whole lead-in unit
    titles: list[bool] = []  # of each paragraph of the open chunk: a section title
    heads: list[str | None] = []  # of each paragraph of the open chunk: its unit's heading path

    def trailing_leads() -> int:
        """The lead-ins the open chunk ends on; all its paragraphs when only section titles come before them (the
        title goes on with its first term: git-stash's "COMMANDS" stood alone, its term moved on to its definition)."""
        n = len(leads) - next((i + 1 for i in range(len(leads) - 1, -1, -1) if not leads[i]), 0)
        return len(leads) if n and all(titles[: len(titles) - n]) else n

    def lead_ins_only() -> bool:
        """The open chunk holds only lead-ins, after section titles if any: the next line stays with them."""
        return any(leads) and all(lead or title for lead, title in zip(leads, titles))

    def cut() -> None:
        """Close the open chunk between paragraphs; the lead-ins at its end move on to the next one."""
        nonlocal current, cur_tokens, body, leads, heads, titles
        n = trailing_leads()
        if n and n == len(current):  # nothing but terms: they stay with their definition, whatever its size
            return
        if not 0 < n < len(current):
            close(keep_overlap=True)
            return
        carried, carried_heads = current[-n:], heads[-n:]
        current, heads = current[:-n], heads[:-n]
        close(keep_overlap=False)
        current, leads, heads, titles, body = carried, [True] * n, carried_heads, [False] * n, True
        cur_tokens = sum(line.tokens for para in carried for line in para)

    def close(keep_overlap: bool) -> None:
        nonlocal current, cur_tokens, body, leads, heads, titles
        if current and cur_unit is not None:
            drafts.append(_Draft(cur_unit.page, _shared(heads), current))
        tail: list[_Line] = []
        if keep_overlap and current:
            budget = overlap_tokens
            for line in reversed(current[-1]):
                if line.tokens > budget or len(tail) + 1 >= sum(len(p) for p in current):
                    break
                tail.insert(0, line)
                budget -= line.tokens
        current = [tail] if tail else []
        leads = [False] * len(current)
        titles = [False] * len(current)
        heads = heads[-1:] if tail else []
        cur_tokens = sum(line.tokens for line in tail)
        body = bool(tail)

    for unit, texts in zip(units, lines_per_unit):
        lines = [_Line(t, a, b, next(line_counts)) for t, (a, b) in zip(texts, unit.line_spans())]
        limit = max(8, min(target_tokens, max_tokens - 1 - heading_tokens.get(unit.heading, 0)))
        size = sum(line.tokens for line in lines)
        new_page = cur_unit is not None and (
            unit.page != cur_unit.page or bool(current) and lines[0].start - current[-1][-1].end > MAX_GAP
        )  # fmt: skip
        if unit.boundary or new_page:
            if body:
                close(keep_overlap=False)
            elif new_page:  # headings alone at a page's foot (or before a gap): they never cross it
                current, cur_tokens, leads, heads, titles = [], 0, [], [], []
            elif unit.heading:
                # A heading whose section is empty (SQLite's "1. Syntax" over a diagram, then "2. Description") stays
                # in the text but does not head the chunk: the next heading's path does.
                heads = [h if _within(unit.heading, h) else unit.heading for h in heads]
        elif current and cur_tokens + size > limit:
            cut()
        elif body and cur_tokens >= limit // 2 and (_leads(unit) or _stable_hash(unit.text) % CUT_EVERY == 0):
            cut()
        cur_unit = unit
        if cur_tokens + size <= limit:
            current.append(lines)
            leads.append(_leads(unit))
            titles.append(unit.boundary)
            heads.append(unit.heading)
            cur_tokens += size
        else:  # a paragraph larger than a chunk: fill line by line, splitting over-long lines by words
            para: list[_Line] = []
            for line in _split_long_lines(lines, limit, count_tokens):
                # The first line of a definition stays with the lead-ins (its terms) the chunk holds alone.
                if cur_tokens + line.tokens > limit and cur_tokens > 0 and (para or not lead_ins_only()):
                    if para:
                        current.append(para)
                        leads.append(False)
                        titles.append(False)
                        heads.append(unit.heading)
                    close(keep_overlap=True)
                    para = []
                para.append(line)
                cur_tokens += line.tokens
            if para:
                current.append(para)
                leads.append(False)
                titles.append(False)
                heads.append(unit.heading)
        body = body or not unit.boundary
    if body:
        close(keep_overlap=False)
    return _enforce_limit(drafts, count_tokens, max_tokens)


def _within(path: str, heading: str | None) -> bool:
    """`path` is `heading` itself or a section below it."""
    return heading is not None and (path == heading or path.startswith(heading + " > "))


def _shared(headings: list[str | None]) -> str | None:
    """A chunk's heading path: what its paragraphs' paths share (a chunk holding the entries -a, -b and -e of a
    definition list stands under the list's term, "set", not under the last entry's)."""
    if not headings or not all(headings):
        return headings[-1] if headings else None
    return common_heading(headings) or None


def _split_long_lines(lines: list[_Line], limit: int, count_tokens: TokenCounter) -> list[_Line]:
    """Lines longer than a chunk are cut into word windows that keep the line's number."""
    out: list[_Line] = []
    for line in lines:
        if line.tokens <= limit:
            out.append(line)
            continue
        words = line.text.split(" ")
        word_tokens = count_tokens(words)
        piece: list[str] = []
        piece_tokens = 0
        for word, n in zip(words, word_tokens):
            if piece and piece_tokens + n > limit:
                if " ".join(piece).strip():  # a run of spaces alone is no text of the line
                    out.append(_Line(" ".join(piece), line.start, line.end, piece_tokens))
                piece, piece_tokens = [], 0
            if n > limit:  # one "word" longer than a chunk (base64, minified code): cut by characters
                if " ".join(piece).strip():
                    out.append(_Line(" ".join(piece), line.start, line.end, piece_tokens))
                piece, piece_tokens = [], 0
                step = max(1, len(word) * limit // (2 * n))
                out.extend(
                    _Line(word[i : i + step], line.start, line.end, limit // 2) for i in range(0, len(word), step)
                )
                continue
            piece.append(word)
            piece_tokens += n
        if " ".join(piece).strip():
            out.append(_Line(" ".join(piece), line.start, line.end, piece_tokens))
    return out


def _enforce_limit(drafts: list[_Draft], count_tokens: TokenCounter, max_tokens: int) -> list[Chunk]:
    """Count each chunk's embedded text exactly; split the rare chunk that the line sums underestimated."""
    chunks = [d.chunk(0) for d in drafts]
    exact = count_tokens([c.embed_text for c in chunks]) if chunks else []
    out: list[Chunk] = []
    for draft, chunk, n in zip(drafts, chunks, exact):
        lines = [line for para in draft.paragraphs for line in para]
        if n <= max_tokens or len(lines) < 2:
            out.append(replace(chunk, n_tokens=n))
            continue
        half = len(lines) // 2
        parts = [_Draft(draft.page, draft.heading, [lines[:half]]), _Draft(draft.page, draft.heading, [lines[half:]])]
        out.extend(_enforce_limit(parts, count_tokens, max_tokens))
    return out
