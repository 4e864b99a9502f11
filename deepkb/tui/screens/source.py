"""A source's whole passage with its location; keys open the file there or copy the citation."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static

from deepkb.tui.widgets.sources import Source


class SourceScreen(ModalScreen[None]):
    """The passage in full: file, page and lines, heading, then the chunk text."""

    BINDINGS = [
        Binding("escape,q", "dismiss", "Close"),
        Binding("e", "open", "Open file"),
        Binding("c", "copy_citation", "Copy citation"),
        Binding("y", "copy_text", "Copy passage"),
    ]

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source

    def compose(self) -> ComposeResult:
        with Vertical(id="source-box"):
            yield Label(Text(self.source.citation, style="bold"), id="source-where")
            with VerticalScroll(id="source-scroll"):
                yield Static(self.source.hit.text, id="source-text", markup=False)
            yield Footer()

    def action_open(self) -> None:
        self.app.open_source(self.source)

    def action_copy_citation(self) -> None:
        self.app.copy_text(self.source.citation, "citation")

    def action_copy_text(self) -> None:
        self.app.copy_text(self.source.hit.text, "passage")
