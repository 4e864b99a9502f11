"""The sources pane: every retrieved passage with its file, page/lines, heading and snippet; cited ones numbered."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label, ListItem, ListView, Static

from deepkb.display import display_path, location
from deepkb.retrieval.search import Hit

SNIPPET_CHARS = 160


@dataclass(frozen=True)
class Source:
    """A passage as the chat shows it: its citation number in the answer (None while streaming or when uncited)."""

    hit: Hit
    n: int | None = None

    @property
    def where(self) -> str:
        """`docs/policy.md p.2 L3-10`: what a citation names."""
        h = self.hit
        place = location(h.page, h.line_start, h.line_end)
        return f"{display_path(h.path)} {place}".strip()

    @property
    def citation(self) -> str:
        """The citation as copied: `[n] file p.2 L3-10 (Heading)`."""
        number = f"[{self.n}] " if self.n is not None else ""
        heading = f" ({self.hit.heading})" if self.hit.heading else ""
        return f"{number}{self.where}{heading}"


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rsplit(" ", 1)[0] + " …"


class SourceItem(ListItem):
    """One passage in the pane."""

    def __init__(self, source: Source) -> None:
        super().__init__(classes="cited" if source.n is not None else "uncited")
        self.source = source

    def compose(self) -> ComposeResult:
        s = self.source
        text = Text()
        text.append(f"[{s.n}] " if s.n is not None else "· ", style="bold cyan" if s.n is not None else "dim")
        text.append(display_path(s.hit.path), style="bold")
        place = location(s.hit.page, s.hit.line_start, s.hit.line_end)
        if place:
            text.append(f" {place}")
        if s.hit.heading:
            text.append(f"\n{s.hit.heading}", style="magenta")
        text.append(f"\n{snippet(s.hit.text)}", style="dim")
        yield Static(text)


class SourcesPane(Vertical):
    """The pane beside the conversation; Enter or a click opens a passage, `e` its file, `c` copies its citation."""

    BINDINGS = [
        Binding("e", "open_source", "Open file"),
        Binding("c", "copy_citation", "Copy citation"),
        Binding("tab", "screen.focus_input", "Back to the input", show=False),
        *[Binding(str(n), f"pick({n})", show=False) for n in range(1, 10)],
    ]

    class Chosen(Message):
        """A source was chosen to be read (`action` "read"), opened in the editor ("open") or copied ("copy")."""

        def __init__(self, source: Source, action: str) -> None:
            super().__init__()
            self.source, self.action = source, action

    def compose(self) -> ComposeResult:
        yield Label("Sources", id="sources-title")
        yield ListView(id="sources-list")

    @property
    def sources(self) -> list[Source]:
        return [item.source for item in self.query(SourceItem)]

    async def show(self, sources: list[Source], title: str = "Sources") -> None:
        """Replace the listed passages."""
        self.query_one("#sources-title", Label).update(title)
        listing = self.query_one(ListView)
        await listing.clear()
        await listing.extend(SourceItem(s) for s in sources)
        if sources:
            listing.index = 0

    def _current(self) -> Source | None:
        item = self.query_one(ListView).highlighted_child
        return item.source if isinstance(item, SourceItem) else None

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        event.stop()
        if isinstance(event.item, SourceItem):
            self.post_message(self.Chosen(event.item.source, "read"))

    def action_open_source(self) -> None:
        if source := self._current():
            self.post_message(self.Chosen(source, "open"))

    def action_copy_citation(self) -> None:
        if source := self._current():
            self.post_message(self.Chosen(source, "copy"))

    def action_pick(self, n: int) -> None:
        """Digit n highlights and reads citation [n]."""
        listing = self.query_one(ListView)
        for index, item in enumerate(listing.children):
            if isinstance(item, SourceItem) and item.source.n == n:
                listing.index = index
                self.post_message(self.Chosen(item.source, "read"))
                return
