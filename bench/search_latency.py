"""Benchmark: deepkb search latency at 10k and 100k chunks, against the raw engines measured in the same run.

The knowledge bases are built under bench/cache/ (git-ignored, cached between runs, keyed by BUILD_VERSION and a
digest of the source) from bench/run.py's SciFact knowledge base (bench/cache/scifact-kb: 5,183 abstracts, real
all-MiniLM-L6-v2 vectors) plus synthetic chunks, because embedding 85k more chunks on 2 cores takes about an hour:

- real SciFact documents are copied whole (text, heading, stored vector) in corpus order while they fit;
- the rest are synthetic documents: a variant of a real document D (cycling through a seeded shuffle of the real
  documents) whose chunk i mixes D's chunk i with a random real chunk B of the same kind (title chunk or body
  chunk): the first half of D's sentences followed by the second half of B's (halves of words where either has
  one sentence), under D's heading; its vector is the normalized sum of the two source vectors plus Gaussian
  noise (sigma 0.01 per dimension, about 0.2 in norm), normalized again.

Everything is inserted through deepkb's own Store (its schema, FTS5 triggers and migrations), and the HNSW index is
rebuilt from SQLite by deepkb's VectorIndex, so `KnowledgeBase.open(dir).search(...)` works on it as on any KB.
The queries are the 300 SciFact test claims. For each query, in alternating order, the raw engines (the
SentenceTransformer's encode, hnswlib knn_query k=100, one plain FTS5 bm25 query of the query's terms OR'd, top 100:
the exact ranking, which deepkb's keyword side approaches by ranking fewer chunks, see Store.keyword_search) and
deepkb's search in each mode (k=10, and hybrid once more with the query vector given) are timed in one process.
Then, untimed, keyword and hybrid nDCG@10 of deepkb's lists against the exact FTS5 ranking (deepkb's BM25 column
weights, fused with the same dense list by the fusion deepkb ships) in the same knowledge base, and in one holding
SciFact's real chunks only.

    .venv/bin/python bench/search_latency.py [--quick] [--scifact DIR]

SciFact (CC BY-NC) is read where it lies (--scifact, SCIFACT_DIR, or ../shared/data/scifact) and never copied into
the repository. --quick: 10k chunks only, 100 queries. Writes bench/out/search_latency.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from deepkb.embedders import Embedder  # noqa: E402
from deepkb.kb import KnowledgeBase  # noqa: E402
from deepkb.storage.catalog import Store  # noqa: E402
from deepkb.types import Chunk  # noqa: E402

CACHE = REPO / "bench" / "cache"
SOURCE_KB = CACHE / "scifact-kb"
OUT = REPO / "bench" / "out" / "search_latency.json"
BUILD_VERSION = "1"  # bump when the way the benchmark knowledge bases are built changes
SIZES = (10_000, 100_000)
QUICK_QUERIES = 100
NOISE_SIGMA = 0.01
GOAL_MS = 25.0
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
RAW_FTS_SQL = (  # one plain FTS5 query: all the terms OR'd, the exact BM25 top N, with deepkb's column weights
    "SELECT rowid, bm25(chunks_fts, 1.0, 1.0) AS rank FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?"
)


def default_scifact() -> Path:
    return Path(os.environ.get("SCIFACT_DIR", str(REPO.parent / "shared" / "data" / "scifact")))


# building the knowledge bases -------------------------------------------------------------------------------
def _source_rows(source: Path) -> tuple[list[tuple], dict[int, list[tuple]], dict[str, str]]:
    """The source KB's documents (corpus order), their chunks in order, and its meta (read-only)."""
    db = sqlite3.connect(f"file:{source / 'kb.sqlite'}?mode=ro", uri=True)
    try:
        docs = db.execute(
            "SELECT id, path, size, mtime_ns, sha256, kind, title, encoding, pages, empty_pages, ingested_at, pipeline"
            " FROM documents ORDER BY path"
        ).fetchall()
        chunks: dict[int, list[tuple]] = {}
        rows = db.execute(
            "SELECT c.doc_id, c.text, c.page, c.line_start, c.line_end, c.heading, c.n_tokens, v.vector FROM chunks c "
            "JOIN vectors v ON v.id = c.vector_id ORDER BY c.doc_id, c.ord"
        )
        for doc_id, *row in rows:
            chunks.setdefault(doc_id, []).append(tuple(row))
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()
    return docs, chunks, meta


def _source_digest(chunks: dict[int, list[tuple]]) -> str:
    digest = hashlib.sha256()
    for doc_id in sorted(chunks):
        for text, *_ in chunks[doc_id]:
            digest.update(text.encode())
    return digest.hexdigest()[:12]


