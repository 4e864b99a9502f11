"""Ingest throughput on real manuals: deepkb as it was and as it is, per precision, beside its raw engine, same run.

    .venv/bin/python bench/ingest_speed.py [--rounds 3] [--files a.txt,b.html,...] [--base REV] [--precisions f32,int8]

The documents are the Debian manuals of bench/manuals.py (bench/manuals_fetch.py fetches them into bench/cache/).
Every contender gets the same chunks (deepkb's loader and chunker make them; the bench checks that each deepkb run
embedded exactly those), interleaved, the order rotating each round, because other work shares these 2 CPUs:

- raw: deepkb's own engine called directly (bench/figures.RawOpenVINO): OpenVINO f32 on the IR deepkb converted, the
  Rust tokenizer, batches of 32 chunk texts in their stored order, mean pooling; what a user of OpenVINO would write.
- deepkb at --base (default: the commit this work started from), `deepkb ingest --json` in a subprocess from an
  exported copy of that commit; its own `seconds` (the sync, without the process start and model load).
- deepkb now, once per precision, in this process (the model loaded once per precision), a fresh knowledge base each.

Tokens are the model's: each chunk's tokens plus [CLS] and [SEP], as the engine reads them. The share of the
hardware peak: tokens/s x 24 MFLOP per token (all-MiniLM-L6-v2: 6 layers of 4*384^2 + 2*384*1536 weights, 2 FLOP per
multiply-add, 21.2 MFLOP, plus attention at about 200 tokens) over the fp32 peak of the CPUs this process may use
(2 FMA pipes of 256 bits per Zen 4 core = 32 FLOP per cycle per core, at the clock /proc/cpuinfo reports).
Writes bench/out/ingest_speed.json and prints its BENCHMARKS.md section.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

CACHE = REPO / "bench" / "cache"
OUT = REPO / "bench" / "out" / "ingest_speed.json"
BASE = "b62b0f6"  # deepkb before this work (issue 26)
DEFAULT_FILES = (
    "git-user-manual.txt", "python-logging.rst.txt", "python-sqlite3.rst.txt", "pg-app-psql.html",
    "pg-sql-createindex.html", "rsync.1.txt", "find.1.txt",
)  # fmt: skip
QUICK_FILES = ("python-logging.rst.txt", "pg-sql-createindex.html", "tar.1.txt")
MFLOP_PER_TOKEN = 24.0
FLOP_PER_CYCLE_PER_CORE = 32  # fp32: two 256-bit FMA pipes (Zen 4 runs AVX-512 on them), 8 lanes x 2 FLOP each


def fp32_peak() -> tuple[float, str]:
    """FLOP/s of the CPUs this process may use, and how it was computed."""
    cores = len(os.sched_getaffinity(0))
    mhz = [float(ln.split(":")[1]) for ln in open("/proc/cpuinfo") if ln.startswith("cpu MHz")]
    clock = (max(mhz) if mhz else 2600.0) * 1e6
    peak = cores * FLOP_PER_CYCLE_PER_CORE * clock
    return (
        peak,
        f"{cores} cores x {FLOP_PER_CYCLE_PER_CORE} FLOP/cycle x {clock / 1e9:.2f} GHz = {peak / 1e9:.0f} GFLOP/s",
    )


def export_base(rev: str) -> Path:
    """deepkb's package as it was at `rev`, unpacked under bench/cache (git-ignored)."""
    target = CACHE / f"deepkb-{rev}"
    if not (target / "deepkb" / "__init__.py").exists():
        data = subprocess.run(
            ["git", "-C", str(REPO), "archive", rev, "deepkb"], check=True, capture_output=True
        ).stdout
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        with tarfile.open(fileobj=BytesIO(data)) as tar:
            tar.extractall(target, filter="data")
    return target


