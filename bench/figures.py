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
