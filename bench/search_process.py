"""Benchmark: `deepkb search` as a whole process on the demo knowledge base, against a process that only imports
deepkb's embedding engine and encodes one query (raw = OpenVINO + tokenizers called directly, the same IR).

What a user waits for is the whole process: interpreter start, imports, model load, then the search itself. Both
processes are timed from outside (wall clock, fork to exit), alternating, ROUNDS times; each also reports from
inside where its time went (import, model load, search or encode), so the ratio can be read part by part.

    .venv/bin/python bench/search_process.py [--quick]

The demo knowledge base (data/, as `make demo` builds it) is kept in bench/cache/. Writes bench/out/search_process.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

OUT = REPO / "bench" / "out" / "search_process.json"
KB = REPO / "bench" / "cache" / "demo-kb"
QUERY = "hotel London"
ROUNDS, QUICK_ROUNDS = 10, 4

# deepkb's own path through `deepkb search`, split by stage (the CLI does the same calls)
DEEPKB_SPLIT = r"""
import json, sys, time
t0 = time.perf_counter()
from deepkb.cli import main  # the command's own imports
from deepkb.kb import KnowledgeBase
t1 = time.perf_counter()
kb = KnowledgeBase.open(sys.argv[1])
kb.embedder, kb.index
t2 = time.perf_counter()
hits = kb.search(sys.argv[2], k=5)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "work": t3 - t2, "backend": kb.embedder.backend}))
"""

# the raw engine: what a program that only wants one query vector does
RAW = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import openvino as ov
from tokenizers import Tokenizer
t1 = time.perf_counter()
folder = sys.argv[1]
tok = Tokenizer.from_file(folder + "/tokenizer.json")
req = ov.Core().compile_model(folder + "/model.xml", "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
t2 = time.perf_counter()
enc = tok.encode(sys.argv[2])
ids = np.array([enc.ids], dtype=np.int64)
mask = np.array([enc.attention_mask], dtype=np.int64)
hidden = next(iter(req.infer({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}).values()))
vector = (hidden * mask[..., None]).sum(axis=1) / mask.sum()
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "work": t3 - t2}))
"""


def _ensure_kb() -> None:
    if not (KB / "kb.sqlite").exists():
        subprocess.run([sys.executable, "-m", "deepkb", "--kb", str(KB), "ingest", str(REPO / "data")], check=True,
                       capture_output=True, cwd=REPO)  # fmt: skip


def _wall(cmd: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=True)
    return time.perf_counter() - started, done.stdout


def run(quick: bool = False) -> dict:
    """Whole-process times of deepkb search and of the raw engine process, alternating, measured now."""
    from deepkb.embedders import create_embedder

    _ensure_kb()
    ir = str(create_embedder("all-MiniLM-L6-v2", "openvino").folder)
    commands = {
        "deepkb": [sys.executable, "-m", "deepkb", "--kb", str(KB), "search", QUERY, "-k", "5"],
        "deepkb_split": [sys.executable, "-c", DEEPKB_SPLIT, str(KB), QUERY],
        "raw": [sys.executable, "-c", RAW, ir, QUERY],
    }
    for cmd in commands.values():  # warm the page cache once
        _wall(cmd)
    samples: dict[str, list] = {name: [] for name in commands}
    loads = [round(os.getloadavg()[0], 2)]
    rounds = QUICK_ROUNDS if quick else ROUNDS
    for r in range(rounds):
        names = list(commands)
        for name in names[r % 3 :] + names[: r % 3]:
            wall, out = _wall(commands[name])
            inside = json.loads(out) if name != "deepkb" else {}
            samples[name].append({"wall": wall, **inside})
        loads.append(round(os.getloadavg()[0], 2))

    def med(name: str, key: str) -> float:
        return round(statistics.median(s[key] for s in samples[name]), 3)

    split = {
        name: {key: med(name, key) for key in ("wall", "import", "load", "work")} for name in ("deepkb_split", "raw")
    }
    return {
        "when": time.strftime("%Y-%m-%d %H:%M"), "rounds": rounds, "query": QUERY, "load_1min": loads,
        "deepkb_wall_s": med("deepkb", "wall"), "raw_wall_s": med("raw", "wall"),
        "ratio": round(med("deepkb", "wall") / med("raw", "wall"), 3), "split": split,
        "backend": samples["deepkb_split"][0]["backend"],
    }  # fmt: skip


def markdown(f: dict) -> list[str]:
    d, r = f["split"]["deepkb_split"], f["split"]["raw"]
    return [
        "## `deepkb search` as a whole process (raw = a process that imports OpenVINO + tokenizers, loads the same "
        "IR and encodes one query)",
        "",
        f'Demo knowledge base (data/), query "{f["query"]}", {f["rounds"]} rounds alternating, medians, wall clock '
        f"from fork to exit. deepkb's engine: {f['backend']}.",
        "",
        "| process | whole process s | import s | model load s | search / encode s |",
        "| --- | --- | --- | --- | --- |",
        f"| `deepkb search` (the CLI) | {f['deepkb_wall_s']} | | | |",
        f"| deepkb's path, timed inside | {d['wall']} | {d['import']} | {d['load']} | {d['work']} |",
        f"| raw engine process | {f['raw_wall_s']} | {r['import']} | {r['load']} | {r['work']} |",
        "",
        f"Ratio `deepkb search` / raw engine process: **{f['ratio']}**. Interpreter start (~the rest of each whole-process "
        f"time) is common to both. deepkb compiles its one-thread query model at the first query (ingest compiles "
        f"another, for all cores), so its compile time is in the search column, the raw process's in model load. 1-minute load average {min(f['load_1min'])}–{max(f['load_1min'])}.",
        "",
        "Reproduce: `.venv/bin/python bench/search_process.py`",
    ]


def main() -> None:
    from figures import publish

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds instead of {ROUNDS}")
    args = parser.parse_args()
    publish(run(quick=args.quick), OUT, markdown, REPO)


if __name__ == "__main__":
    main()
