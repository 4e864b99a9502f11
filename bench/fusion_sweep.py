"""Sweep the hybrid-fusion settings (RRF: rrf_k, dense weight; convex: dense share; candidates per side) on SciFact,
with a held-out check.

    .venv/bin/python bench/fusion_sweep.py

Reuses bench/run.py's cached SciFact knowledge base. Each query's dense and keyword lists are fetched once, deep,
through deepkb's own search functions; every setting is then fused offline, so the sweep costs one pass of
searches. SciFact has only a test split here, so choosing a setting on it and reporting it on the same queries
flatters it: the sweep also runs two-fold cross-validation (queries split in halves by id; the best setting of
one half is scored on the other) and reports that held-out figure beside the shipped default's.
Writes bench/out/fusion_sweep.json.
"""

from __future__ import annotations

import statistics
import sys
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

OUT = REPO / "bench" / "out" / "fusion_sweep.json"
RRF_KS = (5, 10, 20, 40, 60)
DEPTHS = (20, 50, 100, 200)
DENSE_WEIGHTS = (0.7, 1.0, 1.3, 1.6)
ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # convex fusion: the dense side's share of the score


def _fuse(dense: list[int], keyword: list[int], rrf_k: int, depth: int, weight: float) -> list[int]:
    """deepkb.retrieval.search.fuse with a weight on the dense side (weight 1.0 is exactly deepkb's fusion)."""
    scores: dict[int, float] = {}
    for rank, chunk in enumerate(dense[:depth], start=1):
        scores[chunk] = scores.get(chunk, 0.0) + weight / (rrf_k + rank)
    for rank, chunk in enumerate(keyword[:depth], start=1):
        scores[chunk] = scores.get(chunk, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(scores, key=scores.__getitem__, reverse=True)


def _convex(dense: list[tuple[int, float]], keyword: list[tuple[int, float]], depth: int, alpha: float) -> list[int]:
    """deepkb.retrieval.search.fuse_convex over each side's top `depth`."""
    from deepkb.retrieval.search import fuse_convex

    return [c for c, _ in fuse_convex(dense[:depth], keyword[:depth], alpha)]


def run(quick: bool = False, scifact: Path | None = None) -> dict:
    """nDCG@10 for every setting on all queries and on each half, and the two-fold held-out estimate."""
    from run import CACHE, load_scifact, ndcg_at_10

    from deepkb.kb import KnowledgeBase
    from deepkb.retrieval.search import dense, keyword

    folder = scifact or REPO.parent / "shared" / "data" / "scifact"
    if not (folder / "corpus.jsonl").exists() or not (CACHE / "scifact-kb" / "kb.sqlite").exists():
        return {"skipped": "needs SciFact and bench/run.py's cached knowledge base (run bench/run.py first)"}
    _, queries, qrels = load_scifact(folder)
    kb = KnowledgeBase.open(CACHE / "scifact-kb")
    if kb.settings.fusion == "convex":
        defaults = {"fusion": "convex", "alpha": kb.settings.dense_share, "candidates": kb.settings.candidates}
    else:
        defaults = {
            "fusion": "rrf",
            "rrf_k": kb.settings.rrf_k,
            "candidates": kb.settings.candidates,
            "dense_weight": 1.0,
        }
    started = time.perf_counter()
    depth = max(DEPTHS)
    scored = {q: (dense(kb.storage, kb.embedder, t, depth), keyword(kb.storage, t, depth)) for q, t in queries.items()}
    lists = {qid: ([c for c, _ in d], [c for c, _ in k]) for qid, (d, k) in scored.items()}
    doc_of = {
        cid: Path(path).stem
        for cid, path in kb.store.db.execute("SELECT c.id, d.path FROM chunks c JOIN documents d ON d.id = c.doc_id")
    }
    kb.close()
    half = {qid: zlib.crc32(qid.encode()) % 2 for qid in queries}
    weights = (1.0,) if quick else DENSE_WEIGHTS

    def score(setting: dict, fused) -> dict:
        per_query = {}
        for qid in lists:
            ranked = list(dict.fromkeys(doc_of[c] for c in fused(qid)))
            per_query[qid] = ndcg_at_10(ranked, qrels[qid])
        halves = [round(statistics.mean(v for q, v in per_query.items() if half[q] == h), 4) for h in (0, 1)]
        return {**setting, "ndcg@10": round(statistics.mean(per_query.values()), 4), "halves": halves}

    settings = []
    for rrf_k in RRF_KS:
        for depth in DEPTHS:
            for weight in weights:
                setting = {"fusion": "rrf", "rrf_k": rrf_k, "candidates": depth, "dense_weight": weight}
                settings.append(score(setting, lambda q, r=rrf_k, n=depth, w=weight: _fuse(*lists[q], r, n, w)))
    for alpha in ALPHAS:
        for depth in DEPTHS:
            setting = {"fusion": "convex", "alpha": alpha, "rrf_k": None, "candidates": depth, "dense_weight": None}
            settings.append(score(setting, lambda q, n=depth, a=alpha: _convex(*scored[q], n, a)))
    held_out = []
    for pick, other in ((0, 1), (1, 0)):  # choose on one half, measure on the other
        best = max(settings, key=lambda s: s["halves"][pick])
        chosen = {k: best.get(k) for k in ("fusion", "alpha", "rrf_k", "candidates", "dense_weight")}
        held_out.append({"chosen_on_half": pick, **chosen, "held_out": best["halves"][other]})
    default = next(s for s in settings if all(s.get(k) == v for k, v in defaults.items()))
    return {
        "benchmark": "fusion_sweep",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "queries": len(queries),
        "seconds": round(time.perf_counter() - started, 1),
        "default": default,
        "best": max(settings, key=lambda s: s["ndcg@10"]),
        "held_out": held_out,
        "held_out_mean": round(statistics.mean(h["held_out"] for h in held_out), 4),
        "default_halves_mean": round(statistics.mean(default["halves"]), 4),
        "settings": settings,
    }


def describe(s: dict) -> str:
    """One setting in words."""
    if s.get("fusion") == "convex":
        return f"convex fusion, α {s['alpha']}, {s['candidates']} candidates per side"
    return f"RRF, rrf_k {s['rrf_k']}, {s['candidates']} candidates per side, dense weight {s['dense_weight']}"


def markdown(f: dict) -> list[str]:
    """The BENCHMARKS.md section: rrf_k x candidates at dense weight 1, alpha x candidates, the held-out check."""
    if "skipped" in f:
        return ["## Fusion settings", "", f"Skipped: {f['skipped']}.", ""]
    cell = {(s["rrf_k"], s["candidates"]): s["ndcg@10"] for s in f["settings"] if s.get("dense_weight") == 1.0}
    d = f["default"]
    lines = [
        f"## Fusion settings (SciFact test, hybrid nDCG@10, {f['queries']} queries)",
        "",
        "| rrf_k \\ candidates per side | " + " | ".join(str(n) for n in DEPTHS) + " |",
        "| --- |" + " --- |" * len(DEPTHS),
    ]
    for rrf_k in RRF_KS:
        row = [
            f"**{cell[(rrf_k, n)]:.3f}**"
            if (rrf_k, n) == (d.get("rrf_k"), d["candidates"])
            else f"{cell[(rrf_k, n)]:.3f}"
            for n in DEPTHS
        ]
        lines.append(f"| {rrf_k} | " + " | ".join(row) + " |")
    convex = {(s["alpha"], s["candidates"]): s["ndcg@10"] for s in f["settings"] if s.get("fusion") == "convex"}
    if convex:
        lines += ["", "Convex combination of min-max normalized scores (dense share α; deepkb's fusion since 2026-11-23):", "",
                  "| α \\ candidates per side | " + " | ".join(str(n) for n in DEPTHS) + " |",
                  "| --- |" + " --- |" * len(DEPTHS)]  # fmt: skip
        for a in ALPHAS:
            row = [
                f"**{convex[(a, n)]:.3f}**" if (a, n) == (d.get("alpha"), d["candidates"]) else f"{convex[(a, n)]:.3f}"
                for n in DEPTHS
            ]
            lines.append(f"| {a} | " + " | ".join(row) + " |")
    b = f["best"]
    picks = "; ".join(
        f"chosen on half {h['chosen_on_half'] + 1}: {describe(h)} → {h['held_out']:.3f} on the other half"
        for h in f["held_out"]
    )
    lines += [
        "",
        f"Bold: deepkb's default ({describe(d)}), {d['ndcg@10']:.3f}. Best of all {len(f['settings'])} settings "
        f"(RRF with dense weights {', '.join(str(w) for w in sorted({s['dense_weight'] for s in f['settings'] if s.get('dense_weight')}))}, "
        f"and convex): {describe(b)}, {b['ndcg@10']:.3f}. SciFact has only a "
        "test split here, so the default was chosen on the queries it is measured on. Held out (two-fold: the "
        f"queries split in halves by id): {picks}; mean **{f['held_out_mean']:.3f}**, against "
        f"{f['default_halves_mean']:.3f} for the default on the same halves.",
        "",
        "Reproduce: `.venv/bin/python bench/fusion_sweep.py`",
        "",
    ]
    return lines


def main() -> None:
    from figures import publish

    publish(run(), OUT, markdown, REPO)


if __name__ == "__main__":
    main()
