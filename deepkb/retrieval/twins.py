"""Twins: the same passage in two documents (a page shipped as .txt and .html, a file copied to another folder) is
one search result, listing the other places it stands in `also_in`.

Runs on the ranked hits at the end of a search: a hit whose text is the same passage as a better-ranked hit's from
another document joins that hit as a place. "The same passage" is judged on the words' order, not on markup or line
breaks: the share of the shorter passage's word triples that the other holds (AsciiDoc's `linkgit:git-mv[1]` and
the HTML's `git-mv(1)` differ in a word or two; two different passages of one manual share few triples).
"""

from __future__ import annotations

import re
from dataclasses import replace

from deepkb.retrieval.search import Hit, Place

# The share of the shorter passage's word triples found in the other above which two passages are twins. Measured
# on git-doc's git-clean page: each .txt chunk's best .html chunk holds 0.77-1.0 of it; chunks of git-clean against
# git-rebase at most 0.08, except the one-line footer both pages end with ("Part of the git(1) suite"), which is
# the same text (0.8) and is folded.
SAME_PASSAGE = 0.5
MIN_TRIPLES = 8  # a shorter passage (a heading, one line of code) is folded only when its text is the very same
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def triples(text: str) -> frozenset[tuple[str, str, str]]:
    """The passage's consecutive word triples (lowercased; punctuation and markup between words ignored)."""
    ws = _WORD.findall(text.lower())
    return frozenset(zip(ws, ws[1:], ws[2:]))


def overlap(a: frozenset, b: frozenset) -> float:
    """The share of the smaller set that the other holds."""
    if not a or not b:
        return 0.0
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return len(small & large) / len(small)


def same_numbers(a: str, b: str) -> bool:
    """Every number of the shorter passage stands in the other: two versions of a text that differ in a figure (a
    contract's amount, a version, a date) state different facts and are never folded into one result."""
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return set(_NUMBER.findall(small)) <= set(_NUMBER.findall(large))


def group_twins(hits: list[Hit], k: int, same_passage: float = SAME_PASSAGE) -> list[Hit]:
    """The first `k` distinct passages of `hits` (best first), each with the places of its twins in `also_in`."""
    kept: list[Hit] = []
    shapes: list[frozenset] = []
    flats: dict[str, list[int]] = {}  # a kept passage's text, white space folded -> the kept passages with that text
    for hit in hits:
        shape = triples(hit.text)
        flat = " ".join(hit.text.split())
        # the very same text (a copied file), however short
        twin = next((i for i in flats.get(flat, ()) if kept[i].path != hit.path), None)
        if twin is None and len(shape) >= MIN_TRIPLES:
            twin = next(
                (i for i, (other, s) in enumerate(zip(kept, shapes))
                 if other.path != hit.path and overlap(shape, s) >= same_passage and same_numbers(hit.text, other.text)),
                None,
            )  # fmt: skip
        if twin is not None:
            other = kept[twin]
            kept[twin] = replace(other, also_in=(*other.also_in, Place.of(hit)))
        elif len(kept) < k:
            flats.setdefault(flat, []).append(len(kept))
            kept.append(hit)
            shapes.append(shape)
    return kept
