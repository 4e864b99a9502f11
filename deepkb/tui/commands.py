"""Slash commands and key help for `deepkb chat`: parsing and the /help text (no Textual import)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace

from deepkb.errors import UsageError
from deepkb.scope import Scope, make_scope, parse_types

# name -> (argument hint, what it does); the order is the order /help lists them in.
SLASH_COMMANDS: dict[str, tuple[str, str]] = {
    "help": ("", "show the commands and keys"),
    "new": ("", "start a new conversation (the current one stays in the history)"),
    "clear": ("", "clear the screen; the conversation and its context stay"),
    "sources": ("", "show or hide the sources pane"),
    "k": ("N", "retrieve N passages per question"),
    "model": ("", "show the answer model, where it runs and how to change it"),
    "think": ("on|off", "let the model reason before answering, or answer at once"),
    "history": ("", "resume, rename or delete a saved conversation"),
    "export": ("[FILE]", "save this conversation as Markdown with its citations"),
    "copy": ("[code|N]", "copy the last answer, its last code block, or citation N"),
    "source": ("N", "read source N of the last answer"),
    "in": ("[PATH …]", "ask only about documents in these folders or files (no PATH: everywhere)"),
    "type": ("[pdf,md,…]", "ask only about these kinds of file (no argument: every kind)"),
}

# key, what it does: listed in /help (the footer shows the same bindings).
KEYS: list[tuple[str, str]] = [
    ("enter", "ask the question (or run a /command)"),
    ("up / down", "earlier questions"),
    ("esc", "stop the answer (the partial answer stays, marked stopped)"),
    ("tab", "move between the input and the sources pane"),
    ("enter / click on a source", "read the whole passage with its location"),
    ("e (sources pane, source view)", "open the file at that line in $EDITOR, a PDF at its page"),
    ("c (sources pane, source view)", "copy the citation"),
    ("ctrl+b", "show or hide the sources pane"),
    ("ctrl+r", "expand or collapse the reasoning of the last answer"),
    ("ctrl+t", "think on / off for the next question"),
    ("ctrl+y", "copy the last answer"),
    ("ctrl+n", "new conversation"),
    ("ctrl+o", "conversation history"),
    ("ctrl+p", "command palette"),
    ("f1", "this help"),
    ("ctrl+q / ctrl+c", "quit (asks first while an answer is running)"),
]


@dataclass(frozen=True)
class Slash:
    """A parsed `/command arg`."""

    name: str
    arg: str


class SlashError(ValueError):
    """A /command that does not exist or got a bad argument; the message is for the user."""


def parse_slash(text: str) -> Slash | None:
    """`/k 8` -> Slash("k", "8"); None when the text is a question, not a command."""
    text = text.strip()
    if not text.startswith("/") or text.startswith("//"):
        return None
    name, _, arg = text[1:].partition(" ")
    name = name.lower()
    if name not in SLASH_COMMANDS:
        raise SlashError(f"unknown command /{name}; type /help for the list.")
    return Slash(name, arg.strip())


def parse_k(arg: str) -> int:
    """The N of `/k N`: 1 to 50 passages."""
    try:
        k = int(arg)
    except ValueError:
        raise SlashError("/k needs a number of passages, e.g. /k 8.") from None
    if not 1 <= k <= 50:
        raise SlashError("/k takes 1 to 50 passages.")
    return k


def parse_on_off(arg: str, current: bool) -> bool:
    """`on`/`off`; no argument flips the current value."""
    value = arg.lower()
    if not value:
        return not current
    if value in ("on", "yes", "1", "true"):
        return True
    if value in ("off", "no", "0", "false"):
        return False
    raise SlashError("/think takes on or off.")


def parse_scope(name: str, arg: str, current: Scope | None) -> Scope | None:
    """`/in PATH …` or `/type pdf,md` applied to the current scope; an empty argument clears that half."""
    scope = current or Scope()
    try:
        if name == "in":
            paths = shlex.split(arg)
            scope = replace(scope, paths=make_scope(paths, must_exist=True).paths)
        else:
            scope = replace(scope, types=parse_types(arg))
    except (UsageError, ValueError) as exc:
        raise SlashError(str(exc).replace("--in", "/in").replace("--type", "/type")) from None
    return scope or None


def help_markdown() -> str:
    """The /help text: commands, then keys."""
    lines = ["## Commands", "", "| command | what it does |", "|---|---|"]
    for name, (hint, what) in SLASH_COMMANDS.items():
        command = f"/{name}{' ' + hint if hint else ''}".replace("|", "\\|")  # a | in a table cell splits it
        lines.append(f"| `{command}` | {what} |")
    lines += ["", "## Keys", "", "| key | what it does |", "|---|---|"]
    lines += [f"| {key} | {what} |" for key, what in KEYS]
    lines += ["", "Citation markers such as [1] in an answer are links: click one to read its source."]
    return "\n".join(lines)