def run(rounds: int = 3, files: tuple[str, ...] = DEFAULT_FILES, base: str = BASE,
        precisions: tuple[str, ...] = ("f32", "bf16"), quick: bool = False) -> dict:  # fmt: skip
    """Every contender on the same chunks, `rounds` times interleaved (quick: 2 rounds of 3 smaller manuals)."""
    if quick:
        rounds, files = 2, QUICK_FILES
    from figures import RawOpenVINO
    from manuals_fetch import fetch

    from deepkb.ingest.chunker import chunk_units
    from deepkb.kb import KnowledgeBase
    from deepkb.loaders import load

    work = CACHE / "ingest-speed"
    shutil.rmtree(work, ignore_errors=True)
    docs = work / "docs"
    docs.mkdir(parents=True)
    source = fetch()
    for name in files:
        shutil.copy2(source / name, docs / name)
    embedders = {}
    for p in precisions:
        with KnowledgeBase.open(work / f"probe-{p}", embedding_precision=p) as kb:
            embedders[p] = kb.embedder
    embedder, settings = embedders[precisions[0]], KnowledgeBase.open(work / "probe-f32").settings
    chunks: dict[str, object] = {}
    for path in sorted(docs.iterdir()):
        units = load(path, path.read_bytes()).units
        for c in chunk_units(units, embedder.count_tokens, embedder.max_tokens, settings.chunk_tokens,
                             settings.overlap_tokens):  # fmt: skip
            chunks.setdefault(c.hash, c)
    texts = [c.embed_text for c in chunks.values()]
    tokens = sum(c.n_tokens + 2 for c in chunks.values())
    raw = RawOpenVINO(settings.embedding_model)
    raw.encode(texts[:64])  # warm up: compile
    for e in embedders.values():
        e.embed(texts[:64])
    base_dir = export_base(base)
    env = {**os.environ, "PYTHONPATH": str(base_dir), "DEEPKB_EMBEDDING_BACKEND": "openvino"}
    env.pop("DEEPKB_EMBEDDING_PRECISION", None)

    def raw_step() -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        raw.encode(texts, batch_size=32)
        return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "engine_idle": 0.0,
                "tokens": tokens, "chunks": len(texts)}  # fmt: skip

    def base_step(r: int) -> dict:
        kb_dir = work / f"base-{r}"
        shutil.rmtree(kb_dir, ignore_errors=True)
        out = subprocess.run([sys.executable, "-m", "deepkb", "--kb", str(kb_dir), "ingest", str(docs), "--json"],
                             env=env, capture_output=True, text=True, cwd=work)  # fmt: skip
        if out.returncode not in (0, 1):
            raise SystemExit(f"deepkb at {base} failed: {out.stderr[-2000:]}")
        report = json.loads(out.stdout)
        # Its own chunker (headings and spans changed since, issue 20) cut the same files into slightly other chunks:
        # its throughput is counted in the tokens it embedded, read from its own database.
        import sqlite3

        with sqlite3.connect(kb_dir / "kb.sqlite") as db:
            (embedded,) = db.execute(
                "SELECT SUM(n) FROM (SELECT MAX(n_tokens) + 2 AS n FROM chunks GROUP BY hash)"
            ).fetchone()
        return {"seconds": report["seconds"], "tokens": embedded, "chunks": report["chunks_embedded"],
                "engine_idle": 1 - report["stage_seconds"]["embed"] / report["seconds"],
                "stages": report["stage_seconds"]}  # fmt: skip

    def now_step(p: str, r: int) -> dict:
        kb_dir = work / f"now-{p}-{r}"
        shutil.rmtree(kb_dir, ignore_errors=True)
        with KnowledgeBase.open(kb_dir, embedder=embedders[p]) as kb:
            c0 = time.process_time()
            report = kb.ingest([docs])
            cpu = time.process_time() - c0
            stored = {h for (h,) in kb.store.db.execute("SELECT DISTINCT hash FROM chunks")}
        if stored != set(chunks) or report.chunks_embedded != len(texts):
            raise SystemExit(f"deepkb ({p}) embedded other chunks than the raw engine encodes")
        s = report.stage_seconds
        return {"seconds": report.seconds, "cpu": cpu, "engine_idle": 1 - s["embed"] / report.seconds, "stages": s,
                "tokens": tokens, "chunks": len(texts)}  # fmt: skip

    steps = {"raw": lambda r: raw_step(), f"deepkb {base}": base_step,
             **{f"deepkb {p}": (lambda r, p=p: now_step(p, r)) for p in precisions}}  # fmt: skip
    names = list(steps)
    took: dict[str, list[dict]] = {n: [] for n in names}
    loads = [round(os.getloadavg()[0], 2)]
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        print(f"  round {r + 1} of {rounds}: {', '.join(order)}", flush=True)
        for name in order:
            took[name].append(steps[name](r))
            print(f"    {name}: {took[name][-1]['seconds']:.1f} s", flush=True)
            loads.append(round(os.getloadavg()[0], 2))
    peak, peak_how = fp32_peak()

    def row(name: str) -> dict:
        secs = [t["seconds"] for t in took[name]]
        speed = {n: [t["tokens"] / t["seconds"] for t in took[n]] for n in (name, "raw", f"deepkb {base}")}
        ratio = [b / a for a, b in zip(speed["raw"], speed[name])]  # tokens/s over the raw engine's, same round
        vs_base = [b / a for a, b in zip(speed[f"deepkb {base}"], speed[name])]
        tps = statistics.median(speed[name])
        return {"seconds": round(statistics.median(secs), 2), "seconds_all": [round(s, 2) for s in secs],
                "tokens_per_s": round(tps), "chunks_per_s": round(took[name][0]["chunks"] / statistics.median(secs), 1),
                "tokens": took[name][0]["tokens"],
                "x_raw": round(statistics.median(ratio), 3), "x_raw_range": [round(min(ratio), 3), round(max(ratio), 3)],
                "x_base": round(statistics.median(vs_base), 3),
                "x_base_range": [round(min(vs_base), 3), round(max(vs_base), 3)],
                "engine_idle": round(statistics.median(t["engine_idle"] for t in took[name]), 4),
                "peak_share": round(tps * MFLOP_PER_TOKEN * 1e6 / peak, 3),
                "stages": {k: round(statistics.median(t["stages"].get(k, 0.0) for t in took[name]), 2)
                           for k in took[name][0].get("stages", {})}}  # fmt: skip

    return {"when": time.strftime("%Y-%m-%dT%H:%M"), "files": list(files), "chunks": len(texts), "tokens": tokens,
            "rounds": rounds, "base": base, "load_1min": loads, "peak_gflops": round(peak / 1e9), "peak_how": peak_how,
            "rows": {n: row(n) for n in names}}  # fmt: skip


