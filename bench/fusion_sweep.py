"""Sweep the hybrid-fusion settings (rrf_k, candidates per side) on SciFact, reusing bench/run.py's cached KB.

    .venv/bin/python bench/fusion_sweep.py

Each query's dense and keyword lists are fetched once, deep, through deepkb's own search functions; every setting
is then fused offline with deepkb.search.fuse, so the sweep costs one pass of searches. SciFact has only a test
split here, so a setting chosen on it is reported as such, not as a held-out result.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from run import CACHE, OUT, load_scifact, ndcg_at_10

from deepkb.kb import KnowledgeBase
from deepkb.search import dense, fuse, keyword

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    _, queries, qrels = load_scifact(REPO.parent / "shared" / "data" / "scifact")
    kb = KnowledgeBase.open(CACHE / "scifact-kb")
    lists = {qid: (dense(kb, text, 200), keyword(kb, text, 200)) for qid, text in queries.items()}
    doc_of = {
        cid: Path(path).stem
        for cid, path in kb.store.db.execute("SELECT c.id, d.path FROM chunks c JOIN documents d ON d.id = c.doc_id")
    }
    results = []
    for rrf_k in (10, 20, 40, 60, 100):
        for depth in (20, 50, 100, 200):
            scores = []
            for qid, (d, k) in lists.items():
                ranked = list(dict.fromkeys(doc_of[c] for c, _ in fuse([d[:depth], k[:depth]], rrf_k)))
                scores.append(ndcg_at_10(ranked, qrels[qid]))
            results.append({"rrf_k": rrf_k, "candidates": depth, "ndcg@10": round(statistics.mean(scores), 4)})
            print(results[-1])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "fusion_sweep.json").write_text(json.dumps(results, indent=2))
    best = max(results, key=lambda r: r["ndcg@10"])
    print("best", best)


if __name__ == "__main__":
    main()
