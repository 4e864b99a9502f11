"""EPUB e-books: the chapters in reading order (the OPF spine), each read by the HTML loader.

A citation's page is the chapter's number in reading order and its lines are the lines of that chapter's XHTML
file (unzip the book and open the file at the line, or go to the chapter in a reader). Headings carry the book's
title and the chapter's own headings.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote

from deepkb.errors import LoadError
from deepkb.loaders.archive import SafeZip, parse_xml
from deepkb.loaders.base import LoadedDocument, Unit
from deepkb.loaders.html import load_html
from deepkb.loaders.text import decode_text

CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
OPF = "{http://www.idpf.org/2007/opf}"
DC = "{http://purl.org/dc/elements/1.1/}"
HTML_TYPES = {"application/xhtml+xml", "text/html", "application/x-dtbook+xml"}


def load_epub(data: bytes) -> LoadedDocument:
    """An EPUB's chapters in spine order: page = chapter number, lines of the chapter's XHTML."""
    book = SafeZip(data, "EPUB")
    if not book.has("META-INF/container.xml"):
        raise LoadError("not an EPUB (META-INF/container.xml is missing)")
    container = parse_xml(book.read("META-INF/container.xml"), "EPUB")
    rootfile = container.find(f".//{CONTAINER}rootfile")
    opf_path = rootfile.get("full-path") if rootfile is not None else None
    if not opf_path or not book.has(opf_path):
        raise LoadError("corrupt EPUB (its package file is missing)")
    opf = parse_xml(book.read(opf_path), "EPUB")
    title_node = opf.find(f".//{DC}title")
    title = " ".join(title_node.text.split()) if title_node is not None and title_node.text else None
    base = posixpath.dirname(opf_path)
    manifest = {
        item.get("id"): (
            posixpath.normpath(posixpath.join(base, unquote(item.get("href", "")))),
            item.get("media-type"),
        )
        for item in opf.iter(f"{OPF}item")
    }
    units: list[Unit] = []
    chapters = 0
    failed: dict[int, str] = {}
    empty: list[int] = []
    for itemref in opf.iter(f"{OPF}itemref"):
        href, media = manifest.get(itemref.get("idref"), (None, None))
        if href is None or media not in HTML_TYPES:
            continue
        chapters += 1
        try:
            text, _ = decode_text(book.read(href))
        except LoadError as exc:
            if str(exc).startswith("refused"):  # a bomb refuses the whole book, not one chapter
                raise
            failed[chapters] = str(exc)
            continue
        chapter = load_html(text)
        if not chapter.units:
            empty.append(chapters)
        for unit in chapter.units:
            unit.page = chapters
            if title:
                unit.heading = f"{title} > {unit.heading}" if unit.heading else title
            units.append(unit)  # the chunker cuts where the page (chapter) changes
    if not chapters:
        raise LoadError("corrupt EPUB (no chapters in its spine)")
    return LoadedDocument(
        "epub", units, title=title, pages=chapters, empty_pages=empty, failed_pages=failed, part_name="chapter"
    )
