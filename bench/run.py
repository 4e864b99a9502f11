"""deepkb benchmarks: retrieval quality on BEIR SciFact and speed against the raw engines, in one run.

    .venv/bin/python bench/run.py [--scifact DIR] [--speed-docs N] [--fresh] [--quick | --full] [--only NAME,...]

Writes BENCHMARKS.md and bench/out/results.json. Every speed figure is reported beside the raw engine measured in
the same run (sentence-transformers encode, hnswlib knn_query, an FTS5 query), because these machines are noisy.
SciFact (CC BY-NC) is read where it lies and never copied into the repository; its documents are written as
Markdown files under bench/cache/ (git-ignored) so that deepkb ingests them through its own code.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
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
    from deepkb.retrieval.search import fts_query

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
    figures["embedding_backend"] = embedder.backend
    for mode in ("keyword", "dense", "hybrid"):
        figures[mode] = _search_times(kb, queries, mode)
    # The opt-in second stage (Settings.rerank, deepkb.retrieval.rerank): what it adds to a hybrid search.
    default, kb.settings = kb.settings, dataclasses.replace(kb.settings, rerank=10)
    try:
        figures["hybrid_rerank_10"] = _search_times(kb, queries, "hybrid")
    finally:
        kb.settings = default
    return figures


def _search_times(kb: KnowledgeBase, queries: list[str], mode: str) -> dict:
    """Percentiles of `kb.search(q, k=10)` over the queries."""
    samples = []
    for q in queries:
        t0 = time.perf_counter()
        kb.search(q, k=10, mode=mode)
        samples.append(time.perf_counter() - t0)
    return percentiles(samples)


def ingest_speed(docs: Path, work: Path, rounds: int = 2, slice_files: int = 100) -> dict:
    """deepkb ingest of a corpus against raw SentenceTransformer.encode of the very same chunk texts, interleaved.

    Other processes share these CPUs, and their load comes in bursts of seconds to minutes. So the corpus is cut
    into folders of `slice_files` files, and for each folder the raw encode of its chunks and deepkb's ingest of it
    run back to back, in alternating order (each round ingests all folders into a fresh knowledge base; the model
    is loaded once and shared). Wall and CPU time are both reported: CPU time is what the work costs, wall time
    what a user waits under this machine's load. deepkb's own report splits its wall time into stages.
    """
    from functools import partial

    from deepkb.ingest.chunker import chunk_units
    from deepkb.loaders import load

    shutil.rmtree(work, ignore_errors=True)
    files = sorted(docs.iterdir())
    slices = [work / "docs" / f"part-{i // slice_files:03d}" for i in range(0, len(files), slice_files)]
    for folder, start in zip(slices, range(0, len(files), slice_files)):
        folder.mkdir(parents=True)
        for path in files[start : start + slice_files]:
            shutil.copy2(path, folder / path.name)
    probe = KnowledgeBase.open(work / "probe")
    settings, embedder = probe.settings, probe.embedder
    probe.close()
    sys.path.insert(0, str(REPO / "bench"))
    from figures import RawOpenVINO, sentence_transformer

    model, batch = sentence_transformer(settings.embedding_model), settings.embed_batch_size
    engine = RawOpenVINO(settings.embedding_model) if embedder.backend == "openvino" else model
    # What deepkb will embed, made by its own loader and chunker (checked against what it stored, below): per
    # folder, the chunks whose text no earlier folder had.
    seen: set[str] = set()
    texts: list[list[str]] = []
    tokens = 0
    for folder in slices:
        new: dict[str, object] = {}
        for path in sorted(folder.iterdir()):
            units = load(path, path.read_bytes()).units
            for c in chunk_units(units, embedder.count_tokens, embedder.max_tokens, settings.chunk_tokens,
                                 settings.overlap_tokens):  # fmt: skip
                if c.hash not in seen and c.hash not in new:
                    new[c.hash] = c
                    tokens += c.n_tokens
        seen |= new.keys()
        texts.append([c.embed_text for c in new.values()])
    chunks = sum(len(t) for t in texts)
    model.encode(texts[0][:64], batch_size=batch)  # warm up
    engine.encode(texts[0][:64], batch_size=batch)

    def timed(step) -> tuple[float, float, object]:
        wall, cpu = time.perf_counter(), time.process_time()
        result = step()
        return time.perf_counter() - wall, time.process_time() - cpu, result

    totals = []
    pairs: list[float] = []
    loads = [round(os.getloadavg()[0], 2)]
    for r in range(rounds):
        print(f"  round {r + 1} of {rounds}: {len(slices)} folders, raw encode and deepkb ingest of each…", flush=True)
        kb_dir = work / f"kb-{r}"
        raw_wall = raw_cpu = kb_wall = kb_cpu = eng_wall = eng_cpu = 0.0
        stages: dict[str, float] = {}
        embedded = added = 0
        with KnowledgeBase.open(kb_dir, embedder=embedder) as kb:
            for i, folder in enumerate(slices):
                steps = {
                    "raw": partial(model.encode, texts[i], batch_size=batch),
                    "engine": partial(engine.encode, texts[i], batch_size=batch),
                    "deepkb": partial(kb.ingest, [folder]),
                }
                names = list(steps)
                order = names[(i + r) % 3 :] + names[: (i + r) % 3]  # each goes first, second and third in turn
                took = {name: timed(steps[name]) for name in order}
                raw_wall, raw_cpu = raw_wall + took["raw"][0], raw_cpu + took["raw"][1]
                eng_wall, eng_cpu = eng_wall + took["engine"][0], eng_cpu + took["engine"][1]
                kb_wall, kb_cpu = kb_wall + took["deepkb"][0], kb_cpu + took["deepkb"][1]
                pairs.append(took["raw"][0] / took["deepkb"][0])
                report = took["deepkb"][2]
                for name, value in report.stage_seconds.items():
                    stages[name] = stages.get(name, 0.0) + value
                embedded, added = embedded + report.chunks_embedded, added + report.added
                loads.append(round(os.getloadavg()[0], 2))
            stored = {h for (h,) in kb.store.db.execute("SELECT DISTINCT hash FROM chunks")}
        if stored != seen or embedded != chunks:
            raise SystemExit(f"deepkb embedded other chunks than the raw runs encode: {embedded} vs {chunks}")
        totals.append({"raw_wall": raw_wall, "raw_cpu": raw_cpu, "kb_wall": kb_wall, "kb_cpu": kb_cpu,
                       "engine_wall": eng_wall, "engine_cpu": eng_cpu,
                       "stages": stages, "files": added})  # fmt: skip
        if r < rounds - 1:
            shutil.rmtree(kb_dir)

    with KnowledgeBase.open(work / f"kb-{rounds - 1}", embedder=embedder) as kb:
        t0 = time.perf_counter()
        again = kb.ingest(slices)
        reingest_s = time.perf_counter() - t0

    def med(key: str) -> float:
        return statistics.median(t[key] for t in totals)

    deepkb_s, raw_s = med("kb_wall"), med("raw_wall")
    stages = {name: round(statistics.median(t["stages"].get(name, 0.0) for t in totals), 2)
              for name in ("read_chunk", "embed", "store", "index", "scan")}  # fmt: skip
    stages["other"] = round(deepkb_s - sum(stages.values()), 2)
    return {
        "files": totals[0]["files"], "chunks": chunks, "tokens": tokens, "rounds": rounds, "folders": len(slices),
        "embedding_backend": embedder.backend,
        "load_1min": loads, "deepkb_seconds": round(deepkb_s, 2), "deepkb_cpu_seconds": round(med("kb_cpu"), 2),
        "deepkb_chunks_per_s": round(chunks / deepkb_s, 1), "deepkb_tokens_per_s": round(tokens / deepkb_s),
        "raw_encode_seconds": round(raw_s, 2), "raw_cpu_seconds": round(med("raw_cpu"), 2),
        "raw_chunks_per_s": round(chunks / raw_s, 1), "raw_tokens_per_s": round(tokens / raw_s),
        "ratio": round(statistics.median(t["raw_wall"] / t["kb_wall"] for t in totals), 3),
        "ratio_cpu": round(statistics.median(t["raw_cpu"] / t["kb_cpu"] for t in totals), 3),
        "engine": "openvino (called directly, bench/figures.RawOpenVINO)" if engine is not model else "sentence-transformers",
        "engine_encode_seconds": round(med("engine_wall"), 2), "engine_cpu_seconds": round(med("engine_cpu"), 2),
        "ratio_engine": round(statistics.median(t["engine_wall"] / t["kb_wall"] for t in totals), 3),
        "ratio_engine_cpu": round(statistics.median(t["engine_cpu"] / t["kb_cpu"] for t in totals), 3),
        "pair_ratio_median": round(statistics.median(pairs), 3),
        "pair_ratio_range": [round(min(pairs), 3), round(max(pairs), 3)], "pair_ratios": [round(x, 3) for x in pairs],
        "rounds_s": [{k: round(v, 2) for k, v in t.items() if k not in ("stages", "files")} for t in totals],
        "stages_s": stages, "embed_vs_raw": round(stages["embed"] / raw_s, 3),
        "reingest_unchanged_seconds": round(reingest_s, 3), "reingest_embedded": again.chunks_embedded,
    }  # fmt: skip


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"
    )


# CPU features that change which kernels the engines run (bf16/AMX: OpenVINO's default precision; AVX-512: llama.cpp)
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")
PACKAGES = ("openvino", "torch", "transformers", "sentence-transformers", "llama_cpp_python", "hnswlib", "numpy",
            "tokenizers", "sqlite-utils", "pypdf")  # fmt: skip


def software() -> dict:
    """The versions and CPU flags the figures were taken with (BENCHMARKS.md's header)."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    flags = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    import sqlite3

    return {
        "packages": {name: ver(name) for name in PACKAGES} | {"SQLite": sqlite3.sqlite_version},
        "cpu_flags": {flag: flag in flags for flag in CPU_FLAGS},
    }


def write_report(results: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    load = f"load average {results['load_before'][0]:.1f} at the start, {results.get('load_after', [float('nan')])[0]:.1f} at the end"
    took = results.get("wall_seconds") or sum(results.get("seconds", {}).values())
    sw = results.get("software") or software()
    lines = ["# deepkb benchmarks", "", f"Machine: {results['machine']}  ",
             "CPU flags: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in sw["cpu_flags"].items()) + "  ",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in sw["packages"].items()) + "  ",
             f"Run: {results['date']}, {load}, "
             f"{took / 60:.0f} minutes in all  ",
             "Reproduce: `make bench` (or `.venv/bin/python bench/run.py [--quick | --full] [--only NAME,...]`); raw "
             "figures: `bench/out/results.json`. Every speed figure is measured beside the raw engine in the same run, "
             "and reported as a ratio too, because these machines are noisy.", ""]  # fmt: skip
    reruns = results.get("rerun_seconds", {})
    ran = {**results.get("seconds", {}), **reruns}
    kept = [f"{name} ({results[name].get('when', '?')[:16]})" for name in OTHERS if name in results and name not in ran]
    if kept:
        lines += ["Sections kept from earlier runs (not re-run this time): " + ", ".join(kept) + ".", ""]
    if reruns:
        sizes = results.get("rerun_size", {})
        lines += ["Re-run after it with `--only` (these figures replace the run's own): " + ", ".join(
            f"{name} ({results[name].get('when', '?')[11:16]}, {sizes.get(name, '?')} size, {sec / 60:.0f} min)"
            for name, sec in reruns.items()) + ".", ""]  # fmt: skip
    sys.path.insert(0, str(REPO / "bench"))
    from summary import goals

    lines += goals(results)
    q = results.get("quality")
    if q:
        lines += ["## Retrieval quality, BEIR SciFact test (300 queries, 5,183 abstracts)", "",
                  "| system | nDCG@10 | Recall@100 |", "| --- | --- | --- |"]  # fmt: skip
        lines += [f"| deepkb {mode} | {v['ndcg@10']:.3f} | {v['recall@100']:.3f} |" for mode, v in q.items()]
        lines += [f"| published: {name} | {score:.3f} | |" for name, score in PUBLISHED.items()]
        lines.append("")
    s = results.get("ingest")
    if s:
        stage_rows = (("read_chunk", "read + chunk (loaders; chunker token counts)"),
                      ("embed", f"embed ({s.get('embedding_backend', 'sentence-transformers')}, batches sorted by "
                                "token count)"),
                      ("store", "store (one SQLite transaction per 256 chunks, FTS5 triggers)"),
                      ("index", "index (HNSW add, atomic save)"), ("scan", "scan (walk, stat, compare)"),
                      ("other", "the rest (bookkeeping between stages)"))  # fmt: skip
        engine = s.get("engine", "sentence-transformers")
        corpus = f"{s['files']} SciFact abstracts, {s['chunks']} chunks, {s['tokens']} tokens"
        deepkb_row = (f"| deepkb ingest (read, chunk, embed, store, index) | {s['deepkb_seconds']} "
                      f"| {s['deepkb_cpu_seconds']} | {s['deepkb_chunks_per_s']} | {s['deepkb_tokens_per_s']} |")  # fmt: skip
        head = [
            f"| | seconds (median of {s['rounds']}) | CPU seconds | chunks/s | tokens/s |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [f"## Ingest throughput against deepkb's own engine (raw = {engine}) ({corpus})", "", *head]
        if "ratio_engine" in s:
            per_s = lambda sec: f"{s['chunks'] / sec:.1f} | {s['tokens'] / sec:.0f}"  # noqa: E731
            lines += [f"| raw: {engine}, same chunks | {s['engine_encode_seconds']} | {s['engine_cpu_seconds']} "
                      f"| {per_s(s['engine_encode_seconds'])} |", deepkb_row, "",
                      f"deepkb's overhead over its engine: throughput ratio deepkb / raw **{s['ratio_engine']}** in wall "
                      f"time, **{s['ratio_engine_cpu']}** in CPU time (goal ≥ 0.95). The raw engine is handed the chunk "
                      "texts deepkb stores; deepkb also reads, chunks, stores and indexes them.", ""]  # fmt: skip
        lines += [f"## Ingest throughput against what a user would otherwise run (raw = sentence-transformers on torch) "
                  f"({corpus})", "", *head,
                  f"| raw: SentenceTransformer.encode, same chunks | {s['raw_encode_seconds']} | {s['raw_cpu_seconds']} "
                  f"| {s['raw_chunks_per_s']} | {s['raw_tokens_per_s']} |", deepkb_row,
                  "", f"Ratio deepkb / raw throughput: **{s['ratio']}** in wall time, **{s['ratio_cpu']}** in CPU time "
                  f"(goal ≥ 0.9). Interleaved in one process, the models loaded once: the corpus in {s['folders']} "
                  "folders, each encoded by both raw engines and ingested by deepkb back to back, the order rotating, "
                  f"into a fresh knowledge base per round. Per folder, raw / deepkb wall time: median "
                  f"{s['pair_ratio_median']}, range {s['pair_ratio_range'][0]}–{s['pair_ratio_range'][1]}; 1-minute load "
                  f"average {min(s['load_1min'])}–{max(s['load_1min'])} on {os.cpu_count()} CPUs shared with other work.",
                  "", "Where deepkb's wall time goes (medians):", "", "| stage | seconds | share |", "| --- | --- | --- |"]  # fmt: skip
        lines += [f"| {label} | {s['stages_s'][name]} | {s['stages_s'][name] / s['deepkb_seconds']:.1%} |"
                  for name, label in stage_rows]  # fmt: skip
        backend = s.get("embedding_backend", "sentence-transformers")
        lines += ["", f"deepkb embeds through its default backend here, **{backend}** (the same vectors: see README, "
                  f"Models). deepkb's embed stage alone took {s['embed_vs_raw']} × sentence-transformers' encode wall "
                  "time. It embeds each commit's chunks sorted by exact token count, one call per model batch, so its "
                  "batches pad less than either raw engine's. "
                  f"Re-ingest of the unchanged corpus: {s['reingest_unchanged_seconds']} s, "
                  f"{s['reingest_embedded']} chunks embedded.", ""]  # fmt: skip
    lat = results.get("latency")
    if lat:
        engine = lat.get("embedding_backend", "torch")
        lines += [f"## Search latency against deepkb's own engines (raw = {engine} encode, hnswlib, FTS5 called "
                  f"directly) ({lat['chunks']} chunks, {lat['queries']} queries, k=10)", "",
                  "| | p50 ms | p95 ms |", "| --- | --- | --- |"]  # fmt: skip
        for name in ("raw_encode", "raw_knn", "raw_fts", "raw_total", "keyword", "dense", "hybrid"):
            lines.append(f"| {name.replace('_', ' ')} | {lat[name]['p50_ms']} | {lat[name]['p95_ms']} |")
        lines += ["", f"Raw encode here is deepkb's own embedding engine ({lat.get('embedding_backend', 'torch')}) "
                  "called directly; bench/search_latency.py (below) takes sentence-transformers as the raw encoder.", ""]  # fmt: skip
    sys.path.insert(0, str(REPO / "bench"))

    for name in OTHERS:
        module = importlib.import_module(name)
        if results.get(name) and hasattr(module, "markdown"):
            lines += [*module.markdown(results[name]), ""]
    (REPO / "BENCHMARKS.md").write_text("\n".join(lines))


# bench/<name>.py modules with run() and markdown(), in the order they run and appear in BENCHMARKS.md.
OTHERS = ("fusion_sweep", "manuals", "context_recall", "search_latency", "search_process", "reingest", "ingest_speed",
          "llm_speed", "memory", "encoder_options", "peer_txtai", "watch_latency", "chat_startup")  # fmt: skip
# Run at their smaller size unless --full: together they would take the 30-minute `make bench` past its budget.
QUICK_BY_DEFAULT = ("memory", "encoder_options", "peer_txtai", "ingest_speed")


def run_others(
    results: dict, size: str, only: set[str] | None = None, skip: frozenset[str] = frozenset(), save: bool = True
) -> None:
    """The standalone benches; one that fails is reported and the rest still run. `save`: keep results.json current."""
    import traceback

    sys.path.insert(0, str(REPO / "bench"))
    # A main run times its sections in "seconds"; a later `--only` run records its own apart, so the header can say
    # which figures came afterwards and the main run's length stays what it was.
    timing = results.setdefault("rerun_seconds" if only else "seconds", {})
    OUT.mkdir(parents=True, exist_ok=True)
    for name in OTHERS:
        module = importlib.import_module(name)
        if not hasattr(module, "markdown"):
            continue
        if (only and name not in only) or name in skip:
            if name not in results and (OUT / f"{name}.json").exists():  # keep its figures from an earlier run
                results[name] = json.loads((OUT / f"{name}.json").read_text())
                print(f"{name}: skipped, figures of {results[name].get('when', 'an earlier run')} kept", flush=True)
            continue
        quick = size == "quick" or (size == "default" and name in QUICK_BY_DEFAULT)
        print(f"{name}{' (quick)' if quick else ''}…", flush=True)
        started = time.perf_counter()
        try:
            results[name] = module.run(quick=quick) if "quick" in module.run.__code__.co_varnames else module.run()
            (OUT / f"{name}.json").write_text(json.dumps(results[name], indent=2) + "\n")
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - one broken bench must not lose the others' figures
            traceback.print_exc()
            print(f"{name} failed: {exc}", flush=True)
        timing[name] = round(time.perf_counter() - started, 1)
        if only:
            results.setdefault("rerun_size", {})[name] = "quick" if quick else "full"
        if save:
            (OUT / "results.json").write_text(json.dumps(results, indent=2))  # what is done so far survives a crash


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scifact", default=os.environ.get("SCIFACT_DIR", str(REPO.parent / "shared" / "data" / "scifact"))
    )
    parser.add_argument("--speed-docs", type=int, default=300, help="abstracts used for the ingest-speed figure")
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached SciFact knowledge base")
    parser.add_argument("--quick", action="store_true", help="every bench at its smaller size")
    parser.add_argument(
        "--full", action="store_true", help=f"every bench at full size, {', '.join(QUICK_BY_DEFAULT)} too"
    )
    parser.add_argument(
        "--only", help="comma-separated bench/<name>.py modules to run (others keep their last figures)"
    )
    parser.add_argument(
        "--skip", default="", help="comma-separated bench/<name>.py modules not to run (last figures kept)"
    )
    args = parser.parse_args()
    size = "quick" if args.quick else "full" if args.full else "default"
    only = set(args.only.split(",")) if args.only else None
    if only:  # refresh some sections, keep the rest of the last run
        last = OUT / "results.json"
        if not last.exists():  # a fresh machine: no earlier run's figures to rebuild BENCHMARKS.md around
            results: dict = {}
            run_others(results, size, only, save=False)
            for name in OTHERS:
                if name in results and name in only:
                    module = importlib.import_module(name)
                    print("\n".join(module.markdown(results[name])))
            print(f"No full run on this machine ({last.relative_to(REPO)} is missing), so BENCHMARKS.md is left as it is:"
                  " the sections above are the new figures (also in bench/out/<name>.json).")  # fmt: skip
            return
        results = json.loads(last.read_text())
        run_others(results, size, only)
        write_report(results)
        return
    results: dict = {"machine": machine(), "software": software(), "date": time.strftime("%Y-%m-%d %H:%M"),
                     "load_before": os.getloadavg()}  # fmt: skip
    started = time.perf_counter()
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
    results["seconds"] = {"scifact": round(time.perf_counter() - started, 1)}
    run_others(results, size, skip=frozenset(filter(None, args.skip.split(","))))
    results["load_after"] = os.getloadavg()
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_report(results)
    print(f"wrote {REPO / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
