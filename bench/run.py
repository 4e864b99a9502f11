"""deepkb benchmarks: retrieval quality on BEIR SciFact and speed against the raw engines, in one run.

    .venv/bin/python bench/run.py [--scifact DIR] [--speed-docs N] [--fresh]

Writes BENCHMARKS.md and bench/out/results.json. Every speed figure is reported beside the raw engine measured in
the same run (sentence-transformers encode, hnswlib knn_query, an FTS5 query), because these machines are noisy.
SciFact (CC BY-NC) is read where it lies and never copied into the repository; its documents are written as
Markdown files under bench/cache/ (git-ignored) so that deepkb ingests them through its own code.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from deepkb.kb import KnowledgeBase  # noqa: E402

CACHE = REPO / "bench" / "cache"
OUT = REPO / "bench" / "out"
PUBLISHED = {"BM25 (BEIR)": 0.665, "BM25 + cross-encoder (BEIR)": 0.688, "all-MiniLM-L6-v2 (MTEB)": 0.645,
             "BM25 + MiniLM hybrid (txtai)": 0.713}  # fmt: skip


def load_scifact(folder: Path) -> tuple[list[dict], dict[str, str], dict[str, dict[str, int]]]:
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").open()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (folder / "queries_test.jsonl").open())}
    qrels: dict[str, dict[str, int]] = {}
    for line in list((folder / "qrels" / "test.tsv").open())[1:]:
        qid, did, score = line.strip().split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    return corpus, {q: t for q, t in queries.items() if q in qrels}, qrels


def write_docs(corpus: list[dict], target: Path) -> None:
    """One Markdown file per abstract: the title as heading, so chunks carry it."""
    if target.exists() and len(list(target.iterdir())) == len(corpus):
        return
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for doc in corpus:
        (target / f"{doc['_id']}.md").write_text(f"# {doc['title'].strip() or doc['_id']}\n\n{doc['text']}\n")


def ndcg_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sum(r / math.log2(i + 2) for i, r in enumerate(sorted(relevant.values(), reverse=True)[:10]))
    return dcg / ideal if ideal else 0.0


def doc_ranking(hits) -> list[str]:
    """Chunks to documents: a document ranks where its best chunk ranks."""
    seen: dict[str, None] = {}
    for hit in hits:
        seen.setdefault(Path(hit.path).stem, None)
    return list(seen)


def quality(kb: KnowledgeBase, queries: dict[str, str], qrels: dict) -> dict:
    results = {}
    for mode in ("keyword", "dense", "hybrid"):
        ndcgs, recalls = [], []
        for qid, text in queries.items():
            ranked = doc_ranking(kb.search(text, k=100, mode=mode))
            relevant = qrels[qid]
            ndcgs.append(ndcg_at_10(ranked, relevant))
            recalls.append(len(set(ranked[:100]) & set(relevant)) / len(relevant))
        results[mode] = {"ndcg@10": round(statistics.mean(ndcgs), 4), "recall@100": round(statistics.mean(recalls), 4)}
        print(f"  {mode:8s} nDCG@10 {results[mode]['ndcg@10']:.4f}  Recall@100 {results[mode]['recall@100']:.4f}")
    return results


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95)] * 1000, 2),
    }


def latency(kb: KnowledgeBase, queries: list[str]) -> dict:
    """deepkb search per mode against the raw engines on the same queries, same process, same run."""
    from deepkb.search import fts_query

    embedder, index, store = kb.embedder, kb.index, kb.store
    kb.search(queries[0], k=10)  # warm up
    raw = {"encode": [], "knn": [], "fts": []}
    for q in queries:
        t0 = time.perf_counter()
        vector = embedder.embed([q])[0]
        t1 = time.perf_counter()
        index.index.knn_query(vector.reshape(1, -1), k=50)
        t2 = time.perf_counter()
        store.db.execute(
            "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT 50", [fts_query(q)]
        ).fetchall()
        t3 = time.perf_counter()
        raw["encode"].append(t1 - t0)
        raw["knn"].append(t2 - t1)
        raw["fts"].append(t3 - t2)
    figures = {f"raw_{name}": percentiles(samples) for name, samples in raw.items()}
    figures["raw_total"] = percentiles([a + b + c for a, b, c in zip(raw["encode"], raw["knn"], raw["fts"])])
    for mode in ("keyword", "dense", "hybrid"):
        samples = []
        for q in queries:
            t0 = time.perf_counter()
            kb.search(q, k=10, mode=mode)
            samples.append(time.perf_counter() - t0)
        figures[mode] = percentiles(samples)
    return figures


def ingest_speed(docs: Path, work: Path) -> dict:
    """deepkb ingest of a corpus against raw SentenceTransformer.encode of the very same chunk texts."""
    shutil.rmtree(work, ignore_errors=True)
    kb = KnowledgeBase.open(work)
    model = kb.embedder.model
    model.encode(["warm up"] * 8)
    t0 = time.perf_counter()
    report = kb.ingest([docs])
    ingest_s = time.perf_counter() - t0
    rows = kb.store.db.execute("SELECT heading, text, n_tokens FROM chunks").fetchall()
    texts = [f"{h}\n{t}" if h else t for h, t, _ in rows]
    tokens = sum(n for _, _, n in rows)
    t0 = time.perf_counter()
    model.encode(texts, batch_size=kb.settings.embed_batch_size)
    raw_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = kb.ingest([docs])
    reingest_s = time.perf_counter() - t0
    kb.close()
    return {
        "files": report.added, "chunks": len(rows), "tokens": tokens,
        "deepkb_seconds": round(ingest_s, 2), "deepkb_chunks_per_s": round(len(rows) / ingest_s, 1),
        "deepkb_tokens_per_s": round(tokens / ingest_s), "raw_encode_seconds": round(raw_s, 2),
        "raw_chunks_per_s": round(len(rows) / raw_s, 1), "ratio": round(raw_s / ingest_s, 3),
        "reingest_unchanged_seconds": round(reingest_s, 3), "reingest_embedded": again.chunks_embedded,
    }  # fmt: skip


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"
    )


def write_report(results: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    load = (
        f"load average {results['load_before'][0]:.1f} at the start, {results.get('load_after', ['?'])[0]} at the end"
    )
    lines = ["# deepkb benchmarks", "", f"Machine: {results['machine']}  ", f"Run: {results['date']}, {load}  ",
             "Reproduce: `make bench` (or `.venv/bin/python bench/run.py`); raw figures: `bench/out/results.json`.", ""]  # fmt: skip
    q = results.get("quality")
    if q:
        lines += ["## Retrieval quality, BEIR SciFact test (300 queries, 5,183 abstracts)", "",
                  "| system | nDCG@10 | Recall@100 |", "| --- | --- | --- |"]  # fmt: skip
        lines += [f"| deepkb {mode} | {v['ndcg@10']:.3f} | {v['recall@100']:.3f} |" for mode, v in q.items()]
        lines += [f"| published: {name} | {score:.3f} | |" for name, score in PUBLISHED.items()]
        lines.append("")
    s = results.get("ingest")
    if s:
        lines += [f"## Ingest throughput ({s['files']} SciFact abstracts, {s['chunks']} chunks, {s['tokens']} tokens)", "",
                  "| | seconds | chunks/s |", "| --- | --- | --- |",
                  f"| raw SentenceTransformer.encode, same chunks | {s['raw_encode_seconds']} | {s['raw_chunks_per_s']} |",
                  f"| deepkb ingest (read, chunk, embed, store, index) | {s['deepkb_seconds']} | {s['deepkb_chunks_per_s']} |",
                  "", f"Ratio deepkb / raw throughput: **{s['ratio']}** (goal ≥ 0.9). "
                  f"Re-ingest of the unchanged corpus: {s['reingest_unchanged_seconds']} s, "
                  f"{s['reingest_embedded']} chunks embedded.", ""]  # fmt: skip
    lat = results.get("latency")
    if lat:
        lines += [f"## Search latency ({lat['chunks']} chunks, {lat['queries']} queries, k=10)", "",
                  "| | p50 ms | p95 ms |", "| --- | --- | --- |"]  # fmt: skip
        for name in ("raw_encode", "raw_knn", "raw_fts", "raw_total", "keyword", "dense", "hybrid"):
            lines.append(f"| {name.replace('_', ' ')} | {lat[name]['p50_ms']} | {lat[name]['p95_ms']} |")
        lines.append("")
    sys.path.insert(0, str(REPO / "bench"))
    import importlib

    for name in OTHERS:
        if results.get(name):
            lines += [*importlib.import_module(name).markdown(results[name]), ""]
    (REPO / "BENCHMARKS.md").write_text("\n".join(lines))


OTHERS = ("llm_speed", "memory", "peer_txtai", "watch_latency")  # bench/<name>.py with run() and markdown()


def run_others(results: dict, quick: bool) -> None:
    """The standalone benches: answer speed, peak memory, the txtai peer, watch latency."""
    import importlib

    sys.path.insert(0, str(REPO / "bench"))
    for name in OTHERS:
        module = importlib.import_module(name)
        if not hasattr(module, "markdown"):
            continue
        print(f"{name}…")
        results[name] = module.run(quick=quick) if "quick" in module.run.__code__.co_varnames else module.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scifact", default=os.environ.get("SCIFACT_DIR", str(REPO.parent / "shared" / "data" / "scifact"))
    )
    parser.add_argument("--speed-docs", type=int, default=1000, help="abstracts used for the ingest-speed figure")
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached SciFact knowledge base")
    parser.add_argument("--quick", action="store_true", help="the smaller sizes of the LLM, peer and memory benches")
    args = parser.parse_args()
    results: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "load_before": os.getloadavg()}
    folder = Path(args.scifact)
    if not (folder / "corpus.jsonl").exists():
        print(f"SciFact not found at {folder}: skipping the SciFact figures (set --scifact or SCIFACT_DIR).")
        write_report(results)
        return
    corpus, queries, qrels = load_scifact(folder)
    docs = CACHE / "scifact-docs"
    write_docs(corpus, docs)
    speed_docs = CACHE / f"scifact-docs-{args.speed_docs}"
    write_docs(corpus[: args.speed_docs], speed_docs)
    print(f"ingest speed on {args.speed_docs} abstracts…")
    results["ingest"] = ingest_speed(speed_docs, CACHE / "speed-kb")
    print("  ", results["ingest"])
    kb_dir = CACHE / "scifact-kb"
    if args.fresh:
        shutil.rmtree(kb_dir, ignore_errors=True)
    kb = KnowledgeBase.open(kb_dir)
    print("SciFact knowledge base (cached between runs)…")
    kb.ingest([docs])
    print("retrieval quality…")
    results["quality"] = quality(kb, queries, qrels)
    print("search latency…")
    results["latency"] = {
        "chunks": kb.status()["chunks"],
        "queries": len(queries),
        **latency(kb, list(queries.values())),
    }
    kb.close()
    run_others(results, quick=args.quick)
    results["load_after"] = os.getloadavg()
    write_report(results)
    print(f"wrote {REPO / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
