"""Fusion and keyword settings on the manuals' tune half, from one knowledge base, without re-ingesting.

    .venv/bin/python bench/manuals_tune.py [--kb DIR] [--report NAME]

Each question's dense top 100 (cosine) and keyword top 100 (FTS5 BM25, heading column weighted 0-3) are fetched once;
the fusions are then computed here: deepkb's convex combination with min-max scaling at several dense shares, the
same with each side scaled by its top score only, z-scores, and RRF. Prints MRR@10 per variant on the tune half;
`--report NAME` also prints that variant's held-out half (look at it once, for the variant the tune half chose).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from manuals import CACHE, from_rank, interval, load_questions, relevant  # noqa: E402

DEPTH = 100


def keyword_hits(store, terms: list[str], heading_weight: float) -> list[tuple[int, float]]:
    """deepkb's keyword side (all terms OR'd, BM25) with the heading column at the given weight."""
    if not terms:
        return []
    rows = store.db.execute(
        "SELECT rowid, bm25(chunks_fts, 1.0, ?) AS rank FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?",
        [heading_weight, " OR ".join(terms), DEPTH],
    )
    return store._one_per_text([(r[0], -r[1]) for r in rows])


def scaled(hits: list[tuple[int, float]], how: str) -> dict[int, float]:
    if not hits:
        return {}
    values = [s for _, s in hits]
    top, bottom = max(values), min(values)
    if how == "minmax":
        return {c: (s - bottom) / (top - bottom) if top > bottom else 1.0 for c, s in hits}
    if how == "max":
        return {c: s / top if top > 0 else 0.0 for c, s in hits}
    mean, sd = statistics.mean(values), statistics.pstdev(values) or 1.0
    return {c: (s - mean) / sd for c, s in hits}


def fuse(dense: list, keyword: list, how: str, share: float) -> list[int]:
    if how == "rrf":
        scores: dict[int, float] = {}
        for ranked in (dense, keyword):
            for rank, (c, _) in enumerate(ranked, start=1):
                scores[c] = scores.get(c, 0.0) + 1 / (60 + rank)
        return sorted(scores, key=lambda c: -scores[c])
    d, k = scaled(dense, how), scaled(keyword, how)
    floor_d = min(d.values(), default=0.0) if how == "z" else 0.0
    floor_k = min(k.values(), default=0.0) if how == "z" else 0.0
    scores = {c: share * d.get(c, floor_d) + (1 - share) * k.get(c, floor_k) for c in d.keys() | k.keys()}
    return sorted(scores, key=lambda c: (-scores[c], c))


def main() -> None:
    from deepkb.kb import KnowledgeBase
    from deepkb.retrieval.search import dense, fts_terms

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kb", type=Path, default=CACHE / "manuals-kb")
    parser.add_argument("--report", help="a variant name: also print its held-out half")
    args = parser.parse_args()
    questions = load_questions()
    with KnowledgeBase.open(args.kb) as kb:
        store = kb.store
        rows = {r[0]: r[1:] for r in store.db.execute(
            "SELECT c.id, d.path, c.page, c.line_start, c.line_end FROM chunks c JOIN documents d ON d.id = c.doc_id")}  # fmt: skip
        fetched = []
        for q in questions:
            d = dense(kb.storage, kb.embedder, q["question"], DEPTH)
            terms = fts_terms(q["question"])
            fetched.append((q, d, {w: keyword_hits(store, terms, w) for w in (0.0, 1.0, 2.0, 3.0)}))
    variants: dict[str, dict[str, int | None]] = {}
    for weight in (0.0, 1.0, 2.0, 3.0):
        for how, shares in (("minmax", (0.3, 0.4, 0.5, 0.6, 0.7)), ("max", (0.5, 0.6, 0.7, 0.8)),
                            ("z", (0.4, 0.5, 0.6)), ("rrf", (0.5,))):  # fmt: skip
            for share in shares:
                name = f"heading {weight:g}, {how} {share:g}" if how != "rrf" else f"heading {weight:g}, rrf 60"
                ranks = {}
                for q, d, k in fetched:
                    order = fuse(d, k[weight], how, share)[:10]
                    flags = [relevant(q, *rows[c]) for c in order if c in rows]
                    ranks[q["id"]] = next((i + 1 for i, f in enumerate(flags) if f), None)
                variants[name] = ranks
        for side, pick in (("dense", lambda d, k: d), ("keyword", lambda d, k: k)):
            name = f"heading {weight:g}, {side} alone"
            variants[name] = {}
            for q, d, k in fetched:
                order = [c for c, _ in pick(d, k[weight])][:10]
                flags = [relevant(q, *rows[c]) for c in order if c in rows]
                variants[name][q["id"]] = next((i + 1 for i, f in enumerate(flags) if f), None)

    def mean(ranks: dict, split: str) -> tuple[float, list[float]]:
        values = [from_rank(ranks[q["id"]])["mrr@10"] for q in questions if q["split"] == split]
        return statistics.mean(values), values

    for name, ranks in sorted(variants.items(), key=lambda item: -mean(item[1], "tune")[0]):
        print(f"{mean(ranks, 'tune')[0]:.3f}  {name}")
    if args.report:
        value, values = mean(variants[args.report], "test")
        print(f"held out, {args.report}: MRR@10 {value:.3f} {interval(values)}")


if __name__ == "__main__":
    main()
