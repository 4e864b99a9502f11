"""Excerpt: split retrieved chunks into sentences that know their exact source lines, scored against the question.

On a CPU every prompt token costs prefill time, so the prompt holds a few hundred tokens of sources: two or three
whole chunks. Most of a chunk does not bear on the question; its best sentences do. deepkb.answer.prompt.pack_excerpts
keeps the best sentences of every retrieved chunk (each chunk's kept text one contiguous window, so a citation
names one line span). The lines come from the file itself, read again with the loader that ingested it, so a
citation to an excerpt names the lines its text stands on; a chunk whose lines cannot be matched again (the file
changed or is gone) keeps its whole text and span.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from math import log
from pathlib import Path
from typing import TYPE_CHECKING

from deepkb.errors import LoadError
from deepkb.loaders import HTML_EXT, PDF_EXT, decode_text, load, reads_own_lines
from deepkb.loaders.html import load_html
from deepkb.retrieval.search import STOPWORDS, Hit, stem

if TYPE_CHECKING:
    import numpy as np

Embed = Callable[[Sequence[str]], "np.ndarray"]  # normalized vectors, one row per text (Embedder.embed)
Scored = dict[int, list["Segment"]]  # chunk id -> its segments, scored

# A sentence ends at . ! ? followed by white space and what can start a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"\w+", re.UNICODE)
SEGMENT_CHARS = 320  # a longer sentence spanning several lines (a code block, a table) is cut at line ends
# A segment's score: its cosine to the question + KEYWORD_WEIGHT x its share of the question's words (IDF-weighted);
# the share alone when no embedder is given. 0 scored best on the tune halves of SciFact and the manuals
# (bench/context_recall.py --sweep: 0, 0.25, 0.5, 1, 2).
KEYWORD_WEIGHT = 0.0
# Added to the score of a definition whose term the question names ("what does set -e do": the `-e` entry of bash's
# option list). Larger than any cosine gap between a chunk's sentences: the named term's definition goes first.
TERM_BONUS = 0.5
TERM_WORDS = 4  # a line of at most this many words, with no sentence end, that heads a paragraph: a term or heading
ELLIPSIS = "…"


@dataclass(frozen=True)
class Segment:
    """A sentence (or a few lines) of a chunk: where it sits in the chunk's text and in the source file."""

    start: int  # character offsets in the chunk's text
    end: int
    line_start: int  # source lines, as Hit.line_start/line_end count them
    line_end: int
    score: float = 0.0

    def text(self, hit: Hit) -> str:
        return hit.text[self.start : self.end]


# the source lines ---------------------------------------------------------------------------------------------
LoaderLine = tuple[str, int, int]  # a line of loader text and the first and last source lines it comes from


