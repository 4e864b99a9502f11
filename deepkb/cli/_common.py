"""What every command shares: the --kb option, opening the KB, paths shown the short way, the consoles."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.console import Console

from deepkb.retrieval.search import display_path, location  # noqa: F401  (re-exported for the commands)

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


def scope_options(func):
    """`--in PATH` (repeatable) and `--type pdf,md`: limit a search, an answer or a chat to part of the KB."""
    func = click.option(
        "--type",
        "types",
        metavar="TYPES",
        help="Only these kinds of file, comma-separated: pdf, md, txt, html, docx, odt, epub, email, man, or an "
        "extension such as py.",
    )(func)
    return click.option(
        "--in",
        "in_paths",
        multiple=True,
        type=click.Path(),
        metavar="PATH",
        help="Only documents in this folder or this file (repeatable).",
    )(func)


def scope_from(in_paths: tuple[str, ...], types: str | None):
    """The Scope the --in and --type options name (None when neither was given)."""
    from deepkb.scope import make_scope

    scope = make_scope(in_paths, types)
    return scope or None
