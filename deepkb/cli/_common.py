"""What every command shares: the --kb option, opening the KB, paths shown the short way, the consoles."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.console import Console

from deepkb.retrieval.search import display_path, location  # noqa: F401  (re-exported for the commands)

if TYPE_CHECKING:
    from deepkb.kb import KnowledgeBase
    from deepkb.retrieval.search import Place

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


def also_in(places: tuple[Place, ...]) -> str:
    """A hit's twins on one line: `also in git-mv.html L40-52 · copy/notes.md L3-9`."""
    return "also in " + " · ".join(
        f"{display_path(p.path)} {location(p.page, p.line_start, p.line_end)}".rstrip() for p in places
    )