def _halves(a: str, b: str) -> str:
    """The first half of a's sentences and the second half of b's; halves of words when either is one sentence."""
    sa, sb = _SENTENCE.split(a), _SENTENCE.split(b)
    if len(sa) < 2 or len(sb) < 2:
        sa, sb = a.split(), b.split()
    return " ".join(sa[: (len(sa) + 1) // 2] + sb[len(sb) // 2 :])


def _is_title(row: tuple) -> bool:
    return row[0].startswith("# ")


def build_kb(size: int, target: Path, source: Path = SOURCE_KB, seed: int = 7) -> None:
    """A knowledge base of exactly `size` chunks: real SciFact documents, then synthetic variants of them."""
    docs, chunks, meta = _source_rows(source)
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    titles = [row for rows in chunks.values() for row in rows if _is_title(row)]
    bodies = [row for rows in chunks.values() for row in rows if not _is_title(row)]
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    store = Store(target)
    total = 0

    def put(fields: dict, rows: list[tuple], vectors: np.ndarray) -> None:
        nonlocal total
        made = [
            Chunk(text=t, page=p, line_start=ls, line_end=le, heading=h, n_tokens=n) for t, p, ls, le, h, n, _ in rows
        ]
        store.put_document(fields, made, vectors)
        total += len(made)

    with store.write():
        store.set_meta("embedding_model", meta["embedding_model"])
        store.set_meta("embedding_dim", meta["embedding_dim"])
        for doc in docs:
            rows = chunks.get(doc[0], [])
            if total + len(rows) > size:
                break
            fields = dict(zip(("path", "size", "mtime_ns", "sha256", "kind", "title", "encoding", "pages",
                               "empty_pages", "ingested_at", "pipeline"), doc[1:]))  # fmt: skip
            put(fields, rows, np.vstack([np.frombuffer(r[-1], dtype=np.float32) for r in rows]))
    order = [doc for doc in docs if doc[0] in chunks]
    rng.shuffle(order)
    n = 0
    while total < size:
        with store.write():
            for _ in range(2000):
                if total >= size:
                    break
                doc = order[n % len(order)]
                n += 1
                base = chunks[doc[0]][: size - total]
                rows, vectors = [], []
                for a in base:
                    b = rng.choice(titles if _is_title(a) else bodies)
                    text = _halves(a[0], b[0])
                    rows.append((text, None, 1, 1, a[4], (a[5] + b[5]) // 2, None))
                    v = np.frombuffer(a[-1], dtype=np.float32) + np.frombuffer(b[-1], dtype=np.float32)
                    v = v / np.linalg.norm(v) + noise.normal(0.0, NOISE_SIGMA, v.shape)
                    vectors.append((v / np.linalg.norm(v)).astype(np.float32))
                text = "\n\n".join(r[0] for r in rows)
                fields = {"path": str(target / "synthetic" / f"{n:06d}.md"), "size": len(text),
                          "mtime_ns": 0, "sha256": hashlib.sha256(text.encode()).hexdigest(), "kind": "markdown",
                          "title": doc[6], "encoding": "utf-8", "pages": None, "empty_pages": None,
                          "ingested_at": time.time(), "pipeline": doc[11]}  # fmt: skip
                put(fields, rows, np.vstack(vectors))
    store.close()
    with KnowledgeBase.open(target) as kb:
        kb.reindex()  # deepkb's VectorIndex, rebuilt from the vectors in SQLite, and saved


def cached_kb(size: int, source: Path = SOURCE_KB, name: str | None = None) -> Path:
    """The benchmark KB of `size` chunks, built once per BUILD_VERSION and source content."""
    _, chunks, _ = _source_rows(source)
    key = f"v{BUILD_VERSION}-{_source_digest(chunks)}"
    target = CACHE / f"search-latency-{name or f'{size // 1000}k'}"
    stamp = target / "bench-version"
    if stamp.exists() and stamp.read_text() == key:
        return target
    print(f"building the {size:,}-chunk knowledge base in {target.relative_to(REPO)} (cached for later runs)…")
    started = time.perf_counter()
    build_kb(size, target, source)
    stamp.write_text(key)
    print(f"  built in {time.perf_counter() - started:.0f} s")
    return target


# measuring ---------------------------------------------------------------------------------------------------
class GivenVectors(Embedder):
    """The queries' vectors, embedded beforehand in one batch: deepkb's search timed without its query encode."""

    def __init__(self, real: Embedder, texts: list[str]) -> None:
        super().__init__()
        self.name, self.dim, self.max_tokens, self.backend = real.name, real.dim, real.max_tokens, real.backend
        self.vectors = dict(zip(texts, real.embed(texts)))

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.vstack([self.vectors[t] for t in texts])

    def _count_uncached(self, texts: list[str]) -> list[int]:
        raise NotImplementedError("only queries are embedded here")


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95)] * 1000, 2),
    }


