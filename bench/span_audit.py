"""Evidence audit over whole folders of real documents: does every chunk stand exactly on the lines it cites?

    .venv/bin/python bench/span_audit.py /usr/share/doc [MORE_FOLDERS ...]

Loads and chunks every file deepkb reads by its name (HTML, reST, Markdown, text, PDF; `.gz` files decompressed into a
temporary folder, since the check reads the file itself), as `deepkb ingest` would at the default chunk size, and
checks each chunk with tests/spancheck.py (the check the tests run on their fixtures): its text starts on its span's
first line, ends on its last, and every line of it stands, in order, on the lines between (on the page it cites).
Prints the counts per kind and the first violations; writes bench/out/span_audit.json. No model is loaded but the
embedder's tokenizer. Measured figures: BENCHMARKS.md, "Evidence audit".
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

KINDS = (".rst.txt", ".html", ".htm", ".txt", ".md", ".pdf")
OUT = REPO / "bench" / "out" / "span_audit.json"


def files(roots: list[Path], scratch: Path):
    """(kind, path to check) for every file of a kind deepkb reads; a .gz one decompressed into `scratch`."""
    for root in roots:
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            name = path.name.lower()
            if name.endswith(".gz"):
                if path.stat().st_size > 5_000_000:
                    continue
                name = name[:-3]
                if not name.endswith(KINDS):
                    continue
                out = scratch / str(path.parent).strip("/").replace("/", "_") / path.name[:-3]
                out.parent.mkdir(parents=True, exist_ok=True)
                try:
                    out.write_bytes(gzip.decompress(path.read_bytes()))
                except (OSError, EOFError):
                    continue
                path = out
            kind = next((k for k in KINDS if name.endswith(k)), None)
            if kind is not None and path.stat().st_size <= 20_000_000:
                yield kind, path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--show", type=int, default=15, help="violations to print per kind")
    args = parser.parse_args()

    from spancheck import violation

    from deepkb.config import Settings
    from deepkb.embedders import create_embedder
    from deepkb.ingest.chunker import chunk_units
    from deepkb.loaders import load

    settings = Settings()
    embedder = create_embedder(settings.embedding_model, batch_size=settings.embed_batch_size)
    counts: collections.Counter = collections.Counter()
    bad: dict[str, list[str]] = collections.defaultdict(list)
    failed: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for kind, path in files(args.folders, Path(scratch)):
            try:
                doc = load(path, path.read_bytes())
                chunks = chunk_units(
                    doc.units,
                    embedder.count_tokens,
                    embedder.max_tokens,
                    settings.chunk_tokens,
                    settings.overlap_tokens,
                )
            except Exception as exc:  # a file deepkb skips (no text, not a PDF): counted, not checked
                failed.append(f"{path}: {exc}")
                continue
            counts[f"{kind} files"] += 1
            for chunk in chunks:
                counts[f"{kind} chunks"] += 1
                why = violation(str(path), chunk.page, chunk.line_start, chunk.line_end, chunk.text)
                if why:
                    bad[kind].append(f"{path} p.{chunk.page} L{chunk.line_start}-{chunk.line_end}: {why[:160]}")
    chunks = sum(n for key, n in counts.items() if key.endswith("chunks"))
    violations = sum(len(v) for v in bad.values())
    print(f"{chunks} chunks of {sum(n for k, n in counts.items() if k.endswith('files'))} files in "
          f"{time.perf_counter() - started:.0f} s: {violations} off their spans; {len(failed)} files skipped")  # fmt: skip
    print(dict(counts))
    for kind, lines in bad.items():
        print(f"{kind}: {len(lines)}", *lines[: args.show], sep="\n  ")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"folders": [str(f) for f in args.folders], "counts": counts, "chunks": chunks,
                               "violations": bad, "skipped": failed}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
