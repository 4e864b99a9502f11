"""HTML: visible text only (scripts, styles, navigation dropped), headings kept, lines of the source file.

The standard library's tokenizer is the one Python parser that reports exact source positions; the tree rules
that matter for text are HTML5's: `</head>` may be omitted, and the head then ends at the first tag or text that
cannot live in it (the "in head" insertion mode), so a page without `</head>` is not lost.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from deepkb.loaders.base import LoadedDocument, Unit, propagate_headings

_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "iframe", "object", "nav"}
# What HTML5 keeps inside <head>; any other start tag, or visible text, ends an unclosed head.
_HEAD_TAGS = {"base", "basefont", "bgsound", "link", "meta", "title", "noscript", "noframes", "style", "script",
              "template"}  # fmt: skip
_BLOCK_TAGS = {
    "p", "div", "section", "article", "main", "aside", "header", "footer", "nav", "li", "ul", "ol", "dl", "dt",
    "dd", "table", "tr", "pre", "blockquote", "figure", "figcaption", "form", "br", "hr", "address", "details",
    "summary", "h1", "h2", "h3", "h4", "h5", "h6", "body", "caption", "thead", "tbody",
}  # fmt: skip
_VOID_TAGS = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source", "wbr"}


class _HTMLText(HTMLParser):
    """Collects visible text blocks with the source lines they come from."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.units: list[Unit] = []
        self.skip_depth = 0
        self.in_title = False
        self.title = ""
        self.heading_level: int | None = None
        self.path: list[tuple[int, str]] = []
        self.parts: list[str] = []
        self.first_line: int | None = None
        self.last_line = 0
        self.in_pre = 0
        self.in_head = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "head":
            self.in_head = True
            return
        if self.in_head and tag not in _HEAD_TAGS:
            self.in_head = False
        if tag == "title":
            self.in_title = True
        if tag in _SKIP_TAGS:
            if tag not in _VOID_TAGS:
                self.skip_depth += 1
            return
        if tag in ("td", "th") and self.parts:
            self.parts.append(" | ")
        if tag in _BLOCK_TAGS:
            self.flush()
        if tag == "pre":
            self.in_pre += 1
        if re.fullmatch(r"h[1-6]", tag):
            self.heading_level = int(tag[1])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "html", "body"):
            self.in_head = False
        if tag == "title":
            self.in_title = False
        if tag in _SKIP_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if tag in _BLOCK_TAGS:
            self.flush()
        if re.fullmatch(r"h[1-6]", tag):
            self.heading_level = None
        if tag == "pre":
            self.in_pre = max(0, self.in_pre - 1)

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
            return
        if self.in_head and not self.skip_depth:
            if not data.strip():
                return
            self.in_head = False  # text cannot live in the head: the body has begun
        if self.skip_depth or not data.strip() and not self.parts:
            return
        if data.strip():
            line = self.getpos()[0]
            if self.first_line is None:
                self.first_line = line + data[: len(data) - len(data.lstrip())].count("\n")
            self.last_line = line + data.rstrip().count("\n")
        self.parts.append(data if self.in_pre else re.sub(r"\s+", " ", data))

    def flush(self) -> None:
        text = "".join(self.parts).strip()
        if text and self.first_line is not None:
            unit = Unit(text, self.first_line, max(self.first_line, self.last_line))
            if self.heading_level is not None:
                level = self.heading_level
                self.path = [p for p in self.path if p[0] < level] + [(level, text)]
                unit.heading, unit.boundary = " > ".join(p[1] for p in self.path), True
            self.units.append(unit)
        self.parts, self.first_line = [], None


def load_html(text: str) -> LoadedDocument:
    """HTML: scripts, styles and markup dropped; headings kept as the heading path; lines are the source's."""
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    parser.flush()
    propagate_headings(parser.units)
    title = re.sub(r"\s+", " ", parser.title).strip() or None
    return LoadedDocument("html", parser.units, title=title)
