"""Manual pages (roff with the man macros): sections as headings, lines of the roff source.

`man` and groff need not be installed: this is a small reader of the man macros (.TH, .SH, .SS, paragraphs, font
macros) and of roff's common escapes, enough for search and citations; it does not lay out text. A compressed page
(`ls.1.gz`) is read decompressed, and its lines are those of the decompressed source (`zless` shows them).
"""

from __future__ import annotations

import re

from deepkb.loaders.base import TERM_DEPTH, LoadedDocument, Unit, propagate_headings, term_heading

# .1 to .9 with an optional suffix letter or two (.3pm, .1ssl, .8x), and n (tcl's section).
MAN_SUFFIX = re.compile(r"^\.([1-9][a-z]{0,4}|n)$")
_BREAKS = {"PP", "LP", "P", "TP", "IP", "HP", "sp", "br", "RS", "RE", "nf", "fi", "EX", "EE", "TQ", "in", "ti", "bp",
           "Sh", "Pp", "Bl", "El", "It", "Bd", "Ed", "Ss"}  # fmt: skip
_FONT_ALTERNATING = {"BR", "RB", "IR", "RI", "BI", "IB"}
_FONT_JOINED = {"B", "I", "SM", "SB", "R"}
_MDOC_INLINE = {"Nm", "Fl", "Ar", "Op", "Pa", "Xr", "Em", "Sy", "Cm", "Dq", "Sq", "Ql", "Li", "Va", "Ev", "Nd",
                "Fn", "Ft", "Fa", "Dv", "Er", "Ic", "Lk", "Mt", "No", "Ns"}  # fmt: skip
_NAMED = {
    "em": "—", "en": "–", "hy": "-", "aq": "'", "dq": '"', "lq": "“", "rq": "”", "oq": "‘", "cq": "’", "bu": "•",
    "co": "©", "rg": "®", "tm": "™", "mi": "-", "pl": "+", "mu": "×", "de": "°", "ga": "`", "ha": "^", "ti": "~",
    "rs": "\\", "sl": "/", "ba": "|", "lh": "☜", "rh": "☞", "<=": "≤", ">=": "≥", "!=": "≠", "->": "→", "<-": "←",
    "Fo": "«", "Fc": "»", "ss": "ß", "ae": "æ", "ul": "_",
}  # fmt: skip
_ESCAPE = re.compile(
    r"\\(?:"
    r"f(?:\[[^\]]*\]|\(..|.)"  # font
    r"|s[+-]?(?:\d|\(\d\d|\[\d+\])"  # size
    r"|\*(?:\[[^\]]*\]|\(..|.)"  # string
    r"|\((..)"  # named glyph \(xx
    r"|\[([^\]]*)\]"  # named glyph \[xx]
    r"|[kmnM](?:\[[^\]]*\]|\(..|.)"  # registers, colours
    r"|[hvwlLoxDNbZXYRHS]'[^']*'"  # motions and other escapes with an argument
    r"|(.)"  # a one-character escape
    r")",
    re.S,
)
_SIMPLE = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "|": "", "^": "", "&": "", "%": "",
           "c": "", "'": "'", "`": "`", ".": ".", "t": "\t", "d": "", "u": "", "p": "", "a": "", "/": "", ",": "",
           "{": "", "}": "", ":": "", "!": "", "r": ""}  # fmt: skip


_CONTROL = re.compile(
    r"[.'][ \t]*(\S*)[ \t]*(.*)"
)  # a control line: its request's name (a tab may follow) and the rest


def looks_like_roff(data: bytes) -> bool:
    """A `.1`-`.9` file that is roff: a request or comment (`.TH`, `.\\"`, `.Dd`) among its first lines. Text files
    that only end that way (`README.1st`, `notes.2`) are read as text."""
    lines = [line for line in data[:4096].split(b"\n")[:20] if line.strip()]
    return any(line.startswith((b".", b"'")) for line in lines[:10])


def unescape(text: str) -> str:
    """roff escapes to plain text: fonts and sizes dropped, glyphs named by \\(xx or \\[xx] mapped."""
    text = text.split('\\"', 1)[0]  # a comment runs to the end of the line

    def one(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name is not None:
            if name.startswith("u") and re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):
                return chr(int(name[1:], 16))
            return _NAMED.get(name, "")
        char = match.group(3)
        return _SIMPLE.get(char, "") if char is not None else ""

    return _ESCAPE.sub(one, text)


def _args(rest: str) -> list[str]:
    """A request's arguments: words, or "quoted strings" that may hold spaces. An escaped space (`\\ `, eqn's
    `.BI big\\  e`) is in its word, not between words."""
    words = re.findall(r'"(?:[^"]|"")*"?|(?:\\.|[^\s\\]|\\$)+', rest)
    return [a[1:-1].replace('""', '"') if a.startswith('"') else a for a in words]


