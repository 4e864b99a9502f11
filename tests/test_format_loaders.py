"""The new loaders called directly on real documents (deepkb.loaders.office, .epub, .man): what a citation will say."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import pytest

from deepkb.errors import LoadError
from deepkb.loaders.epub import load_epub
from deepkb.loaders.man import load_man, looks_like_roff
from deepkb.loaders.office import load_docx, load_odt

FIXTURES = Path(__file__).parent / "data" / "formats"


@pytest.mark.parametrize("load, name", [(load_docx, "copyright-format.docx"), (load_odt, "copyright-format.odt")])
def test_word_and_odt_headings_are_the_documents_section_titles(load, name):
    doc = load((FIXTURES / name).read_bytes())
    headings = {u.heading.split(" > ")[-1] for u in doc.units if u.heading}
    assert any("Upstream-Contact" in h or "Header" in h or h[:1].isdigit() for h in headings), sorted(headings)[:10]
    assert all(u.line_start >= 1 and u.line_end >= u.line_start for u in doc.units)  # paragraph numbers, from 1


def test_epub_pages_are_chapters_in_reading_order():
    doc = load_epub((FIXTURES / "copyright-format.epub").read_bytes())
    pages = [u.page for u in doc.units]
    assert pages == sorted(pages) and pages[0] >= 1  # chapter 1 first, never backwards


def test_a_zip_that_is_not_an_epub_is_one_clear_line():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("mimetype", "application/zip")
    with pytest.raises(LoadError, match="not an EPUB"):
        load_epub(buffer.getvalue())


def test_a_man_page_sections_are_headings_under_its_name():
    data = gzip.decompress((FIXTURES / "ls.1.gz").read_bytes())
    assert looks_like_roff(data) and not looks_like_roff(b"Read me first.\n\nThen the rest.\n")
    doc = load_man(data.decode())
    assert {u.heading for u in doc.units} >= {"LS(1) > NAME", "LS(1) > DESCRIPTION"}
    assert not any("\\f" in u.text for u in doc.units)  # roff font escapes are gone
