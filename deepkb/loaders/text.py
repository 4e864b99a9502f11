"""Plain text, source code and Markdown: encoding detected, paragraphs with their lines, headings as paths."""

from __future__ import annotations

import re

from deepkb.errors import LoadError
from deepkb.loaders.base import LoadedDocument, Unit, normalize_newlines, paragraphs, propagate_headings


def decode_text(data: bytes) -> tuple[str, str]:
    """Detect the encoding (BOM, UTF-8, then charset detection); refuse binary data."""
    for bom, enc in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            try:
                return normalize_newlines(data.decode(enc)), enc
            except UnicodeDecodeError as exc:
                raise LoadError(f"undecodable text ({enc} BOM but {exc.reason})") from exc
    head = data[:8192]
    if b"\x00" in head:
        raise LoadError("binary file")
    try:
        return normalize_newlines(data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    best = matches[0] if matches else None
    # Single-byte code pages are often equally plausible; Windows-1252 is by far the most common of them.
    western = next((m for m in matches if m.encoding == "cp1252"), None)
    if best is not None and western is not None and western.chaos <= best.chaos + 0.15:
        best = western
    if best is None or _control_ratio(str(best)) > 0.05:
        raise LoadError("binary file (no text encoding fits)")
    return normalize_newlines(str(best)), best.encoding


def _control_ratio(text: str) -> float:
    sample = text[:8192]
    bad = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f")
    return bad / max(1, len(sample))


_ASCIIDOC = re.compile(r"^(={1,6})\s+(\S.*?)\s*=*\s*$")
_ADORNMENT = re.compile(r"^([=\-~^\"'*+#_:.`])\1{2,}\s*$")
_MAN_HEADER = re.compile(r"^\S+\(\w+\)\s.*\S+\(\w+\)\s*$")
_MAN_SECTION = re.compile(r"^[A-Z][A-Z0-9 ,/()&'-]{1,40}$")
_MAN_SUBSECTION = re.compile(r"^ {3}(\S.{0,70})$")
_MAN_TERM = re.compile(r"^ {7}(\S.{0,70})$")
_ANCHOR = re.compile(r"^\[\[[^\]]*\]\]\s*$|^\[[a-z]+\]\s*$")
_DELIMITER = re.compile(r"^(-{4,}|\.{4,}|={4,}|\*{4,}|_{4,}|\+{4,}|/{4,})\s*$")  # AsciiDoc listing, example, ... blocks
_ROLE = re.compile(r":[\w-]+:`([^`]*)`|`+([^`]*)`+")


def load_plain(text: str) -> LoadedDocument:
    """Plain text: paragraphs under the headings of AsciiDoc (`== Title`), reST or setext (underlined, maybe
    overlined) and rendered man pages (`OPTIONS`, an indented subsection), each heading a boundary and a path."""
    lines = text.split("\n")
    headings = _man_headings(lines) if lines and _MAN_HEADER.match(lines[0]) else _markup_headings(lines)
    units: list[Unit] = []
    path: list[tuple[int, str]] = []
    title = None
    start = 0
    for i in sorted(headings):
        level, name, span = headings[i]
        units.extend(paragraphs(lines[start:i], start + 1))
        path = [p for p in path if p[0] < level] + [(level, name)]
        title = title or name
        units.append(Unit(name, i + 1, i + span, heading=" > ".join(p[1] for p in path), boundary=True))
        start = i + span
    units.extend(paragraphs(lines[start:], start + 1))
    propagate_headings(units)
    return LoadedDocument("text", units, title=title)


def _markup_headings(lines: list[str]) -> dict[int, tuple[int, str, int]]:
    """line index -> (level, title, lines it spans): AsciiDoc `=` titles and underlined (reST, setext) titles."""
    found: dict[int, tuple[int, str, int]] = {}
    styles: list[tuple[str, bool]] = []  # reST: a title's level is the order its adornment style first appears
    block: str | None = None  # the delimiter of the AsciiDoc block we are in: no titles inside
    i = 0
    while i < len(lines):
        line = lines[i]
        before = lines[i - 1] if i else ""
        fresh = not before.strip() or _ANCHOR.match(before)
        if block is not None:
            block = None if line.rstrip() == block else block
            i += 1
            continue
        if _DELIMITER.match(line) and fresh and i + 1 < len(lines) and lines[i + 1].strip():
            if line.rstrip() in (ln.rstrip() for ln in lines[i + 1 :]):  # a block closes it (else a reST transition)
                block = line.rstrip()
                i += 1
                continue
        m = _ASCIIDOC.match(line)
        if m and fresh and len(line) < 120:
            found[i] = (len(m.group(1)), m.group(2), 1)
            i += 1
            continue
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        under = _ADORNMENT.match(nxt)
        name = line.strip()
        if (
            under
            and name
            and not _ADORNMENT.match(line)
            and len(name) < 100
            and abs(len(nxt.rstrip()) - len(name)) <= 2
        ):
            over = i >= 1 and lines[i - 1].strip() and lines[i - 1].rstrip() == nxt.rstrip()
            above = lines[i - 2] if over and i >= 2 else before
            if over or not above.strip():
                style = (under.group(1), bool(over))
                if style not in styles:
                    styles.append(style)
                first = i - 1 if over else i
                found[first] = (
                    styles.index(style) + 1,
                    _ROLE.sub(lambda r: r.group(1) or r.group(2), name),
                    3 if over else 2,
                )
                i += 2
                continue
        i += 1
    return found


def _man_headings(lines: list[str]) -> dict[int, tuple[int, str, int]]:
    """A rendered man page: its name (`rsync(1)`), capitalised sections, 3-space indented subsections, and the
    terms of its definition lists (an option at 7 spaces whose description is indented further)."""
    found: dict[int, tuple[int, str, int]] = {0: (1, lines[0].split()[0], 1)}
    for i, line in enumerate(lines[1:], start=1):
        after = lines[i + 1] if i + 1 < len(lines) else ""
        if _MAN_SECTION.match(line):
            found[i] = (2, line.strip(), 1)
        elif _MAN_SUBSECTION.match(line) and after.startswith("       "):
            found[i] = (3, line.strip(), 1)
        elif _MAN_TERM.match(line) and after.startswith("        ") and after.strip():
            found[i] = (4, line.strip(), 1)  # a definition list's term: an option (`--partial`, `-mmin n`)
    return found


_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def load_markdown(text: str) -> LoadedDocument:
    """Markdown: ATX headings start sections and build the heading path; fenced code stays whole."""
    lines = text.split("\n")
    units: list[Unit] = []
    path: list[tuple[int, str]] = []
    title = None
    buf_start: int | None = None
    in_fence = False

    def flush(end: int) -> None:
        nonlocal buf_start
        if buf_start is not None:
            units.extend(paragraphs(lines[buf_start:end], buf_start + 1))
            buf_start = None

    for i, line in enumerate(lines):
        if _FENCE.match(line):
            if not in_fence:
                flush(i)
                in_fence, fence_start = True, i
            else:
                in_fence = False
                units.append(Unit("\n".join(lines[fence_start : i + 1]), fence_start + 1, i + 1))
            continue
        if in_fence:
            continue
        m = _ATX.match(line)
        if m:
            flush(i)
            level, name = len(m.group(1)), m.group(2)
            path = [p for p in path if p[0] < level] + [(level, name)]
            title = title or (name if level == 1 else None)
            units.append(Unit(line, i + 1, i + 1, heading=" > ".join(p[1] for p in path), boundary=True))
        elif buf_start is None:
            buf_start = i
    if in_fence:  # unterminated fence: keep its text as plain paragraphs
        units.extend(paragraphs(lines[fence_start:], fence_start + 1))
    flush(len(lines))
    units.sort(key=lambda u: u.line_start)
    propagate_headings(units)
    return LoadedDocument("markdown", units, title=title)
