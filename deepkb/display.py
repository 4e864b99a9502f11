"""How deepkb writes a passage and its place for people: one line of text, a path as the user knows it, `p.4 L3-10`.
Shared by every shell and by the answer's passages-only fallback; it knows nothing of retrieval."""

from __future__ import annotations

import os
from pathlib import Path


def snippet(text: str, limit: int = 300) -> str:
    """A chunk's text on one line, cut at a word boundary after at most `limit` characters: how hits are shown."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] if " " in flat[:limit] else flat[:limit]
    return cut + " …"


def display_path(path: str) -> str:
    """A path as the user knows it: relative to the working directory when below it, else with ~ for home."""
    p = Path(path)
    if p.is_relative_to(Path.cwd()):
        return os.path.relpath(p)
    home = Path.home()
    return "~/" + p.relative_to(home).as_posix() if home != Path("/") and p.is_relative_to(home) else str(p)


def location(page: int | None, line_start: int | None, line_end: int | None) -> str:
    """`p.4 L3-10`, `L12-30` or `L7`: the way deepkb writes a place in a document."""
    parts = [f"p.{page}"] if page is not None else []
    if line_start is not None:
        parts.append(f"L{line_start}" if line_end in (None, line_start) else f"L{line_start}-{line_end}")
    return " ".join(parts)