def load_queries(folder: Path) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """The SciFact test claims that have judgments, and the judgments."""
    from run import load_scifact

    _, queries, qrels = load_scifact(folder)
    return queries, qrels


def measure(kb: KnowledgeBase, queries: dict[str, str], qrels: dict[str, dict[str, int]]) -> dict:
    """Raw engines and deepkb's search on the same queries, interleaved (the order alternates query by query)."""
    from figures import sentence_transformer

    from deepkb.retrieval.search import fts_query

    model, index, db = sentence_transformer(kb.settings.embedding_model), kb.index, kb.store.db
    depth = kb.settings.candidates

    def raw(q: str) -> dict[str, float]:
        t0 = time.perf_counter()
        vector = model.encode([q], show_progress_bar=False)[0]
        t1 = time.perf_counter()
        index.index.set_ef(max(index.ef_search, depth))  # as VectorIndex.query does
        index.index.knn_query(vector.reshape(1, -1), k=depth)
        t2, c2 = time.perf_counter(), time.thread_time()
        db.execute(RAW_FTS_SQL, [fts_query(q), depth]).fetchall()
        t3, c3 = time.perf_counter(), time.thread_time()
        return {"raw_encode": t1 - t0, "raw_knn": t2 - t1, "raw_fts": t3 - t2, "raw_total": t3 - t0,
                "raw_fts_cpu": c3 - c2, "raw_knn_fts": t3 - t1}  # fmt: skip

    def ours(q: str) -> dict[str, float]:
        times = {}
        for mode in ("keyword", "dense", "hybrid"):
            t0, c0 = time.perf_counter(), time.thread_time()
            kb.search(q, k=10, mode=mode)
            times[mode], times[f"{mode}_cpu"] = time.perf_counter() - t0, time.thread_time() - c0
        t0 = time.perf_counter()
        given.search(q, k=10)
        times["hybrid_given"] = time.perf_counter() - t0
        return times

    texts = list(queries.values())
    given = KnowledgeBase(kb.settings, embedder=GivenVectors(kb.embedder, texts))
    for q in texts[:5]:  # warm up: model, index, SQLite pages
        raw(q), ours(q)
    samples: dict[str, list[float]] = {}
    load_before = os.getloadavg()
    for n, q in enumerate(texts):
        for part in (raw, ours) if n % 2 == 0 else (ours, raw):
            for name, seconds in part(q).items():
                samples.setdefault(name, []).append(seconds)
    load_after = os.getloadavg()
    given.close()

    figures: dict = {
        "chunks": kb.status()["chunks"],
        "queries": len(texts),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
    }
    for name, values in samples.items():
        if not name.endswith("_cpu"):
            figures[name] = percentiles(values)
            if f"{name}_cpu" in samples:
                figures[name]["cpu_p50_ms"] = percentiles(samples[f"{name}_cpu"])["p50_ms"]
    p50 = {name: figures[name]["p50_ms"] for name in samples if not name.endswith("_cpu")}
    figures["ratios_p50"] = {
        "keyword / raw fts": round(p50["keyword"] / p50["raw_fts"], 3),
        "dense / (raw encode + raw knn)": round(p50["dense"] / (p50["raw_encode"] + p50["raw_knn"]), 3),
        "hybrid / raw total": round(p50["hybrid"] / p50["raw_total"], 3),
        "hybrid, vector given / raw knn + fts": round(p50["hybrid_given"] / p50["raw_knn_fts"], 3),
    }
    figures["ndcg@10"] = ndcg_check(kb, queries, qrels, given.embedder.vectors)
    return figures


