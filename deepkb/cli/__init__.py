"""The `deepkb` command: a thin shell over deepkb.kb.KnowledgeBase; every error becomes one plain line."""

from __future__ import annotations

import os
import sqlite3
import sys
import warnings

import click
from rich.markup import escape

from deepkb import __version__
from deepkb.cli._common import _store_kb, err_console
from deepkb.errors import DeepKBError


class _Group(click.Group):
    """Turns domain errors into one sentence on stderr and the error's exit code, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DeepKBError as exc:
            _fail(exc)
        except (sqlite3.Error, OSError) as exc:  # a storage failure outside the KnowledgeBase's own guards
            from deepkb.paths import given_home
            from deepkb.storage.errors import explain

            error = explain(exc, given_home(ctx.ensure_object(dict).get("kb")).absolute())
            if error is None:
                raise
            _fail(error)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)


def _fail(exc: DeepKBError) -> None:
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)  # "[server]" is no markup
    sys.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--kb",
    type=click.Path(file_okay=False),
    expose_value=False,
    callback=_store_kb,
    help="Knowledge-base folder (default: $DEEPKB_HOME, else the platform data dir).",
)
@click.version_option(__version__, prog_name="deepkb")
def main() -> None:
    """deepkb: ask questions about your own documents, answered locally with citations.

    \b
    Example:
        deepkb ingest ~/notes ~/papers
        deepkb search "how do I rotate the keys" -k 5
    """
    if not os.environ.get("DEEPKB_DEBUG"):
        # The libraries' own warnings (deprecations, tracer notes) are for their developers, not deepkb's users.
        warnings.simplefilter("ignore")
    from deepkb.embedders import quiet_third_party

    quiet_third_party()


def _register() -> None:
    """Each command module is imported here; heavy libraries load inside the commands, not at import."""
    from deepkb.cli import kb as kb_commands
    from deepkb.cli.ask import ask
    from deepkb.cli.backup import backup, restore
    from deepkb.cli.chat import chat
    from deepkb.cli.chats import chats
    from deepkb.cli.doctor import doctor
    from deepkb.cli.mcp import mcp
    from deepkb.cli.models import models
    from deepkb.cli.serve import serve
    from deepkb.cli.watch import watch

    for command in (kb_commands.ingest, kb_commands.search, kb_commands.status, kb_commands.remove,
                    kb_commands.reindex, watch, ask, chat, chats, models, serve):  # fmt: skip
        main.add_command(command)
    for command in (backup, restore, doctor, mcp):
        main.add_command(command)


_register()