def loader_lines(path: str, page: int | None, first: int, last: int) -> list[LoaderLine] | None:
    """The document's text lines between source lines `first` and `last` as its loader produced them at ingest, each
    with its source lines; None when the file cannot be read. Cheap enough for every question: a text file's lines
    are its own, an HTML file is parsed from `first` to `last` only, a PDF has one page extracted."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    window = (first, last) if path.lower().endswith(_HTML) else (1, 0)  # text: the whole file, cached once
    lines = _loader_lines(path, page, stat.st_size, stat.st_mtime_ns, *window)
    return None if lines is None else [x for x in lines if x[1] >= first and x[2] <= last]


_HTML = tuple(HTML_EXT)


@lru_cache(maxsize=32)
def _loader_lines(
    path: str, page: int | None, size: int, mtime_ns: int, first: int, last: int
) -> list[LoaderLine] | None:
    file = Path(path)
    suffix = file.suffix.lower()
    try:
        if suffix in PDF_EXT:
            return _pdf_page_lines(file, page)
        if suffix not in HTML_EXT and not reads_own_lines(file):  # Word, EPUB, mail, man: the loader, whole file
            doc = load(file, file.read_bytes())
            return _unit_lines(u for u in doc.units if u.page == page)
        text, _ = decode_text(file.read_bytes())
    except (OSError, LoadError):
        return None
    lines = text.split("\n")
    if suffix not in HTML_EXT:  # plain text and Markdown units hold the file's own lines
        return [(line, i, i) for i, line in enumerate(lines, 1)]
    # An HTML file's visible text of source lines `first` to `last` (a chunk's text starts at a line start, outside
    # any tag; what a cut tag leaves at either end only adds text that the chunk's lines are then not matched to).
    # A chunk that starts inside a <pre> block is parsed from the block's start, so its lines keep their spacing.
    head = "\n".join(lines[: first - 1]).lower()
    opened = head.rfind("<pre")
    start = head.count("\n", 0, opened) + 1 if opened > head.rfind("</pre") else first
    doc = load_html("\n" * (start - 1) + "\n".join(lines[start - 1 : last]))
    return _unit_lines(doc.units)


def _unit_lines(units) -> list[LoaderLine]:
    out: list[LoaderLine] = []
    for unit in units:  # each line of a unit with its source lines, as the chunker takes them
        out.extend((t, a, b) for t, (a, b) in zip(unit.text.split("\n"), unit.line_spans()))
    return out


def _pdf_page_lines(file: Path, page: int | None) -> list[LoaderLine] | None:
    """One page's lines, numbered as the PDF loader numbers them (one page extracted, not the whole document)."""
    from deepkb.loaders.ocr import ocr_page_lines
    from deepkb.loaders.pdf import extract_page_lines

    if page is None:
        return None
    stat = file.stat()
    with _PDF_LOCK:  # one pypdf reader per file, shared: its stream is not safe to read from two threads
        try:
            reader = _pdf_reader(str(file), stat.st_size, stat.st_mtime_ns)
            if reader is None:
                return None
            try:
                found = _page_at(reader, page - 1)
            except Exception:  # an odd page tree: pypdf's own (slower: it flattens every page) lookup
                found = reader.pages[page - 1]
            lines = extract_page_lines(found, page, {})
            if not lines:  # a scanned page: the lines OCR gave it at ingest, from the OCR cache
                lines = ocr_page_lines(found) or []
        except Exception:  # pypdf raises many types on a damaged file; the chunk is then kept whole
            return None
    return [(text, i, i) for i, text in lines]


_PDF_LOCK = threading.Lock()


@lru_cache(maxsize=2)
def _pdf_reader(path: str, size: int, mtime_ns: int):
    from pypdf import PdfReader

    reader = PdfReader(path)
    if reader.is_encrypted and not reader.decrypt(""):
        return None
    return reader


def _page_at(reader, index: int):
    """The page at `index`, found by the page tree's counts: reader.pages[index] flattens the whole tree first
    (0.7 s for a 200-page manual on a 2-core CPU, against 0.1 s for this walk)."""
    from pypdf import PageObject

    node, ref = reader.trailer["/Root"]["/Pages"].get_object(), None
    inherited = {}
    while "/Kids" in node:
        for key in ("/Resources", "/MediaBox", "/CropBox", "/Rotate"):  # what a page inherits from its parents
            if key in node:
                inherited[key] = node.raw_get(key)
        for kid_ref in node["/Kids"]:
            kid = kid_ref.get_object()
            count = kid.get("/Count", 1) if "/Kids" in kid else 1
            if index < count:
                node, ref = kid, kid_ref
                break
            index -= count
        else:
            raise IndexError(index)
    page = PageObject(reader, ref)
    page.update(node)
    for key, value in inherited.items():
        page.setdefault(key, value)
    return page


