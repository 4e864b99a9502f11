"""Rerank: the first passages of a hybrid search scored again by their best few sentences.

A chunk is embedded whole (up to the model's 256 tokens), and one vector of a chunk that holds a definition among
other things says less about that definition than the sentences themselves do; all-MiniLM-L6-v2 was trained on
sentence pairs of at most 128 tokens. So the first `top` passages of a hybrid search are cut into windows of whole
sentences (about WINDOW_WORDS words, each with the passage's heading path before it, as the chunk was embedded),
each window is embedded with the question, and a passage's window score is its best window's cosine. The new order
is the fused score plus WEIGHT x the window score, each min-max normalized over those passages.

Off by default (Settings.rerank = 0), on with `rerank = 10`: on the manuals (bench/manuals.py, PIPELINE_VERSION 18)
it lifts hybrid MRR@10 on the tune half from 0.575 to 0.640 and on the held-out half from 0.577 to 0.604 (hit@5 78% ->
81%; long single-page HTML 0.532 -> 0.689, PDF pages 0.668 -> 0.576), but on SciFact nDCG@10 falls from 0.7305 to 0.7248
(weights 0.5 and 1: 0.728), below the 0.73 the default must keep, and a search costs one batch of 40-100 windows
through the model: 0.3 s on a 2-core CPU (SciFact p50, k = 10) against 12 ms. The tune half chose the window (15 /
25 / 35 / 50 / 80 words at weight 2: 0.613 / 0.624 / 0.583 / 0.589 / 0.555), the weight (1 / 2 / 3 / 5: 0.592 /
0.624 / 0.622 / 0.608) and the depth (10 / 20 / 30 passages: 0.624 / 0.623 / 0.629; 10 is the cheapest), at
PIPELINE_VERSION 9, where the default scored 0.572. Windows are remembered by their text, so a service asked about
one topic again embeds them once.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING

from deepkb.retrieval.search import Hit

if TYPE_CHECKING:
    import numpy as np

    from deepkb.embedders import Embedder

WINDOW_WORDS = 25  # a window: whole sentences up to about this many words (a longer sentence is cut)
WEIGHT = 2.0  # the window score's weight against the fused score (both min-max normalized over the reranked)
TOP = 10  # passages reranked when a caller gives no number (Settings.rerank says how many a search reranks)
CACHE_WINDOWS = 8192  # window vectors remembered (384 floats each: 12 MB)

# A sentence ends at . ! ? or : followed by white space; a blank line ends a paragraph.
_BREAK = re.compile(r"(?<=[.!?:])\s+|\n\s*\n")

_caches: weakref.WeakKeyDictionary[Embedder, OrderedDict[str, np.ndarray]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def windows(text: str, words: int = WINDOW_WORDS) -> list[str]:
    """The text as windows of whole sentences of about `words` words; a sentence over 1.5 x `words` is cut."""
    out: list[str] = []
    current: list[str] = []
    for sentence in _BREAK.split(text):
        tokens = sentence.split()
        if current and len(current) + len(tokens) > words:
            out.append(" ".join(current))
            current = []
        current += tokens
        while len(current) > words * 1.5:
            out.append(" ".join(current[:words]))
            current = current[words:]
    if current:
        out.append(" ".join(current))
    return out


def rerank(hits: list[Hit], question: str, embedder: Embedder, top: int = TOP) -> list[Hit]:
    """The first `top` hits in the order of fused score + WEIGHT x best window cosine (each min-max normalized over
    them), then the rest as they came. A reranked hit's score is mapped back into the range its fused scores spanned,
    so scores still fall down the list, and `window_score` holds its best window's cosine."""
    head, rest = hits[:top], hits[top:]
    if len(head) < 2:
        return hits
    texts = [[(h.heading + "\n" if h.heading else "") + w for w in windows(h.text) or [h.text]] for h in head]
    q, vectors = _embed_cached(embedder, question, list(dict.fromkeys(t for group in texts for t in group)))
    best = [max(float(vectors[t] @ q) for t in group) for group in texts]
    fused = [h.score for h in head]
    lo, hi = min(fused), max(fused)
    combined = [
        (_norm(f, lo, hi) + WEIGHT * _norm(b, min(best), max(best))) / (1 + WEIGHT) for f, b in zip(fused, best)
    ]
    order = sorted(range(len(head)), key=lambda i: (-combined[i], i))
    return [
        replace(head[i], score=round(lo + (hi - lo) * combined[i], 6), window_score=round(best[i], 6)) for i in order
    ] + rest


def _norm(value: float, lo: float, hi: float) -> float:
    return (value - lo) / (hi - lo) if hi > lo else 1.0


def _embed_cached(embedder: Embedder, question: str, texts: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The question's vector and each text's, in one batch of the question and the texts not remembered yet; texts'
    vectors are remembered per embedder (the least recently used are forgotten first)."""
    with _cache_lock:
        cache = _caches.setdefault(embedder, OrderedDict())
        known = {t: cache[t] for t in texts if t in cache}
        for t in known:
            cache.move_to_end(t)
    missing = [t for t in texts if t not in known]
    vectors = embedder.embed([question, *missing])
    known.update(zip(missing, vectors[1:]))
    with _cache_lock:
        cache.update((t, known[t]) for t in missing)
        while len(cache) > CACHE_WINDOWS:
            cache.popitem(last=False)
    return vectors[0], known
