"""Retrieval in bf16 against f32, same texts: SciFact dense nDCG@10 with 95% bootstrap intervals, vectors' cosine.

    .venv/bin/python bench/precision_quality.py [--pool 600] [--manuals-kb DIR]

SciFact (read where it lies, never copied): the 300 test queries against a pool of abstracts made of every abstract
some test query counts relevant plus the first others up to --pool, each embedded whole (title and text, as deepkb's
chunk of a one-abstract Markdown file reads it, truncated at the model's 256 tokens), ranked by exact cosine: the
dense side alone, where the precision acts (the keyword side does not change). Both precisions embed the same texts
through deepkb's own OpenVINO engine; queries are embedded in the precision of their documents, as a knowledge base
is queried in its own. The interval is a 95% bootstrap over queries (2,000 resamples) of f32's mean, and of the
paired difference bf16 - f32.

--manuals: the manuals of bench/manuals.py (less --skip) ingested into a knowledge base per precision (the same
chunks), both scored on the manuals' questions about those files (MRR@10, hybrid and dense, held-out half and all),
with the same bootstrap.
Writes bench/out/precision_quality.json and prints its BENCHMARKS.md section.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

OUT = REPO / "bench" / "out" / "precision_quality.json"
CACHE = REPO / "bench" / "cache"
SCIFACT = Path(os.environ.get("SCIFACT_DIR", REPO.parent / "shared" / "data" / "scifact"))


def bootstrap(values: list[float], resamples: int = 2000, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    n = len(values)
    means = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(resamples))
    return [round(means[int(0.025 * resamples)], 4), round(means[int(0.975 * resamples)], 4)]


def ndcg10(order: np.ndarray, ids: list[str], relevant: dict[str, int]) -> float:
    import math

    ranked = [ids[i] for i in order[:10]]
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked))
    ideal = sum(r / math.log2(i + 2) for i, r in enumerate(sorted(relevant.values(), reverse=True)[:10]))
    return dcg / ideal if ideal else 0.0


def scifact(pool: int, folder: Path = SCIFACT) -> dict:
    from run import load_scifact

    from deepkb.embedders import create_embedder

    corpus, queries, qrels = load_scifact(folder)
    wanted = {d for rel in qrels.values() for d in rel}
    docs = [d for d in corpus if d["_id"] in wanted]
    docs += [d for d in corpus if d["_id"] not in wanted][: max(0, pool - len(docs))]
    ids = [d["_id"] for d in docs]
    texts = [f"{d['title'].strip()}\n{d['text']}" for d in docs]
    qids = list(queries)
    out: dict = {"documents": len(docs), "queries": len(qids), "seconds": {}}
    vectors, per_query = {}, {}
    for precision in ("f32", "bf16"):
        embedder = create_embedder("all-MiniLM-L6-v2", "openvino", precision)
        started = time.perf_counter()
        doc_vectors = np.vstack([embedder.embed(texts[i : i + 256]) for i in range(0, len(texts), 256)])
        out["seconds"][precision] = round(time.perf_counter() - started, 1)
        query_vectors = embedder.embed([queries[q] for q in qids])
        vectors[precision] = (doc_vectors, query_vectors)
        scores = query_vectors @ doc_vectors.T
        per_query[precision] = [ndcg10(np.argsort(-scores[k]), ids, qrels[q]) for k, q in enumerate(qids)]
        print(f"  scifact {precision}: nDCG@10 {statistics.fmean(per_query[precision]):.4f}", flush=True)
    cos_docs = np.sum(vectors["f32"][0] * vectors["bf16"][0], axis=1)
    cos_queries = np.sum(vectors["f32"][1] * vectors["bf16"][1], axis=1)
    diff = [b - a for a, b in zip(per_query["f32"], per_query["bf16"])]
    out.update({
        "ndcg@10": {p: round(statistics.fmean(v), 4) for p, v in per_query.items()},
        "f32_interval": bootstrap(per_query["f32"]), "bf16_interval": bootstrap(per_query["bf16"]),
        "difference": round(statistics.fmean(diff), 4), "difference_interval": bootstrap(diff),
        "cosine_min": round(float(min(cos_docs.min(), cos_queries.min())), 6),
        "cosine_mean": round(float(np.concatenate([cos_docs, cos_queries]).mean()), 6),
    })  # fmt: skip
    return out


def manuals(skip: tuple[str, ...] = ()) -> dict:
    """Ingest the manuals (less `skip`) into a knowledge base per precision, the same chunks, and score both."""
    from manuals import evaluate_deepkb, load_questions
    from manuals_fetch import fetch

    from deepkb.kb import KnowledgeBase

    source = fetch()
    docs = CACHE / "precision-manuals" / "docs"
    shutil.rmtree(docs.parent, ignore_errors=True)
    docs.mkdir(parents=True)
    for path in source.iterdir():
        if path.name not in skip:
            shutil.copy2(path, docs / path.name)
    questions = [q for q in load_questions() if q["file"] not in skip]
    out: dict = {"questions": len(questions), "documents": len(list(docs.iterdir())), "skipped": list(skip)}
    ranks: dict = {}
    for precision in ("f32", "bf16"):
        with KnowledgeBase.open(docs.parent / f"kb-{precision}", embedding_precision=precision) as kb:
            started = time.perf_counter()
            report = kb.ingest([docs])
            out[f"ingest_{precision}"] = {"seconds": round(time.perf_counter() - started, 1),
                                          "chunks": report.chunks_embedded}  # fmt: skip
            print(f"  manuals ingested in {precision}: {out[f'ingest_{precision}']}", flush=True)
            for mode in ("hybrid", "dense"):
                ranks[(precision, mode)], _ = evaluate_deepkb(kb, questions, mode)
    for mode in ("hybrid", "dense"):
        for half in ("test", "all"):
            group = [q["id"] for q in questions if half == "all" or q["split"] == half]
            f32 = [ranks[("f32", mode)][q]["mrr@10"] for q in group]
            bf16 = [ranks[("bf16", mode)][q]["mrr@10"] for q in group]
            diff = [b - a for a, b in zip(f32, bf16)]
            out[f"{mode} {half}"] = {
                "n": len(group), "f32": round(statistics.fmean(f32), 4), "bf16": round(statistics.fmean(bf16), 4),
                "f32_interval": bootstrap(f32), "difference_interval": bootstrap(diff),
            }  # fmt: skip
            print(f"  manuals {mode} {half}: {out[f'{mode} {half}']}", flush=True)
    return out


def markdown(f: dict) -> list[str]:
    s = f["scifact"]
    lines = [
        "## Embedding precision: bf16 against f32 (retrieval and vectors)",
        "",
        f"SciFact, dense side alone, {s['queries']} test queries over {s['documents']:,} abstracts (every abstract a "
        "test query counts relevant, plus others), embedded by deepkb's OpenVINO engine in each precision:",
        "",
        "| precision | nDCG@10 | 95% interval | embed seconds |",
        "| --- | --- | --- | --- |",
        f"| f32 | {s['ndcg@10']['f32']:.4f} | {s['f32_interval'][0]:.4f}–{s['f32_interval'][1]:.4f} "
        f"| {s['seconds']['f32']} |",
        f"| bf16 | {s['ndcg@10']['bf16']:.4f} | {s['bf16_interval'][0]:.4f}–{s['bf16_interval'][1]:.4f} "
        f"| {s['seconds']['bf16']} |",
        "",
        f"bf16 − f32, paired over queries: {s['difference']:+.4f} (95% interval {s['difference_interval'][0]:+.4f} to "
        f"{s['difference_interval'][1]:+.4f}). Cosine of each bf16 vector to its f32 vector (abstracts and queries): "
        f"min {s['cosine_min']:.6f}, mean {s['cosine_mean']:.6f}.",
        "",
    ]
    m = f.get("manuals")
    if m:
        left_out = f", without {', '.join(m['skipped'])} and their questions" if m.get("skipped") else ""
        lines += [f"Manuals ({m['documents']} documents{left_out}; {m['questions']} questions), MRR@10:", "", "| mode, questions | f32 (95% interval) | bf16 "
                  "| bf16 − f32 (95% interval) |", "| --- | --- | --- | --- |"]  # fmt: skip
        for key in ("hybrid test", "hybrid all", "dense test", "dense all"):
            r = m[key]
            lines.append(
                f"| {key} ({r['n']}) | {r['f32']:.3f} ({r['f32_interval'][0]:.3f}–{r['f32_interval'][1]:.3f}) "
                f"| {r['bf16']:.3f} | {r['bf16'] - r['f32']:+.3f} ({r['difference_interval'][0]:+.3f} to "
                f"{r['difference_interval'][1]:+.3f}) |"
            )
        lines.append("")
    lines += [f"Measured {f['when'][:10]}. Reproduce: `.venv/bin/python bench/precision_quality.py`.", ""]
    return lines


def main() -> None:
    from figures import publish

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=int, default=600)
    parser.add_argument("--manuals", action="store_true", help="also ingest the manuals in both precisions and score")
    parser.add_argument("--skip", default="", help="comma-separated manuals left out (e.g. gnuplot.pdf, to save time)")
    parser.add_argument("--skip-scifact", action="store_true")
    args = parser.parse_args()
    figures: dict = {"when": time.strftime("%Y-%m-%dT%H:%M")}
    if OUT.exists():
        figures = {**json.loads(OUT.read_text()), **figures}
    if not args.skip_scifact:
        figures["scifact"] = scifact(args.pool)
    if args.manuals:
        figures["manuals"] = manuals(tuple(filter(None, args.skip.split(","))))
    publish(figures, OUT, markdown, REPO)


if __name__ == "__main__":
    main()