def ndcg_check(kb: KnowledgeBase, queries: dict[str, str], qrels: dict, vectors: dict[str, np.ndarray]) -> dict:
    """nDCG@10 of deepkb's keyword and hybrid lists against the exact FTS5 ranking (every chunk holding a term ranked,
    with deepkb's BM25 column weights), each fused with the same dense list as deepkb ships (convex by default)."""
    from run import ndcg_at_10

    from deepkb.retrieval.search import fts_query, fuse, fuse_convex, keyword

    depth, db = kb.settings.candidates, kb.store.db
    doc_of = {
        cid: Path(path).stem
        for cid, path in db.execute("SELECT c.id, d.path FROM chunks c JOIN documents d ON d.id = c.doc_id")
    }

    def fused(near: list, hits: list) -> list:
        if kb.settings.fusion == "convex":
            return fuse_convex(near, hits, kb.settings.dense_share)
        return fuse([near, hits], kb.settings.rrf_k)

    ndcg: dict[str, list[float]] = {}
    for qid, q in queries.items():
        exact = [(r, -s) for r, s in db.execute(RAW_FTS_SQL, [fts_query(q), depth])]
        budgeted, near = keyword(kb, q, depth), kb.store.chunks_for_vectors(kb.index.query(vectors[q], depth), depth)
        lists = {"keyword_exact": exact, "keyword": budgeted, "hybrid_exact": fused(near, exact),
                 "hybrid": fused(near, budgeted)}  # fmt: skip
        for name, ranked in lists.items():  # documents by their best chunk, as bench/run.py ranks them
            docs = list(dict.fromkeys(doc_of[c] for c, _ in ranked[:depth] if c in doc_of))
            ndcg.setdefault(name, []).append(ndcg_at_10(docs, qrels[qid]))
    return {name: round(sum(v) / len(v), 4) for name, v in ndcg.items()}


def run(quick: bool = False, scifact: str | os.PathLike | None = None) -> dict:
    """Search latency at each size against the raw engines, measured now; {} with a message when data is missing."""
    folder = Path(scifact) if scifact else default_scifact()
    if not (folder / "queries_test.jsonl").exists():
        print(f"SciFact not found at {folder}: skipping the search-latency bench (set --scifact or SCIFACT_DIR).")
        return {}
    if not (SOURCE_KB / "kb.sqlite").exists():
        print(f"{SOURCE_KB.relative_to(REPO)} not found: run bench/run.py first, which builds it from SciFact.")
        return {}
    queries, qrels = load_queries(folder)
    if quick:
        queries = dict(list(queries.items())[:QUICK_QUERIES])
    figures: dict = {"benchmark": "search_latency", "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": quick,
                     "machine": _machine(), "build_version": BUILD_VERSION, "sizes": {}}  # fmt: skip
    from deepkb.storage.catalog import KEYWORD_BUDGET

    figures["keyword_budget"] = KEYWORD_BUDGET
    for size in SIZES[:1] if quick else SIZES:
        path = cached_kb(size)
        print(f"search latency at {size:,} chunks, {len(queries)} queries…", flush=True)
        with KnowledgeBase.open(path) as kb:
            figures["sizes"][str(size)] = measure(kb, queries, qrels)
            figures["fusion"] = f"{kb.settings.fusion}, dense share {kb.settings.dense_share}"
        print("  ", json.dumps(figures["sizes"][str(size)]["ratios_p50"]), flush=True)
    # SciFact itself, every real chunk and no synthetic one: does the keyword budget cost nDCG where it was tuned?
    _, chunks, _ = _source_rows(SOURCE_KB)
    real = sum(map(len, chunks.values()))
    with KnowledgeBase.open(cached_kb(real, name="scifact")) as kb:
        vectors = GivenVectors(kb.embedder, list(queries.values())).vectors
        figures["scifact"] = {
            "chunks": real,
            "queries": len(queries),
            "ndcg@10": ndcg_check(kb, queries, qrels, vectors),
        }
    print("  SciFact itself:", json.dumps(figures["scifact"]), flush=True)
    return figures


def _machine() -> str:
    import platform

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"
    )


