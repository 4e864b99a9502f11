"""Retriever: dense (HNSW), keyword (FTS5 BM25) and hybrid (reciprocal rank fusion) search."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from deepkb.errors import UsageError
from deepkb.scope import Scope

if TYPE_CHECKING:
    import numpy as np

    from deepkb.config import Settings
    from deepkb.embedders import Embedder
    from deepkb.storage.storage import Storage
    from deepkb.storage.vectors import VectorIndex

    Allowed = set[int] | tuple[list[int], np.ndarray] | None  # what a scope lets the dense side return

MODES = ("hybrid", "dense", "keyword")

# Words too common to say anything; dropping them keeps FTS5 posting lists short and BM25 meaningful.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of
    off on once only or other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours yourself yourselves""".split()
)


def stem(word: str) -> str:
    """The one stemmer of deepkb's Python side (FTS5 stems with Porter inside SQLite): enough of a lowercase word to
    match its other forms ("rotating" ~ "rotat", "lights" ~ "light", "changes" ~ "chang", "quickly" ~ "quick")."""
    if word.endswith("ly") and len(word) > 5:
        word = word[:-2]
    for suffix in ("ions", "ion", "ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 32  # a pasted paragraph is still one query
SCOPE_CACHE = 4  # scopes whose allowed vectors are kept (per Storage, until the next write)
ENTRY_WINDOW = 30  # the hits among which an entry's first chunk goes before the rest of it (entry_first)


@dataclass(frozen=True)
class Place:
    """Another place a hit's passage stands (a twin: the same page as .txt and .html, a copied file)."""

    path: str
    page: int | None
    line_start: int | None
    line_end: int | None

    @classmethod
    def of(cls, hit: Hit) -> Place:
        return cls(hit.path, hit.page, hit.line_start, hit.line_end)


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk with its exact source location."""

    chunk_id: int
    path: str  # absolute path of the document
    page: int | None  # 1-based PDF page, None for text formats
    line_start: int | None  # 1-based, inclusive (lines of the file, or of the PDF page's text)
    line_end: int | None
    heading: str | None  # heading path, e.g. "Security policy > Key rotation"
    score: float  # the mode's own score: RRF (hybrid), cosine similarity (dense), BM25 (keyword)
    text: str  # the chunk's full text
    dense_score: float | None = None  # cosine similarity to the query, when the dense side saw this chunk
    keyword_score: float | None = None  # BM25 (higher is better), when the keyword side matched this chunk
    also_in: tuple[Place, ...] = ()  # the same passage in other documents (deepkb.retrieval.twins), best ranked first
    chunk_ids: tuple[int, ...] = ()  # the consecutive chunks the passage joins, in document order (retrieval.passages)
    best_start: int = 0  # where in `text` the best-ranked of those chunks starts (0: the first, or a single chunk)
    window_score: float | None = None  # cosine of its best sentence window to the query, when reranked (rerank)

    def to_json(self) -> dict:
        """The one JSON shape of a hit: `search --json`, `ask --json` citations and also_retrieved, the server."""
        data = asdict(self)
        data["also_in"] = list(data["also_in"])
        data["chunk_ids"] = list(data["chunk_ids"])
        return data


def fts_terms(text: str) -> list[str]:
    """The query's distinct content words (all its words when it has no other), each quoted: safe FTS5 strings."""
    words = [w.lower() for w in _WORD.findall(text)]
    content = [w for w in words if w not in STOPWORDS] or words
    return [f'"{w}"' for w in list(dict.fromkeys(content))[:MAX_TERMS]]


def fts_query(text: str) -> str | None:
    """A safe FTS5 MATCH expression: the query's terms OR'd (what one plain FTS5 query would send)."""
    return " OR ".join(fts_terms(text)) or None


def dense(storage: Storage, embedder: Embedder, query: str, k: int) -> list[tuple[int, float]]:
    """HNSW nearest neighbours of the query embedding: (chunk id, cosine similarity)."""
    with storage.reading() as index:
        if index is None:  # nothing ingested yet
            return []
        return storage.store.chunks_for_vectors(_nearest(embedder, index, query, k), k)


def _nearest(
    embedder: Embedder, index: VectorIndex, query: str, k: int, allowed: Allowed = None
) -> list[tuple[int, float]]:
    """Encode the query and ask the HNSW index for (vector id, cosine): no SQLite, so it may run on another thread.
    `allowed`: a scope's vector ids (a set: hnswlib filters its walk) or ids with their vectors (compared exactly)."""
    if isinstance(allowed, tuple):
        return index.query(embedder.embed([query])[0], k, vectors=allowed)
    return index.query(embedder.embed([query])[0], k, allowed)


def _allowed(storage: Storage, scope: Scope) -> Allowed:
    """A scope's vectors as the dense side wants them: with their values when few (an exact scan), else their ids.

    Kept per scope until the knowledge base changes (its epoch): a chat asks every question in the same scope, and
    reading 30,000 ids from SQLite costs more than the filtered graph walk."""
    from deepkb.storage.vectors import EXACT_SCAN

    store = storage.store
    key = (scope, store.epoch(), EXACT_SCAN)
    cache: dict = storage.__dict__.setdefault("_scope_vectors", {})
    found = cache.get(key)
    if found is None:
        ids = store.scope_vector_ids(scope)
        found = store.vectors_by_ids(ids) if len(ids) <= EXACT_SCAN else frozenset(ids)
        for old in list(cache)[: max(0, len(cache) - SCOPE_CACHE + 1)]:  # oldest first
            cache.pop(old, None)
        cache[key] = found
    return found


def keyword(storage: Storage, query: str, k: int, scope: Scope | None = None) -> list[tuple[int, float]]:
    """FTS5 BM25 matches: (chunk id, score), best first; with a scope, of the documents in it only."""
    return storage.store.keyword_search(fts_terms(query), k, scope=scope)


def fuse_convex(
    dense_hits: list[tuple[int, float]], keyword_hits: list[tuple[int, float]], alpha: float, scale: int | None = None
) -> list[tuple[int, float]]:
    """Convex combination of each side's min-max normalized scores: alpha * dense + (1 - alpha) * keyword.

    A chunk one side did not return gets that side's lowest score (0). Unlike rank fusion it keeps how far apart
    the scores are: a keyword hit far ahead of the rest stays far ahead (SciFact nDCG@10: 0.732 against RRF's
    0.722, and 0.732 against RRF's 0.717 when each half of the queries picks the setting the other half is scored
    with; bench/fusion_sweep.py).

    `scale`: each side's first `scale` hits are fused as above, whatever follows them; the chunks only a deeper list
    holds come after, in the order of their scores on the same scale (below its range), each with score 0. So asking
    for more hits never reorders the first ones (`deepkb search -k 5` and `-k 50` agree on their first five).
    """
    scale = scale or max(len(dense_hits), len(keyword_hits))
    ranges = (_range(dense_hits[:scale]), _range(keyword_hits[:scale]))
    first = _convex(dense_hits[:scale], keyword_hits[:scale], alpha, *ranges)
    if len(dense_hits) <= scale and len(keyword_hits) <= scale:
        return first
    seen = {chunk_id for chunk_id, _ in first}
    deeper = _convex(dense_hits, keyword_hits, alpha, *ranges)
    return first + [(chunk_id, 0.0) for chunk_id, _ in deeper if chunk_id not in seen]


def _range(hits: list[tuple[int, float]]) -> tuple[float, float]:
    return (max(s for _, s in hits), min(s for _, s in hits)) if hits else (0.0, 0.0)


def _convex(
    dense_hits: list[tuple[int, float]],
    keyword_hits: list[tuple[int, float]],
    alpha: float,
    dense_range: tuple[float, float],
    keyword_range: tuple[float, float],
) -> list[tuple[int, float]]:
    def normalized(hits: list[tuple[int, float]], top: float, bottom: float) -> dict[int, float]:
        if top == bottom:
            return {chunk_id: 1.0 if s >= top else 0.0 for chunk_id, s in hits}
        return {chunk_id: (s - bottom) / (top - bottom) for chunk_id, s in hits}

    d, k = normalized(dense_hits, *dense_range), normalized(keyword_hits, *keyword_range)
    scores = {c: alpha * d.get(c, 0.0) + (1.0 - alpha) * k.get(c, 0.0) for c in d.keys() | k.keys()}
    # Equal scores: a chunk both sides found before one that only one side found, then the older chunk.
    return sorted(scores.items(), key=lambda item: (-item[1], -(item[0] in d) - (item[0] in k), item[0]))


def fuse(ranked_lists: list[list[tuple[int, float]]], rrf_k: int) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: each list adds 1 / (rrf_k + rank) for every chunk it ranks."""
    scores: dict[int, float] = {}
    for ranked in ranked_lists:
        for rank, (chunk_id, _) in enumerate(ranked, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(scores.items(), key=lambda item: item[1], reverse=True)


def check_query(query: str, k: int, mode: str) -> None:
    """Refuse a search that cannot run, before anything (a model, an index) is loaded for it."""
    if mode not in MODES:
        raise UsageError(f"unknown search mode {mode!r}; valid: {', '.join(MODES)}.")
    if not query.strip():
        raise UsageError("the query is empty.")
    if k < 1:
        raise UsageError("k must be at least 1.")


def search(
    storage: Storage,
    embedder: Embedder | None,
    settings: Settings,
    query: str,
    k: int = 5,
    mode: str = "hybrid",
    scope: Scope | None = None,
) -> list[Hit]:
    """Top-k hits for a query in the given mode, each resolved to its document and span.

    Without an embedder (or before anything is stored) the dense side is empty. The index is held still for the
    whole search, and each hit is read from SQLite as committed: one a writer removed meanwhile is left out.
    A scope (deepkb.scope) limits both sides inside retrieval: each still ranks its top candidates in scope."""
    check_query(query, k, mode)
    if embedder is None:  # the keyword side alone: the vector index is not opened
        return _search(storage, None, None, settings, query, k, mode, scope or None)
    with storage.reading() as index:
        return _search(storage, index, embedder, settings, query, k, mode, scope or None)


def _search(
    storage: Storage,
    index: VectorIndex | None,
    embedder: Embedder | None,
    settings: Settings,
    query: str,
    k: int,
    mode: str,
    scope: Scope | None = None,
) -> list[Hit]:
    depth = max(k, settings.candidates)
    allowed = _allowed(storage, scope) if scope and index is not None and mode != "keyword" else None
    if mode == "hybrid" and index is not None:
        # The query's encoding (one thread) and the FTS5 query each take several ms on a 2-core CPU: run them
        # side by side. The worker gets the embedder and the index ready-made, so it never touches SQLite.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepkb-dense") as pool:
            pending = pool.submit(_nearest, embedder, index, query, depth, allowed)
            keyword_hits = keyword(storage, query, depth, scope)
            dense_hits = storage.store.chunks_for_vectors(pending.result(), depth, scope)
    else:
        nearest = _nearest(embedder, index, query, depth, allowed) if mode == "dense" and index is not None else []
        dense_hits = storage.store.chunks_for_vectors(nearest, depth, scope)
        keyword_hits = keyword(storage, query, depth, scope) if mode in ("hybrid", "keyword") else []
    if mode == "hybrid" and settings.fusion == "convex":
        ranked = fuse_convex(dense_hits, keyword_hits, settings.dense_share, scale=settings.candidates)
    elif mode == "hybrid":
        ranked = fuse([dense_hits, keyword_hits], settings.rrf_k)
    else:
        ranked = dense_hits or keyword_hits
    dense_scores, keyword_scores = dict(dense_hits), dict(keyword_hits)
    window = max(k * 2, ENTRY_WINDOW)
    rows = storage.store.chunks_by_ids([chunk_id for chunk_id, _ in ranked[:window]])
    hits: list[Hit] = []
    for chunk_id, score in ranked[:window]:
        row = rows.get(chunk_id)
        if row is None:  # removed since the index was built: SQLite is the truth
            continue
        hits.append(
            Hit(chunk_id, row.path, row.page, row.line_start, row.line_end, row.heading, round(score, 6), row.text,
                dense_scores.get(chunk_id), keyword_scores.get(chunk_id))
        )  # fmt: skip
    # Over a window of fixed depth, inside what every k fuses alike, so that more hits never reorder the first ones.
    n = min(ENTRY_WINDOW, settings.candidates)
    return (entry_first(hits[:n], _continuation(storage)) + hits[n:])[:k]


Continues = Callable[[Hit, Hit], bool]


def entry_first(hits: list[Hit], continues: Continues) -> list[Hit]:
    """Of the hits from one section or definition list entry (the same file and heading path), the one that starts it
    (its text opens with the heading's own line: "-e" then "Exit immediately if…") goes before those that continue
    it: what the entry is comes before the details that follow (bash's "-e" entry runs over three chunks, and the
    second, full of "-e", outranked the definition itself). `continues(start, hit)`: the hit goes on with what the
    start begins, no other entry or section between them (a chunk that spans several entries of a list stands under
    the list's section alone, and is no continuation of the section's first chunk: git-stash's "drop" is not "push")."""
    out = list(hits)
    for hit in hits:
        if not _starts_entry(hit):
            continue
        j = next((n for n, h in enumerate(out) if h.path == hit.path and h.heading == hit.heading), None)
        if j is not None and out[j] is not hit and continues(hit, out[j]):
            out.remove(hit)
            out.insert(j, hit)
    return out


def _continuation(storage: Storage) -> Continues:
    """Whether a hit continues what a start hit begins: later in the same document, and only chunks under the same
    heading between them."""

    def continues(start: Hit, hit: Hit) -> bool:
        places = storage.store.chunk_places([start.chunk_id, hit.chunk_id])
        (doc, first), (other, then) = places.get(start.chunk_id, (None, 0)), places.get(hit.chunk_id, (None, 0))
        return (
            doc is not None and doc == other and first < then
            and storage.store.only_heading_between(doc, first, then, start.heading)
        )  # fmt: skip

    return continues


def _starts_entry(hit: Hit) -> bool:
    if not hit.heading or " > " not in hit.heading:
        return False
    first = " ".join(hit.text.split("\n", 1)[0].split())
    last = hit.heading.rsplit(" > ", 1)[1]
    return bool(first) and (first == last or last.endswith("…") and first.startswith(last[:-1]))
