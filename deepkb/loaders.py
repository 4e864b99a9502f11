"""Loaders: a file's bytes become text units that remember their page, lines and heading path."""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from deepkb.errors import LoadError

MARKDOWN_EXT = {".md", ".markdown", ".mdx"}
HTML_EXT = {".html", ".htm", ".xhtml"}
PDF_EXT = {".pdf"}
# Known binary formats: reported as unsupported without reading them.
BINARY_EXT = {
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ico", ".heic", ".svgz",
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar", ".jar", ".whl", ".deb", ".rpm",
    ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".ods", ".odp", ".epub",
    ".exe", ".dll", ".so", ".dylib", ".o", ".a", ".bin", ".class", ".pyc", ".wasm",
    ".mp3", ".mp4", ".m4a", ".wav", ".flac", ".ogg", ".avi", ".mov", ".mkv", ".webm",
    ".sqlite", ".db", ".gguf", ".safetensors", ".pt", ".npy", ".npz", ".pkl", ".parquet",
    ".ttf", ".otf", ".woff", ".woff2", ".iso", ".dmg",
}  # fmt: skip
MAX_TEXT_BYTES = 20 * 1024 * 1024
MAX_PDF_BYTES = 512 * 1024 * 1024

logging.getLogger("pypdf").setLevel(logging.ERROR)


@dataclass
class Unit:
    """A paragraph-sized piece of a document and where it stands in the source."""

    text: str
    line_start: int  # 1-based, inclusive: lines of the file, or of the PDF page's extracted text
    line_end: int
    page: int | None = None
    heading: str | None = None  # heading path, "Title > Section"
    boundary: bool = False  # a section or page starts here: no chunk spans across it


@dataclass
class LoadedDocument:
    """What a loader returns: the units plus facts about the file worth recording."""

    kind: str  # markdown | text | html | pdf
    units: list[Unit]
    title: str | None = None
    encoding: str | None = None
    pages: int | None = None
    empty_pages: list[int] = field(default_factory=list)  # PDF pages with no extractable text


def load(path: Path, data: bytes) -> LoadedDocument:
    """Turn one file's bytes into units; raises LoadError with the reason when it cannot."""
    suffix = path.suffix.lower()
    if suffix in BINARY_EXT:
        raise LoadError(f"unsupported file type ({suffix})")
    if not data:
        raise LoadError("empty file")
    if suffix in PDF_EXT:
        if len(data) > MAX_PDF_BYTES:
            raise LoadError(f"PDF larger than {MAX_PDF_BYTES >> 20} MiB")
        doc = load_pdf(data)
    else:
        if len(data) > MAX_TEXT_BYTES:
            raise LoadError(f"text file larger than {MAX_TEXT_BYTES >> 20} MiB")
        text, encoding = decode_text(data)
        if suffix in HTML_EXT:
            doc = load_html(text)
        elif suffix in MARKDOWN_EXT:
            doc = load_markdown(text)
        else:
            doc = load_plain(text)
        doc.encoding = encoding
    if not any(u.text.strip() for u in doc.units):
        raise LoadError("no extractable text (a scanned PDF needs OCR first)" if doc.kind == "pdf" else "no text")
    return doc


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


def normalize_newlines(text: str) -> str:
    """CRLF and CR become LF, so line numbers match what an editor shows."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _paragraphs(lines: list[str], first_line: int = 1, page: int | None = None) -> list[Unit]:
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


def load_plain(text: str) -> LoadedDocument:
    """Plain text and source code: paragraphs, with setext-style (underlined) headings recognised."""
    lines = text.split("\n")
    units = _paragraphs(lines)
    for unit in units:
        block = unit.text.split("\n")
        if len(block) >= 2 and re.fullmatch(r"(=+|-+)\s*", block[1]) and len(block[0].strip()) < 100:
            unit.boundary = True
            unit.heading = block[0].strip()
    _propagate_headings(units)
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
            units.extend(_paragraphs(lines[buf_start:end], buf_start + 1))
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
        units.extend(_paragraphs(lines[fence_start:], fence_start + 1))
    flush(len(lines))
    units.sort(key=lambda u: u.line_start)
    _propagate_headings(units)
    return LoadedDocument("markdown", units, title=title)


def _propagate_headings(units: list[Unit]) -> None:
    current = None
    for unit in units:
        if unit.boundary:
            current = unit.heading
        else:
            unit.heading = current


_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "head", "iframe", "object", "nav"}
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

    def handle_starttag(self, tag: str, attrs: list) -> None:
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
    _propagate_headings(parser.units)
    title = re.sub(r"\s+", " ", parser.title).strip() or None
    return LoadedDocument("html", parser.units, title=title)


def load_pdf(data: bytes) -> LoadedDocument:
    """PDF through pypdf: text per page; pages without text are flagged; encrypted or corrupt files refused."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except Exception as exc:  # pypdf raises several types for unsupported crypto
                raise LoadError(f"encrypted PDF ({exc})") from exc
            if not ok:
                raise LoadError("encrypted PDF (a password is required)")
        pages = list(reader.pages)
    except LoadError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError, RecursionError) as exc:
        raise LoadError(f"corrupt PDF ({type(exc).__name__}: {exc})") from exc
    outline = _pdf_outline(reader)
    units: list[Unit] = []
    empty: list[int] = []
    heading = None
    for number, page in enumerate(pages, start=1):
        heading = outline.get(number, heading)
        try:
            text = normalize_newlines(page.extract_text() or "")
        except Exception:  # one unreadable page must not lose the rest of the document
            text = ""
        if not text.strip():
            empty.append(number)
            continue
        page_units = [Unit(line.strip(), i, i, number, heading) for i, line in enumerate(text.split("\n"), 1)]
        page_units = [u for u in page_units if u.text]
        page_units[0].boundary = True
        units.extend(page_units)
    title = None
    try:
        title = (reader.metadata or {}).get("/Title") or None
    except Exception:
        pass
    return LoadedDocument("pdf", units, title=str(title) if title else None, pages=len(pages), empty_pages=empty)


def _pdf_outline(reader) -> dict[int, str]:
    """First page number of each top-level bookmark, so PDF chunks get a heading path."""
    result: dict[int, str] = {}
    try:
        for item in reader.outline:
            if isinstance(item, list):
                continue
            number = reader.get_destination_page_number(item) + 1
            result.setdefault(number, str(item.title))
    except Exception:
        return {}
    return result
