"""The chat screen: conversation and sources side by side, the input, the status line; slash commands."""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, ListView, Markdown

from deepkb.answer.grounding import MARK, mark_unsupported
from deepkb.answer.stream import ABOUT_THE_ANSWER
from deepkb.conversation.session import Delta, Done, Notice, Retrieved
from deepkb.errors import DeepKBError
from deepkb.scope import no_match_message
from deepkb.tui.commands import SlashError, parse_k, parse_on_off, parse_scope, parse_slash
from deepkb.tui.screens.dialogs import HelpScreen
from deepkb.tui.screens.history import HistoryScreen
from deepkb.tui.screens.source import SourceScreen
from deepkb.tui.widgets.chat_input import ChatInput
from deepkb.tui.widgets.conversation import AnswerMessage, Conversation, citation_number
from deepkb.tui.widgets.sources import Source, SourcesPane
from deepkb.tui.widgets.status import StatusLine

if TYPE_CHECKING:
    from deepkb.answer.stream import AskResult
    from deepkb.conversation.session import Event
    from deepkb.tui.app import ChatApp

CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)


class SessionEvent(Message):
    """A conversation event, carried from the answering worker thread to the UI thread."""

    def __init__(self, event: Event, answer: AnswerMessage) -> None:
        super().__init__()
        self.event, self.answer = event, answer


class SessionFailed(Message):
    """The answering worker stopped on an error; the message is for the user."""

    def __init__(self, text: str, answer: AnswerMessage) -> None:
        super().__init__()
        self.text, self.answer = text, answer


