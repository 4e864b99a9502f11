"""Benchmark: search latency at 100k chunks with and without a scope (--in, --type), no model needed.

bench/search_latency.py measures deepkb against the raw engines on SciFact-derived knowledge bases, which takes
bench/run.py's SciFact KB (an hour to build on 2 cores). This one answers a narrower question quickly: does the
scope plumbing change unscoped latency, and what does a scope cost? The knowledge base is synthetic: 1,000
documents of 100 chunks in 10 folders, a third each markdown, PDF and text (by kind and extension); each chunk 60
words drawn from a Zipf distribution over 30,000 made-up words, its vector random (normal, normalized, 384 dims).
The queries are 5 Zipf words, their vectors random too; search runs with the query vector given (no encoder), so
the figures are retrieval alone: HNSW, FTS5 and SQLite. Run it with another checkout first on PYTHONPATH to time
that checkout's unscoped search on the same knowledge base (the scoped rows need this branch).

    PYTHONPATH=. .venv/bin/python bench/scope_latency.py [--queries 200] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepkb.embedders import Embedder
from deepkb.kb import KnowledgeBase
from deepkb.storage.catalog import Store
from deepkb.types import Chunk

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / "cache" / "scope-latency-100k"
DOCS, CHUNKS_PER_DOC, WORDS, VOCAB, DIM = 1000, 100, 60, 30_000, 384
KINDS = (("markdown", ".md"), ("pdf", ".pdf"), ("text", ".txt"))


class GivenVectors(Embedder):
    """Random query vectors, one per query text: search timed without an encoder."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.name, self.dim, self.max_tokens, self.backend = "bench-random", dim, 256, "none"
        self.rng = np.random.default_rng(11)
        self.vectors: dict[str, np.ndarray] = {}

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        for t in texts:
            if t not in self.vectors:
                v = self.rng.normal(size=self.dim).astype(np.float32)
                self.vectors[t] = v / np.linalg.norm(v)
        return np.vstack([self.vectors[t] for t in texts])

    def _count_uncached(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]


def _words(rng: np.random.Generator, n: int) -> list[str]:
    ranks = np.minimum(rng.zipf(1.2, size=n), VOCAB)
    return [f"w{int(r):05d}" for r in ranks]


def build(target: Path) -> None:
    rng = np.random.default_rng(7)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    store = Store(target)
    with store.write():
        store.set_meta("embedding_model", "bench-random")
        store.set_meta("embedding_dim", str(DIM))
    for start in range(0, DOCS, 50):
        with store.write():
            for d in range(start, start + 50):
                kind, ext = KINDS[d % 3]
                chunks = [
                    Chunk(" ".join(_words(rng, WORDS)), None, i + 1, i + 1, f"Section {i // 10}", WORDS)
                    for i in range(CHUNKS_PER_DOC)
                ]
                vectors = rng.normal(size=(CHUNKS_PER_DOC, DIM)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                text = "".join(c.text for c in chunks)
                fields = {"path": str(target / "docs" / f"f{d % 10}" / f"doc{d:04d}{ext}"), "size": len(text),
                          "mtime_ns": 0, "sha256": hashlib.sha256(text.encode()).hexdigest(), "kind": kind,
                          "title": None, "encoding": "utf-8", "pages": None, "empty_pages": None,
                          "ingested_at": time.time(), "pipeline": 4}  # fmt: skip
                store.put_document(fields, chunks, vectors)
    store.close()
    with KnowledgeBase.open(target, embedder=GivenVectors(DIM), check_model=False) as kb:
        kb.reindex()
    (target / "built").write_text("1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not (CACHE / "built").exists():
        print(f"building {DOCS * CHUNKS_PER_DOC:,} chunks in {CACHE} (cached)…", flush=True)
        t = time.perf_counter()
        build(CACHE)
        print(f"  built in {time.perf_counter() - t:.0f} s", flush=True)
    rng = np.random.default_rng(3)
    queries = [" ".join(_words(rng, 5)) for _ in range(args.queries)]
    kb = KnowledgeBase.open(CACHE, embedder=GivenVectors(DIM), check_model=False)
    scoped = "scope" in inspect.signature(kb.search).parameters
    cases: list[tuple[str, object]] = [("unscoped", None)]
    if scoped:
        from deepkb.scope import make_scope

        docs = CACHE / "docs"
        cases += [
            ("--in one folder (10% of chunks)", make_scope([docs / "f3"])),
            ("--type pdf (a third)", make_scope(types="pdf")),
            ("--in one file (100 chunks)", make_scope([docs / "f3" / "doc0003.md"])),
            ("--in 9 folders (90%)", make_scope([docs / f"f{i}" for i in range(9)])),
        ]
    for q in queries[:5]:  # warm up: index loaded, SQLite pages cached
        kb.search(q, k=10)
    results = {}
    for name, scope in cases:
        for mode in ("hybrid", "dense", "keyword"):
            times = []
            for q in queries:
                t = time.perf_counter()
                kb.search(q, k=10, mode=mode, **({"scope": scope} if scope is not None else {}))
                times.append(time.perf_counter() - t)
            times.sort()
            results[f"{name} / {mode}"] = {
                "p50_ms": round(times[len(times) // 2] * 1000, 2),
                "p95_ms": round(times[int(len(times) * 0.95)] * 1000, 2),
            }
            print(f"{name:34s} {mode:8s} p50 {results[f'{name} / {mode}']['p50_ms']:7.2f} ms  "
                  f"p95 {results[f'{name} / {mode}']['p95_ms']:7.2f} ms", flush=True)  # fmt: skip
    kb.close()
    figures = {"checkout": str(Path(inspect.getfile(KnowledgeBase)).parent.parent), "load": os.getloadavg(),
               "chunks": DOCS * CHUNKS_PER_DOC, "queries": len(queries), "results": results}  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