def line_spans(hit: Hit) -> list[tuple[int, int] | None] | None:
    """The source lines of each line of the chunk's text (None for the blank lines between paragraphs), matched in
    order against the file's loader lines inside the chunk's span; None when they do not all match."""
    if hit.line_start is None or hit.line_end is None:
        return None
    inside = loader_lines(hit.path, hit.page, hit.line_start, hit.line_end)
    if inside is None:
        return None
    spans: list[tuple[int, int] | None] = []
    j, offset = 0, 0  # the loader line being matched, and how much of it earlier chunk lines took
    for line in hit.text.split("\n"):
        if not line.strip():
            spans.append(None)
            continue
        # A chunk line is a whole loader line, or a piece of an over-long one that the chunker cut at words.
        equal = next((k for k in range(j + (offset > 0), len(inside)) if inside[k][0] == line), None)
        if equal is not None and (offset == 0 or equal > j):
            j, offset = equal, len(line)
        else:
            while j < len(inside) and (pos := inside[j][0].find(line, offset)) < 0:
                j, offset = j + 1, 0
            if j == len(inside):
                return None
            offset = pos + len(line)
        spans.append((inside[j][1], inside[j][2]))
    return spans


# the segments -------------------------------------------------------------------------------------------------
def segments(hit: Hit) -> list[Segment] | None:
    """The chunk's sentences in order, each with the source lines it stands on; None when the lines are unknown."""
    spans = line_spans(hit)
    if spans is None:
        return None
    lines = hit.text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    rows = [(starts[k], starts[k] + len(lines[k]), spans[k]) for k in range(len(lines)) if spans[k] is not None]
    out: list[Segment] = []
    i = 0
    while i < len(rows):  # a paragraph: chunk lines with no blank line between them
        j = i + 1
        while j < len(rows) and rows[j][0] == rows[j - 1][1] + 1:
            j += 1
        out.extend(_paragraph_segments(hit.text, rows[i:j]))
        i = j
    return _glue_headings(hit, out)


def _glue_headings(hit: Hit, segs: list[Segment]) -> list[Segment]:
    """A heading line, or the term of a definition list (`-e`, `pipefail`, `--continue::`), says little alone: it joins
    the sentence after it, so the term and its definition are scored and kept together."""
    last = (hit.heading or "").rsplit(" > ", 1)[-1].strip()
    out: list[Segment] = []
    for seg in segs:
        if out and out[-1].end < seg.start and (_is_heading(out[-1].text(hit), last) or _is_term(out[-1].text(hit))):
            out[-1] = Segment(out[-1].start, seg.end, out[-1].line_start, max(out[-1].line_end, seg.line_end))
        else:
            out.append(seg)
    return out


def _is_heading(text: str, last: str) -> bool:
    return "\n" not in text and (text.startswith("#") or bool(last) and text.strip() == last)


def _is_term(text: str) -> bool:
    """A short line that ends no sentence: a definition list's term, or a heading."""
    line = text.strip()
    return "\n" not in line and 0 < len(line.split()) <= TERM_WORDS and not line.endswith((".", "!", "?", ","))


_TOKEN = re.compile(r"-{0,2}[^\W_][\w.-]*", re.UNICODE)  # a word, or an option with its dashes: -e, --continue
_MARKUP = "*`'\"_:[]"  # what AsciiDoc and Markdown put around a term: *--continue*::, `pipefail`


def term(text: str) -> str | None:
    """The term a definition starts with (its first line's first token, markup stripped), when it starts with one."""
    first, sep, rest = text.partition("\n")
    if not sep or not rest.strip() or not _is_term(first):
        return None
    found = _TOKEN.match(first.strip().strip(_MARKUP))
    return found.group(0).rstrip(".-") if found else None


def names_term(question: str, name: str | None) -> bool:
    """Whether the question names the term: exactly for an option (`-e` is not `-E`), in any case for a word."""
    if not name or name.lower() in STOPWORDS:
        return False
    tokens = {t.rstrip(".-") for t in _TOKEN.findall(question)}
    return name in tokens if name.startswith("-") else name.lower() in {t.lower() for t in tokens}