class ChatScreen(Screen):
    """Everything the user sees while chatting."""

    app: ChatApp

    BINDINGS = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+b", "toggle_sources", "Sources"),
        Binding("ctrl+r", "toggle_reasoning", "Reasoning"),
        Binding("ctrl+t", "toggle_think", "Think"),
        Binding("ctrl+y", "copy_answer", "Copy"),
        Binding("ctrl+n", "new_chat", "New"),
        Binding("ctrl+o", "history", "History"),
        Binding("f1", "help", "Help"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.answering = False
        self._cancel: threading.Event | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="body"):
            yield Conversation(id="conversation")
            yield SourcesPane(id="sources")
        # select_on_focus off: coming back to the box (Tab, or typing in another pane) must not select the draft,
        # or the next key would replace it
        yield ChatInput(placeholder="Ask your documents… (/help for commands)", id="question", select_on_focus=False)
        yield StatusLine(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ChatInput).focus()
        self.app.start_background_work()

    # parts ------------------------------------------------------------------------------------------------
    @property
    def conversation(self) -> Conversation:
        return self.query_one(Conversation)

    @property
    def sources(self) -> SourcesPane:
        return self.query_one(SourcesPane)

    @property
    def status(self) -> StatusLine:
        return self.query_one(StatusLine)

    @property
    def last_answer(self) -> AnswerMessage | None:
        answers = self.conversation.answers
        return answers[-1] if answers else None

    # input ------------------------------------------------------------------------------------------------
    @on(Input.Submitted, "#question")
    async def submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        box = self.query_one(ChatInput)
        try:
            slash = parse_slash(text)
        except SlashError as exc:
            self.notify(str(exc), severity="warning")
            box.remember(text)  # Up brings it back to correct it; the box is free for the next line
            box.value = ""
            return
        box.remember(text)
        if slash is not None:
            box.value = ""
            await self.run_slash(slash.name, slash.arg)
            return
        if self.answering:
            self.notify("An answer is still being written: press Esc to stop it, or wait.", severity="warning")
            return
        box.value = ""
        await self.ask(text)

    async def ask(self, question: str) -> None:
        """Show the question and start answering it in a worker thread."""
        answer = await self.conversation.add_question(question)
        await self.sources.show([], title="Sources · searching…")
        self.answering = True
        self._cancel = threading.Event()
        self._answer(question, answer, self._cancel)

    @work(thread=True, exclusive=True, group="answer", exit_on_error=False)
    def _answer(self, question: str, answer: AnswerMessage, cancel: threading.Event) -> None:
        """Runs off the UI thread: retrieval, waiting for the model, generation; events go back as messages."""
        try:
            session = self.app.wait_until_searchable()
            for event in session.send(question, options=self.app.options, cancel=cancel):
                self.post_message(SessionEvent(event, answer))
        except DeepKBError as exc:
            self.post_message(SessionFailed(str(exc), answer))
        except Exception as exc:  # noqa: BLE001  (shown as a notification, never a traceback on screen)
            self.post_message(SessionFailed(f"{type(exc).__name__}: {exc}", answer))

    async def on_session_event(self, message: SessionEvent) -> None:
        event, answer = message.event, message.answer
        if not answer.is_attached:  # /clear or /new while it streamed
            return
        if isinstance(event, Retrieved):
            await self.sources.show([Source(h) for h in event.hits], title=f"Sources · {len(event.hits)} retrieved")
            if not self.app.model_ready and self.app.has_model:
                answer.note("loading the model…")
        elif isinstance(event, Delta):
            await answer.add(event.kind, event.text)
        elif isinstance(event, Notice) and event.kind in ABOUT_THE_ANSWER:
            pass  # how the answer ended: said under the answer when it is done
        elif isinstance(event, Notice):
            self.notify(event.text, severity="warning", timeout=8)
        elif isinstance(event, Done):
            await self._done(event.result, answer)

    async def on_session_failed(self, message: SessionFailed) -> None:
        self.answering = False
        self.notify(message.text, title="The answer failed", severity="error", timeout=10)
        if message.answer.is_attached:
            await message.answer.finish(message.answer.text, stopped=True, meta="failed")

    async def _done(self, result: AskResult, answer: AnswerMessage) -> None:
        self.answering = False
        cited = [Source(c.hit, c.n) for c in result.citations]
        answer.sources = cited
        if result.fallback:
            meta, title = "retrieval only: the best passages", f"Best passages · {len(cited)}"
        elif result.abstained:
            meta, title = "not in the documents", f"Sources · none cited, {len(result.also_retrieved)} retrieved"
        else:
            meta = f"{len(cited)} source{'s' if len(cited) != 1 else ''} cited"
            title = f"Sources · {len(cited)} cited"
        if result.cancelled:
            meta = f"{len(cited)} cited so far" if cited else ""
        if result.looped:
            meta = f"{meta} · stopped: the model started repeating itself" if meta else "stopped: repeating itself"
        elif result.truncated:
            meta = f"{meta} · cut at the answer-token limit" if meta else "cut at the answer-token limit"
        if result.unsupported:  # deepkb.answer.grounding: the sentences their passages do not back are marked
            meta += f" · {MARK} {result.unsupported} of {len(result.support)} sentences not supported by their sources"
        shown = mark_unsupported(result.answer, result.support)
        await answer.finish(shown, stopped=result.cancelled, meta=meta.lstrip(" ·"))
        await self.sources.show(cited + [Source(h) for h in result.also_retrieved], title=title)
        t = result.timings
        if t.tokens_per_s is not None and t.ttft_ms is not None:
            self.status.speed = f"{t.tokens_per_s:.1f} tok/s · first token {t.ttft_ms / 1000:.1f} s"

    # keys -------------------------------------------------------------------------------------------------
    def on_key(self, event: events.Key) -> None:
        """Typing while the transcript or the sources list has focus (Shift+Tab, a click) goes to the question
        box instead of nowhere; keys those panes bind (e, c, 1-9 in the sources) keep their meaning."""
        focused = self.focused
        if isinstance(focused, Input) or not (event.is_printable and event.character):
            return
        bound = {key for node in (focused.ancestors_with_self if focused else []) for key in _keys(node)}
        if event.key in bound:
            return
        event.stop()
        event.prevent_default()
        box = self.query_one(ChatInput)
        box.focus()
        box.insert_text_at_cursor(event.character)

    def cancel_answer(self) -> None:
        """Stop the running answer, if any (the app calls it when it closes); safe from any state."""
        if self._cancel is not None:
            self._cancel.set()

    def action_stop(self) -> None:
        """Esc: stop the running answer; what was written so far stays, marked stopped."""
        if self.answering and self._cancel is not None:
            self._cancel.set()
            self.notify("Stopping the answer…", timeout=2)

    def action_toggle_sources(self) -> None:
        pane = self.sources
        pane.display = not pane.display
        if not pane.display:
            self.action_focus_input()

    def action_focus_sources(self) -> None:
        """Tab from the input: into the sources pane (when shown)."""
        if self.sources.display:
            self.sources.query_one(ListView).focus()

    def action_focus_input(self) -> None:
        self.query_one(ChatInput).focus()

    def action_toggle_reasoning(self) -> None:
        answer = self.last_answer
        if answer is None or not answer.toggle_reasoning():
            self.notify("The last answer has no reasoning to show.", timeout=3)

    def action_toggle_think(self) -> None:
        self.set_think(not self.app.think)

    def set_think(self, on: bool) -> None:
        self.app.think = on
        self.status.think = on
        self.notify(f"Think {'on: the model reasons first' if on else 'off: the model answers at once'}.", timeout=3)

    def action_copy_answer(self) -> None:
        answer = self.last_answer
        if answer is None or not answer.text:
            self.notify("No answer to copy yet.", severity="warning")
            return
        self.app.copy_text(answer.text, "answer")

    async def action_new_chat(self) -> None:
        if not self.app.ready():
            return
        if self.answering:
            self.notify("Stop the running answer first (Esc).", severity="warning")
            return
        self.app.new_session()
        await self.conversation.clear()
        await self.sources.show([], title="Sources")
        self.status.speed = ""
        self.notify("New conversation.", timeout=2)

    def action_history(self) -> None:
        if not self.app.ready():
            return
        if self.answering:
            self.notify("Stop the running answer first (Esc).", severity="warning")
            return

        async def chosen(conversation_id: str | None) -> None:
            if conversation_id:
                await self.resume(conversation_id)

        self.app.push_screen(HistoryScreen(), chosen)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    async def resume(self, conversation_id: str) -> None:
        """Show a saved conversation and continue it: follow-ups see its earlier turns."""
        turns = self.app.resume_session(conversation_id)
        if turns is None:
            return
        await self.conversation.clear()
        for turn in turns:
            answer = await self.conversation.add_question(turn.question)
            cited = [Source(c.hit, c.n) for c in turn.citations]
            answer.sources = cited
            await answer.show(turn.answer, reasoning=turn.reasoning, stopped=turn.cancelled)
        last = self.last_answer
        await self.sources.show(last.sources if last else [], title="Sources")
        self.notify(f"Resumed a conversation of {len(turns)} question{'s' if len(turns) != 1 else ''}.", timeout=3)

    # sources ----------------------------------------------------------------------------------------------
    def on_sources_pane_chosen(self, message: SourcesPane.Chosen) -> None:
        if message.action == "read":
            self.app.push_screen(SourceScreen(message.source))
        elif message.action == "open":
            self.app.open_source(message.source)
        else:
            self.app.copy_text(message.source.citation, "citation")

    def on_markdown_link_clicked(self, event: Markdown.LinkClicked) -> None:
        """A click on a [n] marker in an answer opens that source."""
        n = citation_number(event.href)
        if n is None:
            return
        event.stop()
        answer = next((a for a in event.markdown.ancestors if isinstance(a, AnswerMessage)), None)
        source = answer.source(n) if answer else None
        if source is None:
            self.notify(f"Source [{n}] is known once the answer is complete.", timeout=3)
            return
        self.app.push_screen(SourceScreen(source))

    # slash commands ---------------------------------------------------------------------------------------
    async def run_slash(self, name: str, arg: str) -> None:
        try:
            await getattr(self, f"_slash_{name}")(arg)
        except SlashError as exc:
            self.notify(str(exc), severity="warning")

    async def _slash_help(self, arg: str) -> None:
        self.action_help()

    async def _slash_new(self, arg: str) -> None:
        await self.action_new_chat()

    async def _slash_clear(self, arg: str) -> None:
        await self.conversation.clear()
        await self.sources.show([], title="Sources")

    async def _slash_sources(self, arg: str) -> None:
        self.action_toggle_sources()

    async def _slash_k(self, arg: str) -> None:
        self.app.k = parse_k(arg)
        self.notify(f"Retrieving {self.app.k} passages per question.", timeout=3)

    async def _slash_in(self, arg: str) -> None:
        self._set_scope(parse_scope("in", arg, self.app.options.scope))

    async def _slash_type(self, arg: str) -> None:
        self._set_scope(parse_scope("type", arg, self.app.options.scope))

    def _set_scope(self, scope) -> None:
        kb = self.app.kb
        if scope and kb is not None and not kb.store.scope_documents(scope):
            raise SlashError(no_match_message(scope))
        self.app.options = replace(self.app.options, scope=scope)
        said = f"Asking only about documents {scope.describe()}." if scope else "Asking about every document."
        self.notify(said, timeout=4)

    async def _slash_model(self, arg: str) -> None:
        self.notify(self.app.model_description(), title="Answer model", timeout=10)

    async def _slash_think(self, arg: str) -> None:
        self.set_think(parse_on_off(arg, self.app.think))

    async def _slash_history(self, arg: str) -> None:
        self.action_history()

    async def _slash_export(self, arg: str) -> None:
        self.app.export_conversation(arg or None)

    async def _slash_copy(self, arg: str) -> None:
        answer = self.last_answer
        if not arg:
            self.action_copy_answer()
        elif arg == "code":
            blocks = CODE_BLOCK.findall(answer.text) if answer else []
            if not blocks:
                raise SlashError("the last answer has no code block.")
            self.app.copy_text(blocks[-1], "code block")
        else:
            source = answer.source(_number(arg)) if answer else None
            if source is None:
                raise SlashError(f"the last answer has no source [{arg}].")
            self.app.copy_text(source.citation, "citation")

    async def _slash_source(self, arg: str) -> None:
        answer = self.last_answer
        source = answer.source(_number(arg)) if answer else None
        if source is None:
            raise SlashError(f"the last answer has no source [{arg}].")
        self.app.push_screen(SourceScreen(source))


def _keys(node: object) -> set[str]:
    """The keys a widget binds (each of a binding's comma-separated keys)."""
    keys = (b[0] if isinstance(b, tuple) else getattr(b, "key", "") for b in getattr(node, "BINDINGS", []))
    return {k.strip() for key in keys for k in key.split(",")}


def _number(arg: str) -> int:
    try:
        return int(arg.strip("[] "))
    except ValueError:
        raise SlashError(f"{arg!r} is not a source number.") from None
