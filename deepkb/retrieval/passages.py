"""Passages: consecutive chunks of one document that a search finds together are one result.

Runs on the ranked hits at the end of a search, after twins are folded (deepkb.retrieval.twins): a definition, a
procedure or an example that runs over two or three chunks is shown whole and once, at the rank of the best of its
chunks, and the places after it go to other passages. Its text is the chunks' text with the lines a chunk repeats
from the one before it (the chunker's overlap) said once, so it stands on its lines from the first chunk's first to
the last chunk's last, as a chunk does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from deepkb.retrieval.search import Hit, Place
from deepkb.types import MAX_GAP, common_heading

if TYPE_CHECKING:
    from deepkb.storage.catalog import ChunkRow

# A passage joins at most this many consecutive chunks of its document: about 500 tokens, a page of a manual. On the
# manuals' tune half (bench/manuals.py), joining at most 1 / 2 / 3 / 4 chunks among the first 30 hits scored MRR@10
# 0.520 / 0.562 / 0.570 / 0.584 (hit@5 69% / 73% / 74% / 76%); 3 keeps a passage one screen long.
JOIN_CHUNKS = 3
JOIN_WINDOW = 30  # the hits among which chunks are joined: a fixed depth, so more hits never reorder the first ones

Places = dict[int, tuple[int, int]]  # chunk id -> (document id, place in the document)


def join_neighbours(hits: list[Hit], places: Places, window: int = JOIN_WINDOW) -> list[Hit]:
    """The first `window` hits with those from consecutive chunks of one document joined into one passage (at most
    JOIN_CHUNKS, never across a page nor over more than MAX_GAP lines without text), then the rest as they are."""
    groups: list[list[Hit]] = []
    where: dict[tuple[int, int], tuple[int, Hit]] = {}  # (document, place) -> its group, and its hit
    for hit in hits[:window]:
        doc, place = places.get(hit.chunk_id, (None, None))
        joined = None if doc is None else next((g for g in _neighbour_groups(where, doc, place, hit, groups)), None)
        if joined is None:
            joined = len(groups)
            groups.append([])
        groups[joined].append(hit)
        if doc is not None:
            where[(doc, place)] = (joined, hit)
    return [_passage(group, places) for group in groups] + hits[window:]


def _neighbour_groups(where, doc: int, place: int, hit: Hit, groups: list[list[Hit]]):
    """The groups holding the chunk just before or just after this one that it may join."""
    for step in (-1, 1):
        g, neighbour = where.get((doc, place + step), (None, None))
        if g is None or len(groups[g]) >= JOIN_CHUNKS or neighbour.page != hit.page:
            continue
        first, then = (neighbour, hit) if step == -1 else (hit, neighbour)
        if None not in (first.line_end, then.line_start) and then.line_start - first.line_end <= MAX_GAP:
            yield g


def _passage(group: list[Hit], places: Places) -> Hit:
    """One hit for consecutive chunks: the best one's rank and scores, their text once, their lines from the first
    one's start to the last one's end, what their headings share, and their twins' places, one span a document."""
    if len(group) == 1:
        return group[0]
    return joined(sorted(group, key=lambda h: places[h.chunk_id][1]), best=group[0])


def joined(ordered: list[Hit], best: Hit | None = None) -> Hit:
    """Consecutive chunks of one document (in document order) as one passage, at `best`'s rank (the first's by
    default): what a search returns for them, and what the MCP fetch tool returns for its id."""
    best = best or ordered[0]
    if len(ordered) == 1:
        return best
    text, best_start = ordered[0].text, 0
    for before, hit in zip(ordered, ordered[1:]):
        if hit.line_start <= before.line_end:
            text, start = _stitch(text, hit.text)
        else:
            text, start = text + "\n\n" + hit.text, len(text) + 2
        if hit is best:
            best_start = start
    return replace(
        best,
        text=text,
        line_start=ordered[0].line_start,
        line_end=max(h.line_end for h in ordered),
        heading=_common_heading([h.heading for h in ordered]),
        dense_score=max((h.dense_score for h in ordered if h.dense_score is not None), default=None),
        keyword_score=max((h.keyword_score for h in ordered if h.keyword_score is not None), default=None),
        also_in=_merged_places([p for h in ordered for p in h.also_in]),
        chunk_ids=tuple(h.chunk_id for h in ordered),
        best_start=best_start,
    )


def from_rows(rows: Sequence[ChunkRow], score: float = 0.0) -> Hit:
    """Consecutive stored chunks of one document (in document order) as the one passage a search returns for them."""
    return joined([Hit(r.id, r.path, r.page, r.line_start, r.line_end, r.heading, score, r.text) for r in rows])


def _stitch(text: str, following: str) -> tuple[str, int]:
    """`text` then `following` without the lines `following` opens with that `text` ends with (a chunk's overlap),
    and where `following` starts in the result."""
    ends, opens = text.split("\n"), following.split("\n")
    for n in range(min(len(ends), len(opens)), 0, -1):
        if ends[-n:] == opens[:n]:
            rest = "\n".join(opens[n:])
            start = len(text) - len("\n".join(ends[-n:]))
            return text + ("\n" + rest if rest and not rest.startswith("\n") else rest), start
    return text + "\n\n" + following, len(text) + 2


def _common_heading(headings: list[str | None]) -> str | None:
    """What the chunks' heading paths share; the first one's when they share nothing."""
    paths = [h for h in headings if h]
    return (common_heading(paths) or paths[0]) if paths else None


def _merged_places(places: list[Place]) -> tuple[Place, ...]:
    """The twins' places of a passage's chunks, one a document and page (from the first line to the last), in the
    order they first come."""
    spans: dict[tuple[str, int | None], Place] = {}
    for p in places:
        key = (p.path, p.page)
        seen = spans.get(key)
        if seen is None or None in (seen.line_start, seen.line_end, p.line_start, p.line_end):
            spans.setdefault(key, p)
            continue
        spans[key] = Place(p.path, p.page, min(seen.line_start, p.line_start), max(seen.line_end, p.line_end))
    return tuple(spans.values())
