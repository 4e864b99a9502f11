"""`deepkb chats`: list, show, rename and delete saved conversations (deepkb.conversation.store)."""

from __future__ import annotations

import json
import time

import click

from deepkb.cli._common import console, display_path, kb_option, location, require_kb


def _store(ctx: click.Context):
    from deepkb.conversation.store import ConversationStore
    from deepkb.paths import CONVERSATIONS_FILE

    return ConversationStore(require_kb(ctx, CONVERSATIONS_FILE).resolve())


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@kb_option
@click.pass_context
def chats(ctx: click.Context, as_json: bool) -> None:
    """List saved conversations, the most recent first: id, turns, last answer, title.

    Every `deepkb ask` is saved; continue one with `deepkb ask -c` (the last) or `deepkb ask --chat ID`.

    \b
    Example:
        deepkb chats
        deepkb chats show 3f2a
        deepkb chats rm 3f2a
    """
    if ctx.invoked_subcommand is not None:
        return
    listed = _store(ctx).list()
    if as_json:
        click.echo(json.dumps([c.to_json() for c in listed], ensure_ascii=False))
        return
    if not listed:
        console.print("No saved conversations yet; `deepkb ask QUESTION` starts one.")
        return
    for c in listed:
        turns = f"{c.turns} turn{'s' if c.turns != 1 else ''}"
        console.print(f"[bold cyan]{c.id[:8]}[/]  {_when(c.updated)}  {turns:>8}  ", end="")
        console.print(c.title, markup=False, soft_wrap=True)


@chats.command()
@click.argument("conversation_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the conversation as one JSON object.")
@click.option("--markdown", "as_markdown", is_flag=True, help="Print the conversation as Markdown.")
@kb_option
@click.pass_context
def show(ctx: click.Context, conversation_id: str, as_json: bool, as_markdown: bool) -> None:
    """Show a saved conversation: each question, its answer and the sources it cited then.

    ID may be any unique start of the id that `deepkb chats` lists.

    \b
    Example:
        deepkb chats show 3f2a
        deepkb chats show 3f2a --json
    """
    store = _store(ctx)
    if as_markdown:
        click.echo(store.export_markdown(conversation_id))
        return
    conversation = store.get(conversation_id)
    if as_json:
        click.echo(json.dumps(conversation.to_json(), ensure_ascii=False))
        return
    console.print(f"[bold]{conversation.title}[/]  [dim]{conversation.id} · {_when(conversation.created)}[/]")
    for n, turn in enumerate(conversation.turns, 1):
        console.print(f"\n{n}. {turn.question}", soft_wrap=True, markup=False, style="bold")
        console.print(turn.answer, markup=False, soft_wrap=True)
        if turn.cancelled:
            console.print("[dim](cancelled)[/]")
        for c in turn.citations:
            h = c.hit
            where = location(h.page, h.line_start, h.line_end)
            console.print(f"[bold cyan][{c.n}][/] {display_path(h.path)} {where}", soft_wrap=True)
        if turn.model:
            console.print(f"[dim]{turn.model}[/]")


@chats.command()
@click.argument("conversation_id", metavar="ID")
@kb_option
@click.pass_context
def rm(ctx: click.Context, conversation_id: str) -> None:
    """Delete a saved conversation and all its turns.

    \b
    Example:
        deepkb chats rm 3f2a
    """
    full = _store(ctx).delete(conversation_id)
    console.print(f"Deleted conversation {full}.")


@chats.command()
@click.argument("conversation_id", metavar="ID")
@click.argument("title")
@kb_option
@click.pass_context
def rename(ctx: click.Context, conversation_id: str, title: str) -> None:
    """Give a saved conversation another title.

    \b
    Example:
        deepkb chats rename 3f2a "Backups and restores"
    """
    _store(ctx).rename(conversation_id, title)
