"""HTML: the main text only (scripts, styles, menus and other page chrome dropped), headings kept, each line of text
with its own line of the source file.

The standard library's tokenizer is the one Python parser that reports exact source positions; the tree rules
that matter for text are HTML5's: `</head>` may be omitted, and the head then ends at the first tag or text that
cannot live in it (the "in head" insertion mode), so a page without `</head>` is not lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser

from deepkb.loaders.base import TERM_DEPTH, LoadedDocument, Unit, propagate_headings, term_heading

_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "iframe", "object", "nav"}
# What HTML5 keeps inside <head>; any other start tag, or visible text, ends an unclosed head.
_HEAD_TAGS = {"base", "basefont", "bgsound", "link", "meta", "title", "noscript", "noframes", "style", "script",
              "template"}  # fmt: skip
_BLOCK_TAGS = {
    "p", "div", "section", "article", "main", "aside", "header", "footer", "nav", "li", "ul", "ol", "dl", "dt",
    "dd", "table", "tr", "pre", "blockquote", "figure", "figcaption", "form", "br", "hr", "address", "details",
    "summary", "h1", "h2", "h3", "h4", "h5", "h6", "h", "body", "caption", "thead", "tbody",
}  # fmt: skip
# A heading: h1-h6, and "h", which SQLite's documentation gives each entry of its long reference pages (every PRAGMA of
# pragma.html, hidden: `<h _id=pragma_integrity_check style="display:none"> PRAGMA integrity_check</h>`, the heading of
# its own search index and the target of the page's table of contents); it sits below any h1-h6.
_HEADING = re.compile(r"h[1-6]?")
_VOID_TAGS = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source", "wbr"}


# Boilerplate: page chrome found by its tag, ARIA role, or class/id word (readability's rules, narrowed to what marks
# navigation on its own): menus, navigation bars, sidebars, breadcrumbs, footers, taglines, tables of contents.
_CHROME_TAGS = {"nav", "button", "form", "select", "textarea", "footer"}
_CHROME_ROLES = {"navigation", "banner", "contentinfo", "search", "complementary", "menu", "menubar"}
_CHROME_WORDS = {
    "nav", "navbar", "navheader", "navfooter", "navigation", "menu", "mainmenu", "submenu", "searchmenu", "sidebar",
    "sphinxsidebar", "breadcrumb", "breadcrumbs", "footer", "tagline", "toc", "skiplink", "related", "searchbox",
    "headerlink",
}  # fmt: skip
LINK_SHARE = 0.9  # a block whose text is nearly all link text (a menu, an index of links) is navigation
# Boxes set beside the text (DocBook's and Sphinx's admonitions, asides): the heading inside one ("Note", "Tip") is the
# box's label, not a section of the page. Taken for a section it would head everything after the box, up to the next
# real heading (PostgreSQL's psql page labelled its meta-commands "Usage > Note").
_BOX_WORDS = {"note", "tip", "warning", "caution", "important", "admonition", "hint", "attention", "danger", "error",
              "seealso", "sidebar"}  # fmt: skip


def _is_box(tag: str, attrs: list) -> bool:
    if tag == "aside":
        return True
    words = (dict(attrs).get("class") or "").lower().split()
    return tag in ("div", "section", "table", "blockquote") and any(w in _BOX_WORDS for w in words)


def _is_refname(tag: str, attrs: list) -> bool:
    """DocBook's refnamediv: where a reference page (psql, pg_dump, an SQL command) gives its name."""
    return tag == "div" and "refnamediv" in (dict(attrs).get("class") or "").split()


class _Within:
    """Whether the parser is inside an element of a kind, its end found by counting that tag's nesting."""

    def __init__(self, kind: Callable[[str, list], bool]) -> None:
        self.kind = kind
        self.open: list[list] = []  # [tag, open count]

    def __bool__(self) -> bool:
        return bool(self.open)

    def start(self, tag: str, attrs: list) -> None:
        if self.open and tag == self.open[-1][0]:
            self.open[-1][1] += 1
        elif tag not in _VOID_TAGS and self.kind(tag, attrs):
            self.open.append([tag, 1])

    def end(self, tag: str) -> None:
        if self.open and tag == self.open[-1][0]:
            self.open[-1][1] -= 1
            if not self.open[-1][1]:
                self.open.pop()


def _is_chrome(tag: str, attrs: list) -> bool:
    if tag in _CHROME_TAGS:
        return True
    values = dict(attrs)
    if (values.get("role") or "").lower() in _CHROME_ROLES:
        return True
    words = f"{values.get('class') or ''} {values.get('id') or ''}".lower().split()
    return any(w in _CHROME_WORDS or w.replace("-", "").replace("_", "") in _CHROME_WORDS for w in words)


