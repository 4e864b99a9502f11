"""What every command shares: the --kb option, opening the KB, paths shown the short way, the consoles."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

if TYPE_CHECKING:
    from deepkb.kb import KnowledgeBase

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def _store_kb(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        ctx.ensure_object(dict)["kb"] = value
    return value


def kb_option(func):
    """`--kb DIR` on a command as well as on the group, so it can be given after the command name too."""
    return click.option(
        "--kb",
        type=click.Path(file_okay=False),
        expose_value=False,
        callback=_store_kb,
        is_eager=True,
        help="Knowledge-base folder (default: $DEEPKB_HOME, else the platform data dir).",
    )(func)


def open_kb(ctx: click.Context, **overrides: object) -> KnowledgeBase:
    """Open the KB named by --kb / DEEPKB_HOME, with CLI flags as the highest-precedence settings."""
    from deepkb.kb import KnowledgeBase

    obj = ctx.ensure_object(dict)
    kb = KnowledgeBase.open(obj.get("kb"), **obj.get("settings", {}), **overrides)
    ctx.call_on_close(kb.close)
    return kb


def display_path(path: str) -> str:
    """A path relative to the current folder when it lies below it, else with ~ for the home folder."""
    try:
        return os.path.relpath(path) if Path(path).is_relative_to(Path.cwd()) else _tilde(path)
    except ValueError:
        return path


def _tilde(path: str) -> str:
    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home + os.sep) else path


def location(page: int | None, line_start: int | None, line_end: int | None) -> str:
    """`p.4 L3-10`, `L12-30` or `L7`: the way deepkb writes a place in a document."""
    parts = []
    if page is not None:
        parts.append(f"p.{page}")
    if line_start is not None:
        parts.append(f"L{line_start}" if line_end in (None, line_start) else f"L{line_start}-{line_end}")
    return " ".join(parts)
