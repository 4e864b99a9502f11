"""What every standalone bench does with its figures: keep them as JSON and print its BENCHMARKS.md section."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def publish(figures: dict, out: Path, markdown: Callable[[dict], list[str]], repo: Path) -> None:
    """Write bench/out/<name>.json and print the markdown section made from it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print("\n".join(markdown(figures)))
    print(f"wrote {out.relative_to(repo)}")


def sentence_transformer(name: str = "all-MiniLM-L6-v2"):
    """The raw engine the issue names: sentence-transformers' own model object, from the checked files deepkb uses
    (deepkb itself may run them through OpenVINO: see deepkb.embedder.pick_backend)."""
    from sentence_transformers import SentenceTransformer

    from deepkb.embedder import resolve_model

    return SentenceTransformer(str(resolve_model(name)[0]), local_files_only=True)