def _paragraph_segments(text: str, rows: list[tuple[int, int, tuple[int, int]]]) -> list[Segment]:
    """A paragraph's sentences; a long one that spans lines (a code block, a table) is cut at line ends."""
    begin, end = rows[0][0], rows[-1][1]
    cuts = [begin] + [m.end() for m in _SENTENCE_END.finditer(text, begin, end)] + [end]
    pieces: list[tuple[int, int]] = []
    for a, b in zip(cuts, cuts[1:]):
        b = a + len(text[a:b].rstrip())
        if b - a <= SEGMENT_CHARS or "\n" not in text[a:b]:
            pieces.append((a, b))
            continue
        at = a  # whole lines, at most SEGMENT_CHARS a piece (one line at least)
        for k, (_, line_end, _) in enumerate(rows):
            if at < line_end <= b:
                following = rows[k + 1][1] if k + 1 < len(rows) else None
                if following is None or following > b or following - at > SEGMENT_CHARS:
                    pieces.append((at, line_end))
                    at = line_end + 1
        if at < b:
            pieces.append((at, b))
    out = []
    for a, b in pieces:
        if b <= a:
            continue
        covered = [span for start, stop, span in rows if start < b and stop >= a]
        out.append(Segment(a, b, min(s[0] for s in covered), max(s[1] for s in covered)))
    return out


# the scores ---------------------------------------------------------------------------------------------------
def _terms(text: str) -> set[str]:
    return {stem(w) for w in (w.lower() for w in _WORD.findall(text)) if w not in STOPWORDS}


def score_segments(
    question: str, hits: Sequence[Hit], embed: Embed | None = None, keyword_weight: float = KEYWORD_WEIGHT
) -> Scored:
    """Each hit's segments (by chunk id), scored by cosine to the question (one batched embed call) plus
    `keyword_weight` x the IDF-weighted share of the question's words they hold (that share alone when `embed` is
    None). Hits whose lines are unknown are left out."""
    found = {hit.chunk_id: segs for hit in hits if (segs := segments(hit))}
    by_id = {hit.chunk_id: hit for hit in hits}
    flat = [(cid, seg) for cid, segs in found.items() for seg in segs]
    if not flat:
        return {}
    texts = [seg.text(by_id[cid]) for cid, seg in flat]
    seg_terms = [_terms(t) for t in texts]
    q_terms = _terms(question)
    idf = {t: log(1 + len(flat) / (1 + sum(t in s for s in seg_terms))) for t in q_terms}
    total = sum(idf.values()) or 1.0
    keyword = [sum(idf[t] for t in q_terms & s) / total for s in seg_terms]
    dense = [0.0] * len(flat)
    if embed is not None:
        vectors = embed([question, *texts])
        dense = [float(x) for x in vectors[1:] @ vectors[0]]
    else:
        keyword_weight = 1.0
    out: dict[int, list[Segment]] = {cid: [] for cid in found}
    for (cid, seg), text, d, k in zip(flat, texts, dense, keyword):
        bonus = TERM_BONUS if names_term(question, term(text)) else 0.0
        out[cid].append(replace(seg, score=round(d + keyword_weight * k + bonus, 6)))
    return out


def window(hit: Hit, segs: Sequence[Segment], lo: int, hi: int) -> Hit:
    """The hit narrowed to segments lo..hi: their text (an ellipsis marks a cut) and the source lines they span."""
    if lo == 0 and hi == len(segs) - 1 and segs[0].start == 0 and segs[-1].end >= len(hit.text.rstrip()):
        text = hit.text
    else:
        text = hit.text[segs[lo].start : segs[hi].end]
        if segs[lo].start > 0:
            text = ELLIPSIS + " " + text
        if segs[hi].end < len(hit.text.rstrip()):
            text += " " + ELLIPSIS
    span = (min(s.line_start for s in segs[lo : hi + 1]), max(s.line_end for s in segs[lo : hi + 1]))
    return replace(hit, text=text, line_start=span[0], line_end=span[1], best_start=0)
