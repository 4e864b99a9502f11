"""Benchmark: how fast the new formats are read (Word, OpenDocument, EPUB, e-mail, man pages) and OCR'd.

On the real documents of tests/data/formats (see its LICENSE.md): each file loaded by deepkb's loader until a
second has passed (median wall and CPU time per load: CPU time is what a shared machine's load disturbs least), then the whole folder ingested into a fresh knowledge base with the real
embedding model (the stage times say what the loaders cost beside embedding), then OCR: the scanned FHS page
OCR'd with an empty OCR cache, three times (pages per second), and once more from the cache.

    .venv/bin/python bench/formats_ingest.py [--out bench/out/formats_ingest.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from deepkb.kb import KnowledgeBase  # noqa: E402
from deepkb.loaders import load  # noqa: E402
from deepkb.loaders.ocr import tesseract  # noqa: E402

FIXTURES = REPO / "tests" / "data" / "formats"
FILES = ["copyright-format.docx", "copyright-format.odt", "copyright-format.epub", "ls.1.gz", "gzip.1.gz",
         "access.conf.5", "git-howto.mbox", "ppp-digest.eml"]  # fmt: skip


def time_load(path: Path) -> dict:
    data = path.read_bytes()
    times, cpu = [], []
    started = time.perf_counter()
    while time.perf_counter() - started < 1.0 or len(times) < 3:
        t, c = time.perf_counter(), time.process_time()
        doc = load(path, data)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    ms, cpu_ms = statistics.median(times) * 1000, statistics.median(cpu) * 1000
    return {"bytes": len(data), "units": len(doc.units), "ms_per_file": round(ms, 2), "cpu_ms": round(cpu_ms, 2),
            "mb_per_s_cpu": round(len(data) / 1e6 / (max(cpu_ms, 0.01) / 1000), 2)}  # fmt: skip


def _cpu_with_children() -> float:
    """CPU seconds of this process and its finished children (tesseract runs as one)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _ingest(docs: Path, tmp: Path, figures: dict) -> None:
    shutil.copytree(FIXTURES, docs, ignore=shutil.ignore_patterns("*.py", "*.md", "scanned-*.pdf"))
    with KnowledgeBase.open(tmp / "kb") as kb:
        kb.embedder.embed(["warm up"])  # the model loaded before the clock starts
        t = time.perf_counter()
        report = kb.ingest([docs])
        wall = time.perf_counter() - t
    chunks = report.chunks_embedded + report.chunks_reused
    figures["ingest"] = {"files": report.added, "chunks": chunks, "seconds": round(wall, 2),
                         "chunks_per_s": round(chunks / wall, 1), "stages": report.stage_seconds}  # fmt: skip
    print("ingest", figures["ingest"], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-ingest", action="store_true", help="loaders and OCR only")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "formats_ingest.json")
    args = parser.parse_args()
    figures: dict = {"load_before": os.getloadavg(), "loaders": {}}
    for name in FILES:
        figures["loaders"][name] = time_load(FIXTURES / name)
        print(name, figures["loaders"][name], flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_ingest:
            _ingest(Path(tmp) / "docs", Path(tmp), figures)
        if tesseract():
            scan = FIXTURES / "scanned-fhs.pdf"
            data = scan.read_bytes()
            cold, cold_cpu = [], []
            for i in range(3):
                os.environ["DEEPKB_CACHE"] = str(Path(tmp) / f"cache{i}")
                t, c = time.perf_counter(), _cpu_with_children()
                doc = load(scan, data)
                cold.append(time.perf_counter() - t)
                cold_cpu.append(_cpu_with_children() - c)
            t = time.perf_counter()
            load(scan, data)
            warm = time.perf_counter() - t
            per_page = statistics.median(cold) / len(doc.ocr_pages)
            figures["ocr"] = {"pages_ocr_d": len(doc.ocr_pages), "s_per_page": round(per_page, 2),
                              "pages_per_s": round(1 / per_page, 3), "cached_s": round(warm, 3),
                              "cpu_s_per_page": round(statistics.median(cold_cpu) / len(doc.ocr_pages), 2),
                              "tesseract": tesseract()}  # fmt: skip
            print("ocr", figures["ocr"], flush=True)
    figures["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
