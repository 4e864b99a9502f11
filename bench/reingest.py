"""Benchmark: `deepkb ingest` again over 10,000 small files, unchanged and after touching, renaming and editing.

The goal: an unchanged re-ingest embeds nothing and takes at most 5 s, also as a fresh `deepkb` process. Then:
every file touched (mtime changed, content the same: nothing embedded), a folder of 1,000 files renamed (recorded
as renames, nothing embedded), 10 files edited (only their chunks embedded), each followed by one ingest.

    .venv/bin/python bench/reingest.py [--quick]

The corpus (Markdown and text files of a few sentences in 10 folders of 10 subfolders, generated deterministically;
--quick: 2,000 files) and the knowledge base built from it once are cached under bench/cache/ (git-ignored), keyed
by VERSION. Each run works on a copy of that knowledge base, and puts the corpus back as it found it.
Writes bench/out/reingest.json.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from deepkb.kb import KnowledgeBase  # noqa: E402

VERSION = "v1"  # bump when the generated corpus changes: the cached corpus and knowledge base are rebuilt
CACHE = REPO / "bench" / "cache"
OUT = REPO / "bench" / "out" / "reingest.json"
GOAL_S = 5.0
FILES, QUICK_FILES = 10_000, 2_000
PER_FOLDER = 100  # files per subfolder; 10 subfolders per top folder, so a top folder holds 1,000 files
ROUNDS = 3
EDITED = 10
WORDS = """harbour tide survey vessel engine crew anchor chart beacon signal storm current reef coast pilot cargo
ledger audit policy backup rotation credential archive retention schedule incident review deploy cluster
node latency replica shard quorum ticket escalation runbook threshold alert dashboard metric budget forecast
glacier sediment fjord estuary delta basin ridge plateau canyon meadow orchard vineyard granary""".split()


# the corpus ---------------------------------------------------------------------------------------------------
def corpus_files(n: int) -> dict[str, str]:
    """Relative path -> text of the n generated files: a few unique sentences each, Markdown or plain text."""
    rng = random.Random(20240917)
    files: dict[str, str] = {}
    for i in range(n):
        sentences = [
            " ".join(rng.choices(WORDS, k=rng.randint(8, 14))).capitalize() + "." for _ in range(rng.randint(3, 5))
        ]
        folder = f"f{i // (PER_FOLDER * 10):02d}/s{i // PER_FOLDER % 10:02d}"
        if i % 2:
            text = f"Note {i}\n\n{' '.join(sentences)}\n"
            files[f"{folder}/note-{i:05d}.txt"] = text
        else:
            text = f"# Note {i}: {rng.choice(WORDS)}\n\n{' '.join(sentences)}\n"
            files[f"{folder}/note-{i:05d}.md"] = text
    return files


def ensure_corpus(root: Path, files: dict[str, str]) -> None:
    """Write what is missing or different, remove what is extra (a folder left renamed by an interrupted run)."""
    wanted_tops = {rel.split("/")[0] for rel in files}
    if root.exists():
        for entry in root.iterdir():
            if entry.name not in wanted_tops:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for rel, text in files.items():
        path = root / rel
        data = text.encode()
        try:
            if path.read_bytes() == data:
                continue
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


# measuring ----------------------------------------------------------------------------------------------------
def _timed_ingest(kb: KnowledgeBase, corpus: Path) -> dict:
    before = kb.embedder.texts_embedded
    t0 = time.perf_counter()
    report = kb.ingest([corpus])
    seconds = time.perf_counter() - t0
    return {
        "seconds": round(seconds, 3),
        "chunks_embedded": report.chunks_embedded,
        "texts_embedded": kb.embedder.texts_embedded - before,  # counted by the embedder itself
        "unchanged": report.unchanged,
        "updated": report.updated,
        "renamed": report.renamed,
        "added": report.added,
        "removed": report.removed,
        "updated_chunks": sum(c.chunks for c in report.changes if c.action == "updated"),
        "stage_seconds": report.stage_seconds,
    }


def _cli_ingest(kb_dir: Path, corpus: Path) -> dict:
    """`deepkb --kb DIR ingest FOLDER --json` as a fresh process: interpreter start and imports included."""
    import json

    script = Path(sys.executable).parent / "deepkb"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "deepkb"]
    t0 = time.perf_counter()
    done = subprocess.run([*cmd, "--kb", str(kb_dir), "ingest", str(corpus), "--json"], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"deepkb ingest failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    return {
        "seconds": round(seconds, 3),
        "sync_seconds": report["seconds"],
        "chunks_embedded": report["chunks_embedded"],
        "unchanged": report["unchanged"],
    }


def _summary(samples: list[dict]) -> dict:
    """Median seconds, the most chunks any sample embedded, and the samples themselves."""
    out = {
        "seconds": round(statistics.median(s["seconds"] for s in samples), 3),
        "chunks_embedded": max(s["chunks_embedded"] for s in samples),
        "samples": samples,
    }
    if "sync_seconds" in samples[0]:
        out["sync_seconds"] = round(statistics.median(s["sync_seconds"] for s in samples), 3)
    return out


def build_cached_kb(kb_dir: Path, corpus: Path) -> dict:
    """The knowledge base of the pristine corpus, built once per VERSION; returns how the first build went."""
    import json

    marker = kb_dir / "built.json"
    if marker.exists():
        return {**json.loads(marker.read_text()), "cached": True}
    shutil.rmtree(kb_dir, ignore_errors=True)
    print(f"first ingest of {corpus} (cached for later runs)…", flush=True)
    load = os.getloadavg()[0]
    with KnowledgeBase.open(kb_dir) as kb:
        kb.embedder.embed(["warm up"])
        first = _timed_ingest(kb, corpus)
        chunks = kb.store.counts()["chunks"]
    built = {
        "seconds": first["seconds"],
        "chunks_embedded": first["chunks_embedded"],
        "chunks": chunks,
        "load": round(load, 2),
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    marker.write_text(json.dumps(built))
    return {**built, "cached": False}


def run(quick: bool = False) -> dict:
    """Re-ingest figures for the generated corpus, measured now on a copy of its cached knowledge base."""
    n = QUICK_FILES if quick else FILES
    base = CACHE / f"reingest-{VERSION}-{n}"
    corpus, cached_kb, work_kb = base / "corpus", base / "kb", base / "work-kb"
    files = corpus_files(n)
    print(f"corpus of {n:,} files at {corpus}…", flush=True)
    ensure_corpus(corpus, files)
    figures: dict = {
        "benchmark": "reingest",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "quick": quick,
        "files": n,
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "goal_s": GOAL_S,
    }
    figures["first_ingest"] = build_cached_kb(cached_kb, corpus)
    figures["chunks"] = figures["first_ingest"]["chunks"]

    shutil.rmtree(work_kb, ignore_errors=True)
    shutil.copytree(cached_kb, work_kb, ignore=shutil.ignore_patterns("writer.lock", "built.json"))
    renamed_from, renamed_to = corpus / "f00", corpus / "f00-renamed"
    edited = [corpus / rel for rel in list(files)[:: n // EDITED][:EDITED]]
    try:
        with KnowledgeBase.open(work_kb) as kb:
            kb.embedder.embed(["warm up"])  # the model load is not part of any figure below
            settle = _timed_ingest(kb, corpus)  # a regenerated corpus has new mtimes: recorded here, untimed
            if settle["chunks_embedded"]:
                raise SystemExit(f"the cached knowledge base does not match the corpus: {settle}")

        print("unchanged, fresh `deepkb ingest` process…", flush=True)
        figures["unchanged_cli"] = _summary([_cli_ingest(work_kb, corpus) for _ in range(ROUNDS)])

        with KnowledgeBase.open(work_kb) as kb:
            kb.embedder.embed(["warm up"])
            print("unchanged, in-process…", flush=True)
            figures["unchanged"] = _summary([_timed_ingest(kb, corpus) for _ in range(ROUNDS)])

            print("every file touched…", flush=True)
            samples = []
            for r in range(ROUNDS):
                stamp = time.time_ns() + r * 1_000_000_000
                for rel in files:
                    os.utime(corpus / rel, ns=(stamp, stamp))
                samples.append(_timed_ingest(kb, corpus))
            figures["touched"] = _summary(samples)

            print(f"a folder of {PER_FOLDER * 10:,} files renamed, and back…", flush=True)
            samples = []
            for src, dst in ((renamed_from, renamed_to), (renamed_to, renamed_from)):
                src.rename(dst)
                samples.append(_timed_ingest(kb, corpus))
            figures["renamed"] = {**_summary(samples), "files": samples[0]["renamed"]}

            print(f"{EDITED} files edited, and restored…", flush=True)
            samples = []
            for path in edited:
                path.write_text(path.read_text() + "An edited sentence about the harbour survey ends this note.\n")
            samples.append(_timed_ingest(kb, corpus))
            for path in edited:
                rel = path.relative_to(corpus).as_posix()
                path.write_text(files[rel])
            samples.append(_timed_ingest(kb, corpus))
            figures["edited"] = {**_summary(samples), "files": len(edited)}
    finally:
        if renamed_to.exists() and not renamed_from.exists():
            renamed_to.rename(renamed_from)
        ensure_corpus(corpus, files)
        shutil.rmtree(work_kb, ignore_errors=True)
    figures["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return figures


def markdown(f: dict) -> list[str]:
    """The BENCHMARKS.md section."""
    first = f["first_ingest"]
    row = lambda name, m, files: f"| {name} | {m['seconds']:.2f} | {m['chunks_embedded']} | {files} |"  # noqa: E731
    cli = f["unchanged_cli"]
    return [
        f"## Re-ingest of {f['files']:,} small files",
        "",
        "| after | seconds (median) | chunks embedded | files changed |",
        "| --- | --- | --- | --- |",
        f"| nothing changed: fresh `deepkb ingest --json` process (sync itself: {cli['sync_seconds']:.2f} s) "
        f"| {cli['seconds']:.2f} | {cli['chunks_embedded']} | 0 |",
        row("nothing changed: `KnowledgeBase.ingest` in-process", f["unchanged"], 0),
        row("every file touched (mtime changed, same content)", f["touched"], f["files"]),
        row(f"a folder of {f['renamed']['files']:,} files renamed", f["renamed"], f["renamed"]["files"]),
        row(f"{f['edited']['files']} files edited (a sentence appended)", f["edited"], f["edited"]["files"]),
        "",
        f"Goal: nothing changed, nothing embedded, at most {f['goal_s']:.0f} s. The first ingest of the "
        f"{f['chunks']:,} chunks took {first['seconds']:.0f} s (built {first['when']}, load average "
        f"{first['load']:.1f}, then cached). Medians of {ROUNDS} runs (touched, unchanged) or of the change and its "
        f"undoing (renamed, edited); each edited file is one chunk. Load average {f['load_before'][0]:.1f} at the "
        f"start, {f['load_after'][0]:.1f} at the end.",
        "",
        "Reproduce: `.venv/bin/python bench/reingest.py`",
        "",
    ]


def main() -> None:
    from figures import publish

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_FILES:,} files instead of {FILES:,}")
    args = parser.parse_args()
    publish(run(quick=args.quick), OUT, markdown, REPO)


if __name__ == "__main__":
    main()
