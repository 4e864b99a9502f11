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


def test_a_man_page_that_asciidoctor_made_is_read_past_its_macro_definitions():
    """Asciidoctor's man pages (util-linux's, perf's) define macros inside `.if \\n[.g] \\{\\` and end each with
    `.  .` (a control character, spaces, the "." request), not `..`: the loader skipped the rest of the page as a
    macro's body and found "no text" (32 of 3,000 pages sampled from this machine's /usr/share/man, 1 now: a `.so`
    link)."""
    doc = load_man(gzip.decompress((FIXTURES / "ldattach.8.gz").read_bytes()).decode())
    headings = {u.heading for u in doc.units}
    assert {"LDATTACH(8) > NAME", "LDATTACH(8) > DESCRIPTION", "LDATTACH(8) > OPTIONS"} <= headings
    assert any(u.text.startswith("The ldattach daemon opens the specified device") for u in doc.units)
    assert not any("ad l" in u.text or "LINKSTYLE" in u.text for u in doc.units)  # the macros stay out


def test_roff_escaped_newlines_and_spaces_are_read_as_roff_reads_them():
    """A line ending in a lone backslash goes on with the next (spufs(7) sets a tag over two lines so; 259 of 3,000
    pages sampled have such lines); an escaped space stays in its argument (eqn(1): `.BI big\\  e`, "big e"); a
    macro's arguments are read in copy mode (xargs(1): `.B "\\-\\-show\\\\-limits"`, "--show-limits"). Before, the
    tags were "/npc, /decr, \\" (the next line a paragraph of its own, quotes and all), "big\\e" and
    "--show\\-limits". A request's name ends at a tab too (tc-cake(8): `.SS<tab>Manual Overhead Specification`)."""
    roff = "\n".join([
        ".TH SPUFS 7", ".SH FILES", ".TP",
        '.IR /npc ", " /decr ", " \\', '/srr0 ", " /lslr', "Internal registers of the SPU.",
        ".TP", ".BI big\\  e", "Enlarges the expression it modifies.",
        ".TP", '.B "\\-\\-show\\\\-limits"', "Display the limits.",
        "Text that goes \\", "on.", ".SS\tManual Overhead Specification", "Set it by hand.",
    ])  # fmt: skip
    units = load_man(roff).units
    tags = [u.heading.split(" > ")[-1] for u in units if u.entry]
    assert tags == ["/npc, /decr, /srr0, /lslr", "big e", "--show-limits"]
    first = next(u for u in units if u.entry)
    assert (first.line_start, first.line_end) == (4, 6) and first.text.startswith("/npc, /decr, /srr0, /lslr\nInternal")
    last = next(u for u in units if u.text.endswith("goes on."))
    assert last.line_end == 14
    assert units[-1].heading == "SPUFS(7) > FILES > Manual Overhead Specification"  # a tab after .SS (tc-cake(8))