class _HTMLText(HTMLParser):
    """Collects visible text blocks with the source line of each of their lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.units: list[Unit] = []
        self.skip_depth = 0
        self.chrome: list[list] = []  # [tag, open count] of the page chrome being skipped
        self.boxes = _Within(_is_box)  # admonitions: their headings are labels
        self.refname = _Within(_is_refname)
        self.in_title = False
        self.title = ""
        self.heading_level: int | None = None
        self.path: list[tuple[int, str]] = []
        self.parts: list[tuple[int, str, bool]] = []  # (source line, text, preformatted)
        self.link_chars = 0
        self.in_link = 0
        self.in_pre = 0
        self.in_head = False
        self.in_term = False  # the text being collected is a definition list's term (<dt>): it leads its <dd>
        self.in_dt = False  # inside a <dt>, whose term may sit in a block of its own (SQLite: <dt><p><b>abs(X)</b>)
        self.terms: list[str | None] = []  # per open <dl> (the outer TERM_DEPTH), its last term: what follows is under
        self.lists = 0  # open <dl> elements, however deep

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "head":
            self.in_head = True
            return
        if self.in_head and tag not in _HEAD_TAGS:
            self.in_head = False
        if tag == "title":
            self.in_title = True
        if self.chrome:
            if tag == self.chrome[-1][0]:
                self.chrome[-1][1] += 1
            return
        if tag in _SKIP_TAGS:
            if tag not in _VOID_TAGS:
                self.skip_depth += 1
            return
        if not self.skip_depth and tag not in _VOID_TAGS and not self.in_head and _is_chrome(tag, attrs):
            self.flush()
            self.chrome.append([tag, 1])
            return
        self.boxes.start(tag, attrs)
        self.refname.start(tag, attrs)
        if tag in ("td", "th") and self.parts:
            self.parts.append((self.getpos()[0], " | ", False))
        if tag in _BLOCK_TAGS:
            self.flush()
            self.in_dt = tag == "dt" or self.in_dt and tag in ("p", "div", "br")  # a heading or a rule ends it
            self.in_term = self.in_dt
        if tag == "dl":
            self.lists += 1
            if self.lists <= TERM_DEPTH:
                self.terms.append(None)
        if tag == "pre":
            self.in_pre += 1
        if tag == "a":
            self.in_link += 1
        if _HEADING.fullmatch(tag) and not self.boxes:
            # A DocBook reference page (PostgreSQL's psql, pg_dump, SQL commands) titles itself in its refnamediv with
            # the same <h2> as its sections: the page's name heads them ("pg_dump > Options"), as a man page's does.
            self.heading_level = 0 if self.refname else int(tag[1:] or 7)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "html", "body"):
            self.in_head = False
        if tag == "title":
            self.in_title = False
        if self.chrome:
            if tag == self.chrome[-1][0]:
                self.chrome[-1][1] -= 1
                if not self.chrome[-1][1]:
                    self.chrome.pop()
            elif tag in ("body", "html"):
                self.chrome.clear()
            return
        if tag in _SKIP_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if tag in _BLOCK_TAGS:
            self.flush()
            if tag in ("dt", "dl"):
                self.in_dt = False
            self.in_term = self.in_dt  # a block that closes inside a <dt> leaves the term's text still to come
        if tag == "dl" and self.lists:
            if self.lists <= TERM_DEPTH:
                self.terms.pop()
            self.lists -= 1
        self.boxes.end(tag)
        self.refname.end(tag)
        if _HEADING.fullmatch(tag):
            self.heading_level = None
        if tag == "pre":
            self.in_pre = max(0, self.in_pre - 1)
        if tag == "a":
            self.in_link = max(0, self.in_link - 1)

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
            return
        if self.in_head and not self.skip_depth:
            if not data.strip():
                return
            self.in_head = False  # text cannot live in the head: the body has begun
        if self.skip_depth or self.chrome or not data.strip() and not self.parts:
            return
        line = self.getpos()[0]
        for i, piece in enumerate(data.split("\n")):  # each piece of text keeps its own source line
            self.parts.append((line + i, piece, bool(self.in_pre)))
        if self.in_link:
            self.link_chars += len("".join(data.split()))

    def flush(self) -> None:
        by_line: dict[int, list[str]] = {}
        pre_lines: set[int] = set()
        for line, piece, pre in self.parts:
            by_line.setdefault(line, []).append(piece if pre else re.sub(r"\s+", " ", piece))
            if pre:
                pre_lines.add(line)
        rows = []
        for line, pieces in by_line.items():
            joined = "".join(pieces)
            text = joined.rstrip() if line in pre_lines else joined.strip()
            if text.strip():
                rows.append((line, text))
        link_chars, self.parts, self.link_chars = self.link_chars, [], 0
        lead, self.in_term = self.in_term, False
        if not rows:
            return
        text = "\n".join(t for _, t in rows)
        numbers = [n for n, _ in rows]
        if self.heading_level is None and link_chars >= LINK_SHARE * len("".join(text.split())):
            return  # a menu or a list of links, not content
        unit = Unit(text, numbers[0], numbers[-1], lines=numbers, lead=lead)
        if lead and self.terms and self.lists <= TERM_DEPTH and self.heading_level is None:
            self.terms[-1] = term_heading(text)
        unit.entry = " > ".join(t for t in self.terms if t) or None  # a term heads its own entry, as a title does
        if self.heading_level is not None:
            level = self.heading_level
            name = " ".join(text.split())
            self.path = [p for p in self.path if p[0] < level] + [(level, name)]
            unit.heading, unit.boundary = " > ".join(p[1] for p in self.path), True
        self.units.append(unit)


def load_html(text: str) -> LoadedDocument:
    """HTML: scripts, styles and markup dropped; headings kept as the heading path; lines are the source's. The
    page's title repeated before its first heading (SQLite's `<div class="fancy_title">VACUUM</div>`) is its title,
    not a passage: as one, each SQLite page had a chunk of one or two words and no heading."""
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    parser.flush()
    title = re.sub(r"\s+", " ", parser.title).strip() or None
    units = parser.units
    first = next((i for i, u in enumerate(units) if u.boundary), None)
    if title and first:  # the page's <title> set as a block before its first heading: the title, not a passage
        units = [u for u in units[:first] if " ".join(u.text.split()).casefold() != title.casefold()] + units[first:]
    propagate_headings(units)
    return LoadedDocument("html", units, title=title)
