"""What every loader returns: units of text that remember their page, lines and heading path."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Unit:
    """A paragraph-sized piece of a document and where it stands in the source."""

    text: str
    line_start: int  # 1-based, inclusive: lines of the file, or of the PDF page's extracted text
    line_end: int
    page: int | None = None
    heading: str | None = None  # heading path, "Title > Section"
    boundary: bool = False  # a section or page starts here: no chunk spans across it
    lines: list[int] | None = None  # the source line of each line of `text`, where they are not consecutive (HTML)
    lead: bool = False  # introduces the unit after it (a definition list's term): a chunk never ends on it
    entry: str | None = None  # the definition list terms it stands under ("set [-abef…] > -e"): ends its heading

    def line_spans(self) -> list[tuple[int, int]]:
        """The source lines each line of `text` comes from: its own line when known, else the unit's whole span."""
        texts = self.text.split("\n")
        if self.lines is not None and len(self.lines) == len(texts):
            return [(n, n) for n in self.lines]
        if self.line_end - self.line_start + 1 == len(texts):
            return [(self.line_start + i, self.line_start + i) for i in range(len(texts))]
        return [(self.line_start, self.line_end)] * len(texts)


@dataclass
class LoadedDocument:
    """What a loader returns: the units plus facts about the file worth recording."""

    kind: str  # markdown | text | html | pdf
    units: list[Unit]
    title: str | None = None
    encoding: str | None = None
    pages: int | None = None
    empty_pages: list[int] = field(default_factory=list)  # PDF pages with no extractable text
    failed_pages: dict[int, str] = field(default_factory=dict)  # PDF pages the parser failed on -> why
    part_name: str = "page"  # what failed_pages counts: PDF pages, an mbox's messages, an EPUB's chapters
    ocr_pages: list[int] = field(default_factory=list)  # pages whose text came from OCR (deepkb.loaders.ocr)

    def failure_note(self) -> str | None:
        """`pages 2, 5 could not be read (KeyError: ...)`, or None when every page was read."""
        if not self.failed_pages:
            return None
        numbers = sorted(self.failed_pages)
        shown = ", ".join(map(str, numbers[:10])) + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")
        word = self.part_name if len(numbers) == 1 else self.part_name + "s"
        return f"{word} {shown} could not be read ({self.failed_pages[numbers[0]]})"


def normalize_newlines(text: str) -> str:
    """CRLF and CR become LF, so line numbers match what an editor shows."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def paragraphs(lines: list[str], first_line: int = 1, page: int | None = None) -> list[Unit]:
    """Blank-line separated blocks of lines, each one unit with its line span."""
    units: list[Unit] = []
    start = None
    for i, line in enumerate([*lines, ""]):
        if line.strip():
            if start is None:
                start = i
        elif start is not None:
            units.append(Unit("\n".join(lines[start:i]), first_line + start, first_line + i - 1, page))
            start = None
    return units


TERM_CHARS = 48  # a term longer than this (a function's whole signature) heads its entry by its start
# Nested definition lists that add their terms to the heading path: bash's builtins > set > -e is two; a page nesting
# lists 10,000 deep would otherwise give every passage a heading path of 10,000 terms.
TERM_DEPTH = 4


def term_heading(text: str) -> str:
    """A definition list's term as a heading path part: one line, at most TERM_CHARS, no " > " of its own."""
    term = " ".join(text.split()).replace(" > ", " ")
    if len(term) <= TERM_CHARS:
        return term
    cut = term.rfind(" ", 0, TERM_CHARS)
    return term[: cut if cut > TERM_CHARS // 2 else TERM_CHARS] + "…"


def propagate_headings(units: list[Unit]) -> None:
    """Each unit under the last section heading before it; a definition list's entry goes on under its terms."""
    current = None
    for unit in units:
        if unit.boundary:
            current = unit.heading
        elif unit.entry:
            unit.heading = f"{current} > {unit.entry}" if current else unit.entry
        else:
            unit.heading = current
