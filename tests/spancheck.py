"""The span check: a passage must start on its span's first line, end on its last, and every line of it must stand,
in order, on the lines in between (and on the page it cites).

The source lines are read here without deepkb's loaders: a text file's own lines, an HTML file's lines with the
markup taken out (tags and comments removed, entities decoded, line breaks kept), a PDF page's lines as pypdf
extracts them (deepkb numbers PDF lines that way). Text is compared without white space and table bars, so
reflowed HTML and dedented <pre> blocks compare equal to their source.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from pathlib import Path

# Markup as HTML reads it: a comment, or a tag, which opens with "<" and a letter ("</" and a letter, "<!", "<?"). A
# "<" before anything else is text ("rowid<'2'", "b<>0" in SQLite's pages), as in a browser and in html.parser.
_MARKUP = re.compile(r"<!--.*?-->|</?[A-Za-z][^>]*>|<[!?][^>]*>", re.S)
_SPACE = re.compile(r"\s+")
ELLIPSIS = "…"


def _key(text: str) -> str:
    return _SPACE.sub("", text)


@lru_cache(maxsize=64)
def source_lines(path: str, page: int | None = None) -> tuple[str, ...]:
    """The comparable text of each line of the file (of one page of a PDF), 1-based as index + 1."""
    file = Path(path)
    if file.suffix.lower() == ".pdf":
        from pypdf import PdfReader

        text = PdfReader(str(file)).pages[(page or 1) - 1].extract_text() or ""
        return tuple(_key(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    data = file.read_bytes()
    try:
        raw = data.decode("utf-8")
    except UnicodeDecodeError:  # libxslt's pages are ISO-8859-1, as they say (deepkb reads them so)
        raw = data.decode("cp1252", errors="replace")
    raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    if file.suffix.lower() in (".html", ".htm", ".xhtml"):
        raw = _MARKUP.sub(lambda m: "\n" * m.group().count("\n"), raw)
        return tuple(_key(html.unescape(line)) for line in raw.split("\n"))
    return tuple(_key(line) for line in raw.split("\n"))


def violation(path: str, page: int | None, line_start: int, line_end: int, text: str) -> str | None:
    """Why the passage does not stand exactly on its span, or None when it does."""
    is_html = Path(path).suffix.lower() in (".html", ".htm", ".xhtml")
    # An excerpt marks a line it cuts with "…"; a line that is only "…" is the document's own (nettle's "C_1, …, C_n").
    lines = [
        _key(line.strip() if line.strip() == ELLIPSIS else line.strip().strip(ELLIPSIS)) for line in text.split("\n")
    ]
    lines = [line for line in lines if line]
    if not lines:
        return "empty passage"
    source = source_lines(path, page)
    if not 1 <= line_start <= line_end <= len(source):
        return f"span L{line_start}-{line_end} outside the {len(source)} lines"

    def on(line: str, number: int) -> bool:  # HTML: the bars between table cells are deepkb's, not the file's
        return line in source[number - 1] or is_html and line.replace("|", "") in source[number - 1].replace("|", "")

    if not on(lines[0], line_start):
        return f"does not start on L{line_start}: {text.strip()[:60]!r}"
    if not on(lines[-1], line_end):
        return f"does not end on L{line_end}: {text.strip()[-60:]!r}"
    at = line_start
    for line in lines:  # in order; a line may share a source line with the one before it
        while at <= line_end and not on(line, at):
            at += 1
        if at > line_end:
            return f"{line[:40]!r} is not on L{line_start}-{line_end}" + (f" of p.{page}" if page else "")
    return None
