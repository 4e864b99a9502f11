"""What every command shares: the --kb option, opening the KB, paths shown the short way, the consoles."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from deepkb.display import display_path, location  # noqa: F401  (re-exported for the commands)

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


def require_kb(ctx: click.Context, *others: str) -> Path:
    """The KB home named by --kb / DEEPKB_HOME, which must hold a knowledge base (or one of the `others` files): a
    read-only command on a mistyped path says so instead of creating an empty one there (only ingest, watch and
    restore create one)."""
    from deepkb.errors import NoKnowledgeBaseError
    from deepkb.paths import given_home
    from deepkb.storage.catalog import DB_FILE

    home = given_home(ctx.ensure_object(dict).get("kb")).absolute()
    if not any((home / name).is_file() for name in (DB_FILE, *others)):
        raise NoKnowledgeBaseError(
            f"no knowledge base at {home}; check --kb / DEEPKB_HOME, or create one with `deepkb ingest PATH`."
        )
    return home


def open_kb(ctx: click.Context, create: bool = False, **overrides: object) -> KnowledgeBase:
    """Open the KB named by --kb / DEEPKB_HOME, with CLI flags as the highest-precedence settings.

    Only the commands that fill a knowledge base (ingest, watch) pass create=True; the others refuse an empty path."""
    from deepkb.kb import KnowledgeBase

    if not create:
        require_kb(ctx)
    obj = ctx.ensure_object(dict)
    kb = KnowledgeBase.open(obj.get("kb"), **obj.get("settings", {}), **overrides)
    ctx.call_on_close(kb.close)
    return kb


def also_in(places: tuple[Place, ...]) -> str:
    """A hit's twins on one line: `also in git-mv.html L40-52 · copy/notes.md L3-9`."""
    return "also in " + " · ".join(
        f"{display_path(p.path)} {location(p.page, p.line_start, p.line_end)}".rstrip() for p in places
    )


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
