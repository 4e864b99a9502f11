"""A source's whole passage with its line numbers, the cited lines highlighted; keys open the file or copy."""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static

from deepkb.retrieval.excerpt import loader_lines
from deepkb.retrieval.passages import from_rows
from deepkb.retrieval.search import Hit
from deepkb.tui.widgets.sources import Source

Line = tuple[int | None, str, bool]  # source line number (None: unknown), text, cited


def passage_lines(hit: Hit, chunk: Hit | None) -> list[Line]:
    """The whole chunk a source comes from, line by line as its loader read it, the cited lines marked.

    An answer cites an excerpt of a chunk (a few of its sentences, `hit`); `chunk` is the stored chunk. Falls back
    to the chunk's stored text when the file cannot be read any more, and to the cited text when there is no chunk.
    """
    whole = chunk or hit
    cited_from, cited_to = hit.line_start, hit.line_end
    first, last = whole.line_start, whole.line_end
    read = loader_lines(whole.path, whole.page, first, last) if first and last else None
    if read:
        return [(a, text, _cited(a, b, cited_from, cited_to)) for text, a, b in read]
    texts = whole.text.split("\n")
    numbered = first is not None and last is not None and last - first + 1 == len(texts)
    return [
        (first + i if numbered else None, text, numbered and _cited(first + i, first + i, cited_from, cited_to))
        for i, text in enumerate(texts)
    ]


def _cited(a: int, b: int, lo: int | None, hi: int | None) -> bool:
    return lo is not None and hi is not None and a <= hi and b >= lo


def render_lines(lines: list[Line]) -> Text:
    width = max((len(str(n)) for n, _, _ in lines if n is not None), default=0)
    out = Text(no_wrap=False)
    for i, (n, text, cited) in enumerate(lines):
        if i:
            out.append("\n")
        if width:
            out.append(f"{n if n is not None else '':>{width}} ", style="bold yellow" if cited else "dim")
        out.append(text, style="on grey23" if cited else "")
    return out


class SourceScreen(ModalScreen[None]):
    """The passage in full: file, page and lines, heading, then the chunk's lines with the cited ones highlighted."""

    BINDINGS = [
        Binding("escape,q", "dismiss", "Close"),
        Binding("e", "open", "Open file"),
        Binding("c", "copy_citation", "Copy citation"),
        Binding("y", "copy_text", "Copy passage"),
    ]

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source
        self.lines = passage_lines(source.hit, self._chunk(source.hit))

    def _chunk(self, hit: Hit) -> Hit | None:
        """The stored chunks the passage joins (one, or several consecutive ones), as one span of their document."""
        kb = getattr(self.app, "kb", None)
        ids = list(hit.chunk_ids or (hit.chunk_id,))
        try:
            found = kb.store.chunks_by_ids(ids) if kb is not None else {}
            rows = [found[i] for i in ids if i in found]
            whole = from_rows(rows, hit.score) if rows else None
        except Exception:  # noqa: BLE001  (the cited text is still worth showing)
            return None
        if (
            whole is None
            or hit.page != whole.page
            or None in (whole.line_start, whole.line_end, hit.line_start, hit.line_end)
        ):
            return whole
        # A saved chat's citation knows its best chunk only: its own lines widen the span.
        return replace(
            whole, line_start=min(whole.line_start, hit.line_start), line_end=max(whole.line_end, hit.line_end)
        )

    def compose(self) -> ComposeResult:
        with Vertical(id="source-box"):
            yield Label(Text(self.source.citation, style="bold"), id="source-where")
            with VerticalScroll(id="source-scroll"):
                yield Static(render_lines(self.lines), id="source-text", markup=False)
            yield Footer()

    def on_mount(self) -> None:
        first = next((i for i, (_, _, cited) in enumerate(self.lines) if cited), 0)
        scroll = self.query_one("#source-scroll", VerticalScroll)
        scroll.call_after_refresh(scroll.scroll_to, y=max(first - 2, 0), animate=False)

    @property
    def text(self) -> str:
        """The passage as shown, without line numbers."""
        return "\n".join(text for _, text, _ in self.lines)

    def action_open(self) -> None:
        self.app.open_source(self.source)

    def action_copy_citation(self) -> None:
        self.app.copy_text(self.source.citation, "citation")

    def action_copy_text(self) -> None:
        self.app.copy_text(self.text, "passage")