def markdown(f: dict) -> list[str]:
    """The BENCHMARKS.md section."""
    if not f.get("sizes"):
        return []
    sizes = list(f["sizes"])
    rows = [("raw_encode", "raw: SentenceTransformer.encode of the query"),
            ("raw_knn", "raw: hnswlib knn_query, k=100"),
            ("raw_fts", "raw: FTS5 bm25 query, all terms OR'd, top 100"),
            ("raw_total", "raw: the three"),
            ("raw_knn_fts", "raw: knn_query + FTS5 (no encode)"),
            ("keyword", "deepkb search --mode keyword"),
            ("dense", "deepkb search --mode dense"),
            ("hybrid", "deepkb search (hybrid)"),
            ("hybrid_given", "deepkb search (hybrid), query vector given (no encode)")]  # fmt: skip
    head = " | ".join(f"{int(s) // 1000}k p50 | {int(s) // 1000}k p95" for s in sizes)
    lines = [
        "## Search latency at " + " and ".join(f"{int(s):,}" for s in sizes) + " chunks (raw = "
        "SentenceTransformer.encode on torch, hnswlib knn_query and one FTS5 query, called directly)",
        "",
        f"{f['sizes'][sizes[0]]['queries']} SciFact test queries, k=10, in one process: the raw engines and deepkb's "
        "search interleaved, query by query, in alternating order. Milliseconds; CPU is the thread's CPU time "
        "(the FTS5 rows), which the machine's load disturbs less than the wall clock.",
        "",
        f"| | {head} |",
        "| --- |" + " --- | --- |" * len(sizes),
    ]
    for name, label in rows:
        cells = []
        for s in sizes:
            m = f["sizes"][s][name]
            cpu = f" (CPU {m['cpu_p50_ms']})" if name in ("raw_fts", "keyword") else ""
            cells.append(f"{m['p50_ms']}{cpu} | {m['p95_ms']}")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines.append("")
    for s in sizes:
        m = f["sizes"][s]
        ratios = ", ".join(f"{k} **{v}**" for k, v in m["ratios_p50"].items())
        n = m["ndcg@10"]
        lines.append(
            f"- {int(s):,} chunks (load average {m['load_before'][0]:.1f} before, {m['load_after'][0]:.1f} after): "
            f"p50 ratios {ratios}. nDCG@10 in this knowledge base, deepkb / exact FTS5 ranking: keyword "
            f"{n['keyword']:.3f} / {n['keyword_exact']:.3f}, hybrid {n['hybrid']:.3f} / {n['hybrid_exact']:.3f}."
        )
    if "scifact" in f:
        n = f["scifact"]["ndcg@10"]
        lines.append(
            f"- SciFact itself ({f['scifact']['chunks']:,} chunks: every real one, no synthetic ones; "
            f"{f['scifact']['queries']} queries), nDCG@10, deepkb / exact FTS5 ranking: keyword {n['keyword']:.3f} / "
            f"{n['keyword_exact']:.3f}, hybrid {n['hybrid']:.3f} / {n['hybrid_exact']:.3f}."
        )
    if "100000" in f["sizes"]:
        m = f["sizes"]["100000"]
        lines += ["", f"Goal: hybrid p50 ≤ {GOAL_MS:.0f} ms at 100k chunks on a quiet 2-core machine. Measured here "
                  f"at load {m['load_before'][0]:.1f}: {m['hybrid']['p50_ms']} ms, of which the query encode is "
                  f"most (raw {m['raw_encode']['p50_ms']} ms); without it {m['hybrid_given']['p50_ms']} ms."]  # fmt: skip
    lines += [
        "",
        "Reproduce: `.venv/bin/python bench/search_latency.py` (needs bench/cache/scifact-kb from bench/run.py; "
        "`--quick`: 10k chunks, 100 queries)",
        "",
        "The knowledge bases (cached in bench/cache/search-latency-*) hold real SciFact chunks with their MiniLM "
        "vectors, copied whole by document in corpus order while they fit, then synthetic documents: each a variant "
        "of a real document D (a seeded shuffle of the real documents, cycled), whose chunk i is the first half of "
        "the sentences of D's chunk i followed by the second half of those of a random real chunk of the same kind "
        "(title or body; halves of words when either is one sentence), under D's heading. Its vector is the sum of "
        f"the two source vectors, normalized, plus Gaussian noise (sigma {NOISE_SIGMA} per dimension), normalized "
        "again. All of it goes through deepkb's Store (its schema and FTS5 triggers); the HNSW index is rebuilt "
        "from SQLite by deepkb's VectorIndex. The synthetic halves of relevant abstracts compete with them, hence "
        "the lower nDCG at 100k; at 10k, two thirds of the relevant abstracts are absent.",
        "",
        f"Keyword search ranks by BM25 only the chunks holding one of the query's rarest terms (those whose matches "
        f"add up to at most {f['keyword_budget']:,} chunks; all the terms when they fit), scored with all the "
        "terms; the raw FTS5 row ranks every chunk that holds any term. bm25() costs microseconds per matching "
        "chunk, and at 100k chunks a SciFact query matches about a third of them. The nDCG@10 check scores both "
        "keyword lists with deepkb's BM25 column weights (text 1.0, heading 1.0) and fuses each with the same dense "
        f"top 100 the way deepkb ships ({f.get('fusion', 'its default fusion')}); documents rank by their best chunk.",
        "",
    ]
    return lines


def main() -> None:
    from figures import publish

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"10k chunks only, {QUICK_QUERIES} queries")
    parser.add_argument("--scifact", help="the BEIR SciFact folder (default: SCIFACT_DIR or ../shared/data/scifact)")
    args = parser.parse_args()
    figures = run(quick=args.quick, scifact=args.scifact)
    if figures:
        publish(figures, OUT, markdown, REPO)


if __name__ == "__main__":
    main()