def _joined(lines: list[str]) -> list[tuple[int, int, str]]:
    """roff's input lines as (first, last line number, text): a line that ends in an escaped newline (a lone
    backslash) goes on with the next one, as roff reads it (spufs(7) sets a tag over two lines that way)."""
    out: list[tuple[int, int, str]] = []
    first, parts = None, []
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        if first is None:
            first = number
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 and '\\"' not in line:  # a comment runs to the end of its line, newline not escaped
            parts.append(line[:-1])
            continue
        parts.append(line)
        out.append((first, number, "".join(parts)))
        first, parts = None, []
    if parts:
        out.append((first, len(lines), "".join(parts)))
    return out


def load_man(text: str) -> LoadedDocument:
    """A man page: .SH/.SS (and mdoc .Sh/.Ss) as the heading path under NAME(SECTION); paragraphs of text lines."""
    lines = text.split("\n")
    units: list[Unit] = []
    title = None
    path: list[tuple[int, str]] = []
    block: list[tuple[int, int, str]] = []  # (first, last line number, text) of the paragraph's input lines
    pending_heading: int | None = None  # .SH without arguments: the next text line is the heading
    skip_until: str | None = None  # inside .de ... .. (a macro definition) or .ig: the name of the request that ends it
    # A .TP paragraph's tag (an option) heads its entry, as a definition list's term does: (.RS depth, tag) of the
    # entries the text is inside, outermost first; the next text line after .TP is a tag when `tag_next`.
    entries: list[tuple[int, str]] = []
    depth, tag_next = 0, False

    def flush() -> None:
        if block:
            entry = " > ".join(tag for _, tag in entries) or None
            units.append(Unit("\n".join(t for _, _, t in block), block[0][0], block[-1][1], entry=entry))
            block.clear()

    def close_entries(at: int) -> None:
        while entries and entries[-1][0] >= at:
            entries.pop()

    def heading(level: int, name: str, number: int, last: int) -> None:
        nonlocal path
        flush()
        entries.clear()
        name = " ".join(name.split())
        path = [p for p in path if p[0] < level] + [(level, name)]
        root = [title] if title else []
        units.append(Unit(name, number, last, heading=" > ".join(root + [p[1] for p in path]), boundary=True))

    for number, last, line in _joined(lines):
        if skip_until is not None:  # ".." ends it, or ".  ." (spaces may follow a control character), or ".end"
            ends = _CONTROL.match(line)
            if ends and ends.group(1) == skip_until:
                skip_until = None
            continue
        if line.startswith(('.\\"', "'\\\"", '\\"')) or line in (".", "'"):
            continue
        if (control := _CONTROL.match(line)) and len(line) > 1:
            request, rest = control.groups()
            args = [a.replace("\\\\", "\\") for a in _args(rest)]  # read in copy mode: "\\-" is "\-", a hyphen
            if request in ("de", "de1", "am", "am1", "ig"):  # .de name [end], .ig [end]: "." unless named
                named = args[:1] if request == "ig" else args[1:2]
                skip_until = named[0] if named else "."
                continue
            if request == "TH" or request == "Dt":
                if args:
                    title = f"{unescape(args[0])}({unescape(args[1])})" if len(args) > 1 else unescape(args[0])
                continue
            if request in ("SH", "Sh", "SS", "Ss"):
                level = 1 if request in ("SH", "Sh") else 2
                if args:
                    heading(level, unescape(" ".join(args)), number, last)
                else:
                    pending_heading = level
                continue
            if request in _FONT_ALTERNATING:
                words = [unescape(a) for a in args]
                text = "".join(words)
            elif request in _FONT_JOINED or request in _MDOC_INLINE:
                text = unescape(" ".join(args))
            elif request in ("TP", "IP", "HP") and args and request == "IP":
                flush()
                text = unescape(args[0])
            elif request in _BREAKS:
                flush()
                if request == "TP":
                    close_entries(depth)
                    tag_next = True
                elif request in ("PP", "LP", "P"):
                    close_entries(depth)
                elif request == "RS":
                    depth += 1
                elif request == "RE":
                    depth = max(depth - 1, 0)
                    close_entries(depth + 1)
                continue
            else:  # other requests (.ad, .ds, .so, .TS ...) carry no text of their own
                continue
        else:
            text = unescape(line)
        if pending_heading is not None:
            if text.strip():
                heading(pending_heading, text, number, last)
                pending_heading = None
            continue
        if text.strip():
            if tag_next:  # the .TP paragraph's tag (.TP flushed the paragraph before it): what follows stands under it
                tag_next = False
                if len(entries) < TERM_DEPTH:
                    entries.append((depth, term_heading(text)))
            block.append((number, last, " ".join(text.split())))
        else:
            flush()
    flush()
    propagate_headings(units)
    for unit in units:  # text before the first section still names the page
        if unit.heading is None and title:
            unit.heading = title
    return LoadedDocument("man", units, title=title)