def markdown(f: dict) -> list[str]:
    base = f"deepkb {f['base']}"
    lines = [
        f"## Ingest throughput on real manuals (raw = deepkb's own engine, OpenVINO f32 called directly) "
        f"({len(f['files'])} manuals, {f['chunks']:,} chunks, {f['tokens']:,} tokens)",
        "",
        f"{', '.join(f['files'])}; the same chunks for every row but `{base}`'s (its older chunker cut the same files "
        f"into {f['rows'][base]['tokens']:,} tokens), {f['rounds']} rounds interleaved, medians. "
        f"`{base}` is deepkb before this work (issue 26), run from an exported copy of that commit.",
        "",
        "| | seconds | tokens/s | × raw (range) | × before (range) | engine idle | share of fp32 peak |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in f["rows"].items():
        label = {"raw": "raw: OpenVINO f32, called directly", base: f"deepkb before ({f['base']}, f32)"}.get(name, name)
        lines.append(
            f"| {label} | {r['seconds']:.1f} | {r['tokens_per_s']:,} | {r['x_raw']:.2f} ({r['x_raw_range'][0]:.2f}–"
            f"{r['x_raw_range'][1]:.2f}) | {r['x_base']:.2f} ({r['x_base_range'][0]:.2f}–{r['x_base_range'][1]:.2f}) "
            f"| {r['engine_idle']:.1%} | {r['peak_share']:.0%} |"
        )
    lines += [
        "",
        "× raw, × before: the median over rounds of (this row's tokens/s / theirs) in the same round. Engine "
        "idle: the share of the ingest's wall time outside the embed calls (reading, parsing, chunking, SQLite, HNSW "
        f"and waiting for them). Share of the fp32 peak: tokens/s × {MFLOP_PER_TOKEN:.0f} MFLOP per token over "
        f"{f['peak_how']}. 1-minute load average during the run: {min(f['load_1min'])}–{max(f['load_1min'])} on 2 "
        "CPUs shared with other work, so read the same-round ratios rather than the seconds.",
        "",
        f"Measured {f['when'][:10]}. Reproduce: `.venv/bin/python bench/ingest_speed.py`.",
        "",
    ]
    return lines


def main() -> None:
    from figures import publish

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", default=",".join(DEFAULT_FILES))
    parser.add_argument("--base", default=BASE)
    parser.add_argument("--precisions", default="f32,bf16")
    args = parser.parse_args()
    figures = run(args.rounds, tuple(args.files.split(",")), args.base, tuple(args.precisions.split(",")))
    publish(figures, OUT, markdown, REPO)


if __name__ == "__main__":
    main()
