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


def load_plain(text: str) -> LoadedDocument:
    """Plain text and source code: paragraphs, with setext-style (underlined) headings recognised."""
    lines = text.split("\n")
    units = paragraphs(lines)
    for unit in units:
        block = unit.text.split("\n")
        if len(block) >= 2 and re.fullmatch(r"(=+|-+)\s*", block[1]) and len(block[0].strip()) < 100:
            unit.boundary = True
            unit.heading = block[0].strip()
    propagate_headings(units)
    return LoadedDocument("text", units)


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
