"""`deepkb chat`: the Textual app. It owns the knowledge base, the conversation and the background work.

The screen opens at once; three workers run behind it: the answer model loads, the embedding model and vector
index warm up with a first search, and (with --watch) the watch engine keeps the knowledge base in step.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input

from deepkb.answer.stream import AskOptions
from deepkb.conversation.session import ChatSession, ConversationInfo, ConversationStore
from deepkb.display import display_path
from deepkb.errors import DeepKBError
from deepkb.llm import LLM
from deepkb.retrieval.abstain import reads_many_languages
from deepkb.tui.screens.chat import ChatScreen
from deepkb.tui.screens.dialogs import ConfirmScreen
from deepkb.tui.screens.history import Saved
from deepkb.tui.system import (
    clipboard_file,
    clipboard_mode,
    copy_with_tool,
    editor_command,
    pdf_command,
    tmux_set_clipboard,
)
from deepkb.tui.widgets.sources import Source

if TYPE_CHECKING:
    from deepkb.kb import KnowledgeBase


@dataclass
class ChatConfig:
    """What `deepkb chat` was started with."""

    kb: KnowledgeBase | Callable[[], KnowledgeBase]
    """The knowledge base, or what opens it (in a worker: its imports take a while, the screen does not wait)."""
    load_llm: Callable[[], LLM] | None = None
    """Loads the answer model (run in a worker); None: retrieval only."""
    model_label: str = ""
    """What is being loaded, shown until it is ready (a file name or a server URL)."""
    options: AskOptions = field(default_factory=AskOptions)
    watch: Sequence[str] = ()
    """Folders to keep in step with the knowledge base while chatting."""
    conversation_id: str | None = None
    """A saved conversation to resume."""


class _ModelState(Message):
    """The model finished loading (or failed to)."""


class _KBState(Message):
    """The knowledge base's counts or the watcher's state changed."""

    def __init__(self, counts: dict | None = None, error: str | None = None) -> None:
        super().__init__()
        self.counts, self.error = counts, error


class ChatApp(App):
    """The chat; shells over ChatSession (answers, follow-ups, saving) and KnowledgeBase (search, status)."""

    CSS_PATH = "app.tcss"
    TITLE = "deepkb chat"
    BINDINGS = [
        Binding("ctrl+q", "request_quit", "Quit", priority=True),
        Binding("ctrl+c", "request_quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, config: ChatConfig) -> None:
        super().__init__()
        self.config = config
        self.kb: KnowledgeBase | None = None  # set by the _open_kb worker
        self.session: ChatSession | None = None
        self.conversations: ConversationStore | None = None
        self.options = config.options
        self.has_model = config.load_llm is not None
        self._llm: LLM | None = None
        self._llm_error: DeepKBError | None = None
        self._llm_ready = threading.Event()
        self._searchable = threading.Event()  # the embedder and the vector index are loaded
        self.watcher = None
        self._watch_last = ""
        self._told_empty = False
        self._chat: ChatScreen | None = None

    # lifecycle --------------------------------------------------------------------------------------------
    def get_default_screen(self) -> Screen:
        self._chat = ChatScreen()
        return self._chat

    def start_background_work(self) -> None:
        """Called by the chat screen once it is on screen: the slow parts start behind it."""
        status = self.chat.status
        status.think = self.think
        status.model = f"loading {self.config.model_label or 'the model'}…" if self.has_model else "no model"
        if self.has_model:
            self._load_model()
        self._open_kb()

    @property
    def chat(self) -> ChatScreen:
        return self._chat  # the default screen, under any modal one

    def on_unmount(self) -> None:
        if self._chat is not None:
            self._chat.cancel_answer()
        if self.watcher is not None:
            self.watcher.stop()

    def action_request_quit(self) -> None:
        """Ctrl+Q / Ctrl+C: quit at once when idle; while an answer is written, ask first."""
        focused = self.focused
        if isinstance(focused, Input) and focused.selected_text:
            focused.action_copy()  # Ctrl+C on a selection in the input copies it, as it does everywhere else
            return
        if not self.chat.answering:
            self.exit()
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.exit()

        self.push_screen(ConfirmScreen("An answer is being written. Stop it and quit?", yes="Quit"), confirmed)

    # the answer model -------------------------------------------------------------------------------------
    @work(thread=True, group="model", exit_on_error=False)
    def _load_model(self) -> None:
        try:
            self._llm = self.config.load_llm()
        except DeepKBError as exc:
            self._llm_error = exc
        except Exception as exc:  # noqa: BLE001  (llama.cpp can fail in its own ways; say so, keep searching)
            self._llm_error = DeepKBError(f"the model could not be loaded ({type(exc).__name__}: {exc}).")
        finally:
            self._llm_ready.set()
            self.post_message(_ModelState())

    def _session_llm(self) -> LLM:
        """What ChatSession calls for the model: waits for the background load; its error means no model."""
        self._llm_ready.wait()
        if self._llm_error is not None:
            raise self._llm_error
        return self._llm

    @property
    def model_ready(self) -> bool:
        return self._llm_ready.is_set()

    def on__model_state(self, message: _ModelState) -> None:
        status = self.chat.status
        if self._llm is not None:
            status.model = f"{self._llm.name} · {self._where(self._llm)}"
            status.thinks = self._llm.thinks is not False
        else:
            status.model = "no model: retrieval only"
            self.notify(str(self._llm_error), title="No answer model", severity="warning", timeout=10)

    @staticmethod
    def _where(llm: LLM) -> str:
        url = getattr(llm, "url", None)
        if url:
            return f"server {url.split('/v1/')[0]}"
        return "CPU" if llm.runs_on_cpu else "GPU"

    def model_description(self) -> str:
        """/model: what answers, where it runs, how to change it."""
        if not self.has_model:
            return "No answer model (retrieval only). Run `deepkb models pull`, or restart with --model PATH.gguf."
        if not self.model_ready:
            return f"Loading {self.config.model_label or 'the model'} in the background."
        if self._llm is None:
            return f"{self._llm_error} Restart with --model PATH.gguf or --llm-url URL."
        path = getattr(self._llm, "path", None)
        where = f"{display_path(str(path))}\n" if path else ""
        return (
            f"{self._llm.name} on the {self._where(self._llm)}\n{where}context {self._llm.context_size} tokens.\n"
            "Another model: restart with --model PATH.gguf or --llm-url URL."
        )

    # the knowledge base -----------------------------------------------------------------------------------
    @work(thread=True, group="kb", exit_on_error=False)
    def _open_kb(self) -> None:
        """Open the knowledge base and warm up the embedding model and vector index with a first search."""
        try:
            opened = self.config.kb() if callable(self.config.kb) else self.config.kb
            self.conversations = ConversationStore(opened.home)
            self.kb = opened
            if reads_many_languages(opened.settings.embedding_model):
                self.options = replace(self.options, cross_language=True)
            self.session = self._new_session()
            opened.search("warm up", k=1)
            self.post_message(_KBState(opened.status()))
        except DeepKBError as exc:
            self.post_message(_KBState(error=str(exc)))
            return
        finally:
            self._searchable.set()
        if self.config.conversation_id:
            self.call_from_thread(self.chat.resume, self.config.conversation_id)
        if self.config.watch:
            self._start_watch()

    def wait_until_searchable(self) -> ChatSession:
        """The session to answer with, once the knowledge base is open and warm (from a worker thread)."""
        self._searchable.wait()
        if self.session is None:
            raise DeepKBError("the knowledge base could not be opened; see the message above.")
        return self.session

    def ready(self) -> bool:
        """True once the knowledge base is open; otherwise says so."""
        if self.session is None:
            self.notify("The knowledge base is still opening…", severity="warning", timeout=3)
            return False
        return True

    def on__kbstate(self, message: _KBState) -> None:
        if message.error:
            self.notify(message.error, severity="error", timeout=10)
        if message.counts is not None:
            c = message.counts
            self.chat.status.kb = f"{c['documents']} documents · {c['chunks']} chunks"
            if not c["chunks"] and not self.config.watch and not self._told_empty:
                self._told_empty = True
                self.notify(
                    "The knowledge base is empty: quit and run `deepkb ingest PATH`, or start with --watch DIR.",
                    severity="warning",
                    timeout=10,
                )

    def _start_watch(self) -> None:
        """Runs in the warm-up worker: the watch engine writes through the chat's own KnowledgeBase (one Storage, one
        HNSW graph per process; the chat's searches see each commit at once)."""
        from deepkb.watch import Watcher

        try:
            watcher = Watcher(
                self.kb,
                list(self.config.watch),
                holder="deepkb chat --watch",
                on_batch=self._watch_batch,
                on_error=lambda text: self.post_message(_KBState(error=text)),
            )
            watcher.start()
        except DeepKBError as exc:
            self.post_message(_KBState(error=f"not watching: {exc}"))
            return
        self.watcher = watcher
        self.call_from_thread(self.set_interval, 0.5, self._show_watch)

    def _watch_batch(self, report) -> None:
        """On the watcher's thread after each synced batch."""
        if report.changes:
            n = len(report.changes)
            self._watch_last = f"{n} change{'s' if n != 1 else ''} at {time.strftime('%H:%M')}"
        self.post_message(_KBState(self.kb.status()))

    def _show_watch(self) -> None:
        w = self.watcher
        if w is None:
            return
        if not w.ready.is_set():
            state = "catching up…"
        elif w.busy:
            state = "syncing…"
        else:
            state = f"idle, last {self._watch_last}" if self._watch_last else "idle"
        try:
            status = self.chat.status
        except NoMatches:  # the timer ticked while the app was closing and its widgets were gone
            return
        status.watch = f"watch: {state}"

    # conversations ----------------------------------------------------------------------------------------
    @property
    def k(self) -> int:
        return self.options.k

    @k.setter
    def k(self, value: int) -> None:
        self.options = replace(self.options, k=value)

    @property
    def think(self) -> bool:
        return not self.options.skip_reasoning

    @think.setter
    def think(self, on: bool) -> None:
        self.options = replace(self.options, skip_reasoning=not on)

    def _new_session(self, conversation_id: str | None = None) -> ChatSession:
        llm = self._session_llm if self.has_model else None
        return ChatSession(
            self.kb, llm, options=self.options, conversation_id=conversation_id, store=self.conversations
        )

    def new_session(self) -> None:
        self.session = self._new_session()

    def resume_session(self, conversation_id: str) -> list | None:
        """Continue a saved conversation; returns its turns to show (None, and a notification, if it is gone)."""
        try:
            self.session = self._new_session(conversation_id)
        except DeepKBError as exc:
            self.notify(str(exc), severity="error")
            return None
        return list(self.session.turns)

    def saved_conversations(self) -> list[Saved]:
        if self.conversations is None:
            return []
        return [Saved(c.id, c.title or "(untitled)", _describe(c)) for c in self.conversations.list()]

    def rename_conversation(self, conversation_id: str, title: str) -> None:
        try:
            self.conversations.rename(conversation_id, title)
        except DeepKBError as exc:
            self.notify(str(exc), severity="error")

    def delete_conversation(self, conversation_id: str) -> None:
        try:
            self.conversations.delete(conversation_id)
        except DeepKBError as exc:
            self.notify(str(exc), severity="error")
            return
        if self.session is not None and self.session.id == conversation_id:
            self.new_session()

    def export_conversation(self, target: str | None) -> None:
        """/export [FILE]: the conversation as Markdown with its citations."""
        if not self.ready():
            return
        if self.session.id is None:
            self.notify("Nothing to export yet: ask a question first.", severity="warning")
            return
        try:
            text = self.conversations.export_markdown(self.session.id)
        except DeepKBError as exc:
            self.notify(str(exc), severity="error")
            return
        path = Path(target).expanduser() if target else Path.cwd() / f"deepkb-chat-{self.session.id}.md"
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            self.notify(f"Could not write {path}: {exc.strerror}.", severity="error")
            return
        self.notify(f"Exported to {display_path(str(path.resolve()))}.", timeout=6)

    # the outside world ------------------------------------------------------------------------------------
    def copy_text(self, text: str, what: str) -> None:
        """Copy with OSC 52 where the terminal supports it, else a clipboard program, else a file named here."""
        mode = clipboard_mode()
        tmux = tmux_set_clipboard() if mode == "osc52" else None
        blocked = tmux in ("external", "off")  # tmux would drop the OSC 52 sequence
        if mode == "osc52" and not blocked:
            self.copy_to_clipboard(text)
            self.notify(f"Copied the {what}.", timeout=3)
            return
        hint = f" (tmux's set-clipboard is {tmux}: `tmux set -g set-clipboard on` lets deepkb copy)" if blocked else ""
        tool = copy_with_tool(text) if mode == "tool" or blocked else None
        if tool:
            self.notify(f"Copied the {what} with {tool}{hint}.", timeout=6)
            return
        try:
            path = clipboard_file(text)
        except OSError as exc:
            self.notify(f"Could not copy: {exc.strerror}.", severity="error")
            return
        cannot = "tmux does not pass the copy on" if blocked else "This terminal cannot copy"
        self.notify(f"{cannot}; the {what} is in {path}{hint}", timeout=10)

    def open_source(self, source: Source) -> None:
        """Open the file at the passage: a PDF in a viewer at its page, anything else in $EDITOR at its line."""
        hit = source.hit
        if not Path(hit.path).exists():
            self.notify(f"{display_path(hit.path)} no longer exists.", severity="error")
            return
        if hit.path.lower().endswith(".pdf"):
            command = pdf_command(hit.path, hit.page)
            try:
                subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                self.notify(f"Could not run {command[0]}: {exc.strerror}; set DEEPKB_PDF_VIEWER.", severity="error")
                return
            self.notify(f"Opened {display_path(hit.path)} with {command[0]}.", timeout=3)
            return
        command = editor_command(hit.path, hit.line_start)
        try:
            try:
                with self.suspend():
                    result = subprocess.run(command)
            except Exception as exc:  # SuspendNotSupported (a headless or web driver): run the editor as it is
                if type(exc).__name__ != "SuspendNotSupported":
                    raise
                result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True)
        except OSError as exc:
            self.notify(f"Could not run {command[0]}: {exc.strerror}; set $EDITOR.", severity="error")
            return
        self.refresh()
        if result.returncode:
            self.notify(f"{command[0]} exited with status {result.returncode}.", severity="warning")

    # command palette --------------------------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        chat = self.chat
        yield SystemCommand("New conversation", "Start a new conversation (ctrl+n)", chat.action_new_chat)
        yield SystemCommand("History", "Resume, rename or delete a conversation (ctrl+o)", chat.action_history)
        yield SystemCommand("Toggle sources", "Show or hide the sources pane (ctrl+b)", chat.action_toggle_sources)
        yield SystemCommand(
            "Toggle think", "Reason before answering, or answer at once (ctrl+t)", chat.action_toggle_think
        )
        yield SystemCommand(
            "Toggle reasoning", "Expand the last answer's reasoning (ctrl+r)", chat.action_toggle_reasoning
        )
        yield SystemCommand("Copy answer", "Copy the last answer (ctrl+y)", chat.action_copy_answer)
        yield SystemCommand("Export", "Save this conversation as Markdown", lambda: self.export_conversation(None))
        yield SystemCommand("Model", "The answer model and where it runs", lambda: chat.run_slash("model", ""))
        yield SystemCommand("Help", "Commands and keys (f1)", chat.action_help)


def _describe(info: ConversationInfo) -> str:
    """`2026-12-01 15:40 · 3 questions · 3f2a9c1d` for the history list."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.updated))
    return f"{when} · {info.turns} question{'s' if info.turns != 1 else ''} · {info.id}"


def run_chat(config: ChatConfig) -> None:
    """Run the chat with the screen on a private duplicate of the terminal's descriptor.

    While llama-cpp-python loads a model (verbose off) it points descriptors 1 and 2 at /dev/null; Textual writes
    the screen to stderr, so every update drawn during the load (seconds of typing) would be lost.
    """
    original = sys.__stderr__
    try:
        private = open(os.dup(original.fileno()), "w", encoding=original.encoding, errors=original.errors)
    except (AttributeError, OSError, ValueError):  # no real terminal descriptor: nothing to protect
        ChatApp(config).run()
        return
    sys.__stderr__ = private  # the terminal driver writes to sys.__stderr__
    try:
        ChatApp(config).run()
    finally:
        sys.__stderr__ = original
        private.close()
