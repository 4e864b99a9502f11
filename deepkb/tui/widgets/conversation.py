"""The conversation: questions and streamed Markdown answers, reasoning collapsed, citation markers as links."""

from __future__ import annotations

import re

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Collapsible, Markdown, Static
from textual.widgets.markdown import MarkdownStream

from deepkb.tui.widgets.sources import Source

MARKER = re.compile(r"\[(\d{1,3})\]")
CITE_SCHEME = "cite:"
_HOLD = 6  # an unclosed "[12" at a delta's end waits for the next delta, so markers become links whole


def link_markers(text: str) -> str:
    """`[2]` -> a Markdown link to `cite:2`, so a click on a marker opens its source."""
    return MARKER.sub(lambda m: f"[\\[{m.group(1)}\\]]({CITE_SCHEME}{m.group(1)})", text)


def text_markdown_parser():
    """Markdown as GitHub renders it, but raw HTML stays text: `git stash branch <branchname> [<stash>]` in a man
    page or an answer must show its placeholders, not drop them as unknown tags."""
    from markdown_it import MarkdownIt

    return MarkdownIt("gfm-like", {"html": False})


def citation_number(href: str) -> int | None:
    """The n of a `cite:n` link; None for any other link."""
    if href.startswith(CITE_SCHEME) and href[len(CITE_SCHEME) :].isdigit():
        return int(href[len(CITE_SCHEME) :])
    return None


class UserMessage(Static):
    """A question as it was sent."""

    def __init__(self, question: str) -> None:
        super().__init__(question, markup=False, classes="user")


class AnswerMessage(Vertical):
    """One answer: collapsed reasoning, the Markdown answer streamed in, a line saying how it ended."""

    def __init__(self) -> None:
        super().__init__(classes="answer")
        self.text = ""  # the answer as streamed (or as finally verified)
        self.reasoning = ""
        self.stopped = False
        self.sources: list[Source] = []  # the cited passages, numbered as the answer's markers, once it is done
        self._held = ""
        self._noted = False
        self._answer_stream: MarkdownStream | None = None
        self._reasoning_stream: MarkdownStream | None = None

    def compose(self) -> ComposeResult:
        with Collapsible(title="Reasoning", collapsed=True, classes="reasoning -empty"):
            yield Markdown("", classes="reasoning-text", open_links=False, parser_factory=text_markdown_parser)
        yield Markdown("", classes="answer-text", open_links=False, parser_factory=text_markdown_parser)
        yield Static("", classes="meta", markup=False)

    def source(self, n: int) -> Source | None:
        """The passage marker [n] cites."""
        return next((s for s in self.sources if s.n == n), None)

    def note(self, text: str) -> None:
        """A passing line under the answer while it is on its way (e.g. the model is still loading)."""
        meta = self.query_one(".meta", Static)
        meta.update(text)
        meta.display = self._noted = True

    @property
    def answer_markdown(self) -> Markdown:
        return self.query_one(".answer-text", Markdown)

    @property
    def reasoning_box(self) -> Collapsible:
        return self.query_one(Collapsible)

    async def add(self, kind: str, text: str) -> None:
        """Append a streamed piece: kind "answer" or "reasoning"."""
        if self._noted:
            self._noted = False
            self.query_one(".meta", Static).display = False
        if kind == "reasoning":
            self.reasoning += text
            if self._reasoning_stream is None:
                self.reasoning_box.remove_class("-empty")
                self._reasoning_stream = Markdown.get_stream(self.query_one(".reasoning-text", Markdown))
            await self._reasoning_stream.write(text)
            self._follow()
            return
        self.text += text
        pending = self._held + text
        cut = pending.rfind("[")
        if cut != -1 and "]" not in pending[cut:] and len(pending) - cut <= _HOLD:
            pending, self._held = pending[:cut], pending[cut:]
        else:
            self._held = ""
        if pending:
            if self._answer_stream is None:
                self._answer_stream = Markdown.get_stream(self.answer_markdown)
            await self._answer_stream.write(link_markers(pending))
        self._follow()

    async def finish(self, answer: str, *, stopped: bool = False, meta: str = "") -> None:
        """End the stream; the verified answer replaces the streamed one when they differ."""
        for stream in (self._reasoning_stream, self._answer_stream):
            if stream is not None:
                await stream.stop()
        self._reasoning_stream = self._answer_stream = None
        if self._held or answer != self.text:
            self.text, self._held = answer, ""
            await self.answer_markdown.update(link_markers(answer))
        self.stopped = stopped
        self.set_class(stopped, "stopped")
        parts = ["■ stopped"] if stopped else []
        if meta:
            parts.append(meta)
        meta_line = self.query_one(".meta", Static)
        meta_line.update(" · ".join(parts))
        meta_line.display = bool(parts)
        self._follow()

    def _follow(self) -> None:
        parent = self.parent
        if isinstance(parent, Conversation):
            parent.call_after_refresh(parent.follow)

    async def show(self, answer: str, reasoning: str = "", meta: str = "", stopped: bool = False) -> None:
        """Fill in a finished answer at once (a resumed conversation)."""
        if reasoning:
            self.reasoning = reasoning
            self.reasoning_box.remove_class("-empty")
            await self.query_one(".reasoning-text", Markdown).update(reasoning)
        await self.finish(answer, stopped=stopped, meta=meta)

    def toggle_reasoning(self) -> bool:
        """Expand or collapse the reasoning; False when this answer has none."""
        if not self.reasoning:
            return False
        self.reasoning_box.collapsed = not self.reasoning_box.collapsed
        return True


class Conversation(VerticalScroll):
    """The scrolling transcript. Once it is taller than the view it is anchored to the bottom (Textual's anchor):
    a streaming answer stays in sight until the user scrolls up, and again once they scroll back down."""

    def follow(self, jump: bool = False) -> None:
        """Anchor when the transcript overflows (a short one reads from the top); `jump` re-anchors after a scroll."""
        if self.virtual_size.height <= self.scrollable_content_region.height:
            if self.is_anchored:
                self.anchor(False)
            if self.scroll_y:  # an anchored view sits at a negative offset (bottom-aligned) until moved
                self.scroll_to(y=0, animate=False, immediate=True)
        elif jump or not self.is_anchored:
            self.anchor()

    def on_resize(self) -> None:
        self.call_after_refresh(self.follow)

    async def add_question(self, question: str) -> AnswerMessage:
        """Show a question and an empty answer below it (scrolled into view); returns the answer to stream into."""
        answer = AnswerMessage()
        await self.mount_all([UserMessage(question), answer])
        self.call_after_refresh(self.follow, True)
        return answer

    @property
    def answers(self) -> list[AnswerMessage]:
        return list(self.query(AnswerMessage))

    async def clear(self) -> None:
        """Empty the transcript and start again at the top: a new or resumed conversation reads from its start."""
        await self.remove_children()
        self.anchor(False)
        self.scroll_to(y=0, animate=False, immediate=True)
