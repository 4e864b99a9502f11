"""Word (.docx) and OpenDocument (.odt) text: paragraphs with their heading paths, read with the standard library.

A citation's "line" in these files is the paragraph number: every paragraph of the body counts (empty ones and
those in tables too), in document order, as Word's and LibreOffice's navigators walk them, so `L12-14` names the
12th to the 14th paragraph. A paragraph with manual line breaks is one position holding several lines.
"""

from __future__ import annotations

import re

from deepkb.errors import LoadError
from deepkb.loaders.archive import SafeZip, parse_xml
from deepkb.loaders.base import LoadedDocument, Unit, propagate_headings

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
DC = "{http://purl.org/dc/elements/1.1/}"
TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"


def _units(paragraphs: list[tuple[str, int | None]]) -> list[Unit]:
    """(text, heading level or None) per paragraph, numbered from 1 -> units with heading paths."""
    units: list[Unit] = []
    path: list[tuple[int, str]] = []
    for number, (text, level) in enumerate(paragraphs, start=1):
        text = "\n".join(" ".join(line.split()) for line in text.split("\n")).strip()
        if not text:
            continue
        if level is not None:
            title = " ".join(text.split())
            path = [p for p in path if p[0] < level] + [(level, title)]
            units.append(Unit(text, number, number, heading=" > ".join(p[1] for p in path), boundary=True))
        else:
            units.append(Unit(text, number, number))
    propagate_headings(units)
    return units


def _title(root) -> str | None:
    if root is None:
        return None
    found = root.find(f".//{DC}title")
    return " ".join(found.text.split()) or None if found is not None and found.text else None


# .docx -------------------------------------------------------------------------------------------------------
def load_docx(data: bytes) -> LoadedDocument:
    """A Word document's body paragraphs; Heading 1-9 and Title styles (by name, so localized ids work) head sections."""
    archive = SafeZip(data, "Word document")
    if not archive.has("word/document.xml"):
        raise LoadError("not a Word document (word/document.xml is missing)")
    root = parse_xml(archive.read("word/document.xml"), "Word document")
    levels = _docx_heading_styles(archive)
    body = root.find(f"{W}body")
    if body is None:
        raise LoadError("corrupt Word document (no body)")
    paragraphs: list[tuple[str, int | None]] = []
    for p in body.iter(f"{W}p"):
        ppr = p.find(f"{W}pPr")
        level = None
        if ppr is not None:
            style = ppr.find(f"{W}pStyle")
            if style is not None:
                level = levels.get(style.get(f"{W}val", ""))
            outline = ppr.find(f"{W}outlineLvl")
            if level is None and outline is not None and outline.get(f"{W}val", "").isdigit():
                level = int(outline.get(f"{W}val")) + 1
        paragraphs.append(("".join(_docx_text(p)), level))
    core = parse_xml(archive.read("docProps/core.xml"), "Word document") if archive.has("docProps/core.xml") else None
    return LoadedDocument("docx", _units(paragraphs), title=_title(core))


def _docx_heading_styles(archive: SafeZip) -> dict[str, int]:
    """Style id -> heading level: `heading N` and `Title` by their (English, built-in) names, or an outline level."""
    levels = {f"Heading{n}": n for n in range(1, 10)} | {"Title": 1}
    if not archive.has("word/styles.xml"):
        return levels
    for style in parse_xml(archive.read("word/styles.xml"), "Word document").iter(f"{W}style"):
        sid = style.get(f"{W}styleId", "")
        name = style.find(f"{W}name")
        label = (name.get(f"{W}val", "") if name is not None else "").lower()
        match = re.fullmatch(r"heading ([1-9])", label)
        outline = style.find(f"{W}pPr/{W}outlineLvl")
        if match:
            levels[sid] = int(match.group(1))
        elif label == "title":
            levels[sid] = 1
        elif outline is not None and outline.get(f"{W}val", "").isdigit() and int(outline.get(f"{W}val")) < 9:
            levels[sid] = int(outline.get(f"{W}val")) + 1
    return levels


def _docx_text(node) -> list[str]:
    """A paragraph's text: runs, tabs and breaks; a paragraph nested inside (a text box) is its own paragraph."""
    out: list[str] = []
    for child in node:
        tag = child.tag
        if tag == f"{W}p":
            continue
        if tag == f"{W}t":
            out.append(child.text or "")
        elif tag == f"{W}tab":
            out.append("\t")
        elif tag in (f"{W}br", f"{W}cr"):
            out.append("\n")
        elif tag in (f"{W}instrText", f"{W}delText"):  # field codes and deleted text are not what the reader sees
            continue
        else:
            out += _docx_text(child)
    return out


# .odt --------------------------------------------------------------------------------------------------------
def load_odt(data: bytes) -> LoadedDocument:
    """An OpenDocument text's paragraphs and headings (text:h with its outline level)."""
    archive = SafeZip(data, "OpenDocument text")
    if not archive.has("content.xml"):
        raise LoadError("not an OpenDocument text (content.xml is missing)")
    root = parse_xml(archive.read("content.xml"), "OpenDocument text")
    body = root.find(f"{OFFICE}body/{OFFICE}text")
    if body is None:
        raise LoadError("not an OpenDocument text (no office:text body)")
    paragraphs: list[tuple[str, int | None]] = []
    for node in body.iter():
        if node.tag == f"{TEXT}h":
            raw = node.get(f"{TEXT}outline-level", "1")
            paragraphs.append(("".join(_odt_text(node)), int(raw) if raw.isdigit() and raw != "0" else 1))
        elif node.tag == f"{TEXT}p":
            paragraphs.append(("".join(_odt_text(node)), None))
    meta = parse_xml(archive.read("meta.xml"), "OpenDocument text") if archive.has("meta.xml") else None
    return LoadedDocument("odt", _units(paragraphs), title=_title(meta))


def _odt_text(node) -> list[str]:
    out = [node.text or ""]
    for child in node:
        tag = child.tag
        if tag == f"{TEXT}s":
            count = child.get(f"{TEXT}c", "1")
            out.append(" " * min(int(count) if count.isdigit() else 1, 100))
        elif tag == f"{TEXT}tab":
            out.append("\t")
        elif tag == f"{TEXT}line-break":
            out.append("\n")
        elif tag in (f"{TEXT}note", f"{TEXT}p", f"{TEXT}h"):  # a note's paragraphs are counted as their own
            pass
        else:
            out += _odt_text(child)
        out.append(child.tail or "")
    return out
