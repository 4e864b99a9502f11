"""Loaders: each format gives text with the right lines, pages and headings; bad files give one clear reason."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from deepkb.errors import LoadError
from deepkb.loaders import load

SAMPLE = Path(__file__).resolve().parent.parent / "data"
BROKEN = "<a page pypdf fails on>"


def _pdf(pages: list[str], password: str | None = None) -> bytes:
    """A real PDF with one text line per entry, built with pypdf's own writer."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    for text in pages:
        page = writer.add_blank_page(612, 792)
        font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                                 NameObject("/BaseFont"): NameObject("/Helvetica")})  # fmt: skip
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
        )
        ops = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) '" for line in text.split("\n")) + " ET"
        stream = DecodedStreamObject()
        stream.set_data(ops.encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        if text == BROKEN:  # an inline image cut short: pypdf raises on this page's content stream
            stream.set_data(b"BT /F1 12 Tf 72 720 Td (lost) Tj ET BI /W 4 /H 4 /BPC 8 /CS /G ID \x00\x01")
    if password:
        writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_markdown_headings_paths_and_lines():
    doc = load(Path("guide.md"), b"# Guide\n\nIntro line one\nline two\n\n## Keys\n\nRotate keys.\n")
    assert doc.title == "Guide"
    intro = next(u for u in doc.units if u.text.startswith("Intro"))
    assert (intro.line_start, intro.line_end, intro.heading) == (3, 4, "Guide")
    rotate = next(u for u in doc.units if u.text == "Rotate keys.")
    assert (rotate.line_start, rotate.heading) == (8, "Guide > Keys")


def test_markdown_fenced_code_is_not_split_into_headings():
    doc = load(Path("a.md"), b"# Top\n\n```sh\n# a comment, not a heading\n\necho hi\n```\n")
    code = [u for u in doc.units if "```" in u.text]
    assert len(code) == 1 and "echo hi" in code[0].text and code[0].heading == "Top"
    assert (code[0].line_start, code[0].line_end) == (3, 7)


def test_html_strips_scripts_styles_and_keeps_headings_with_source_lines():
    raw = (SAMPLE / "employee-faq.html").read_bytes()
    doc = load(Path("employee-faq.html"), raw)
    text = "\n".join(u.text for u in doc.units)
    assert "toggleAnswer" not in text and "border-collapse" not in text and "nwAnalytics" not in text
    assert doc.title
    source = raw.decode().split("\n")
    for unit in doc.units:
        span = " ".join(source[unit.line_start - 1 : unit.line_end])
        first_word = unit.text.split()[0].split("|")[0]
        assert first_word.replace("&", "&amp;") in span or first_word in span, unit
    assert any(u.heading and " > " in u.heading for u in doc.units)


def test_html5_without_closing_head_keeps_its_body():
    raw = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Kettle guide</title><body><h1>\nDescaling</h1>'
        "<p>Descale the kettle monthly\nwith white vinegar.</p>\n<p>Rinse twice.</p>"
    )
    doc = load(Path("kettle.html"), raw.encode())
    assert doc.title == "Kettle guide"
    assert [(u.text, u.line_start, u.line_end, u.heading) for u in doc.units] == [
        ("Descaling", 2, 2, "Descaling"),
        ("Descale the kettle monthly\nwith white vinegar.", 2, 3, "Descaling"),  # each line keeps its source line
        ("Rinse twice.", 4, 4, "Descaling"),
    ]
    # text right after the head's last element also ends it; what belongs in the head stays out
    doc = load(Path("t.html"), b"<head><title>T</title><style>p {}</style>\n  Plain words here.")
    assert [u.text for u in doc.units] == ["Plain words here."] and doc.units[0].line_start == 2


def test_html_a_broken_note_box_loses_no_text():
    """A hostile or broken page: a note box never closed, a stray close tag, boxes nested 10,000 deep. Headings
    inside a box stay labels; every word is still indexed, and the page loads."""
    raw = (
        '<h1>Guide</h1><div class="note"><h3>Note</h3><p>Unplug first.</p></div></div>'
        '<h2>Cleaning</h2><p>Wipe the lid.</p><div class="warning"><h2>Hot</h2><p>Let it cool.</p>'
        "<h2>Storage</h2><p>Keep it dry.</p>" + '<div class="tip">' * 10_000 + "<p>Deep words.</p>"
    )
    doc = load(Path("kettle.html"), raw.encode())
    text = "\n".join(u.text for u in doc.units)
    for words in ("Unplug first.", "Wipe the lid.", "Let it cool.", "Keep it dry.", "Deep words."):
        assert words in text
    assert [u.heading for u in doc.units if u.boundary] == ["Guide", "Guide > Cleaning"]
    assert next(u for u in doc.units if u.text == "Unplug first.").heading == "Guide"


def test_definition_lists_nested_without_end_give_every_passage_a_short_heading():
    """A definition list's entry stands under its terms ("set > -e"), but a page nesting lists 5,000 deep (never
    closed, then a stray close tag) gives no passage a heading path of 5,000 terms: only the outer lists' terms count."""
    raw = "<h1>Options</h1>" + "<dl><dt>-x</dt><dd><p>Exclude.</p>" * 5_000 + "</dl></dl><p>Deep words.</p>"
    doc = load(Path("options.html"), raw.encode())
    assert "Deep words." in "\n".join(u.text for u in doc.units)
    assert next(u for u in doc.units if u.text == "Exclude.").heading == "Options > -x"
    assert max(len(u.heading.split(" > ")) for u in doc.units) <= 5


def test_man_page_options_nested_without_end_give_every_passage_a_short_heading():
    """A man page's option stands under its tag ("OPTIONS > -x"), but a page whose tags nest deep (1,000 each indented
    past the one before, or 5,000 .RS in roff, never closed) gives no passage a heading path of 1,000 tags."""
    text = "TOOL(1)   General Commands   TOOL(1)\n\nOPTIONS\n" + "".join(
        f"{' ' * (7 + n)}-x{n}\n{' ' * (8 + n)}Exclude.\n\n" for n in range(1_000)
    )
    roff = ".TH TOOL 1\n.SH OPTIONS\n" + ".TP\n\\fB\\-x\\fR\nExclude.\n.RS\n" * 5_000 + "Deep words.\n"
    for name, raw in (("tool.1.txt", text), ("tool.1", roff)):
        doc = load(Path(name), raw.encode())
        first = next(u for u in doc.units if "Exclude." in u.text)
        assert first.heading.endswith("OPTIONS > -x0" if name.endswith(".txt") else "OPTIONS > -x"), name
        assert max(len((u.heading or "").split(" > ")) for u in doc.units) <= 6, name


def test_pdf_page_that_crashes_the_parser_is_reported_as_failed_not_scanned():
    doc = load(Path("p.pdf"), _pdf(["Page one is fine", BROKEN, "Page three is fine", ""]))
    assert doc.failed_pages.keys() == {2} and "PdfReadError" in doc.failed_pages[2]
    assert doc.empty_pages == [4]  # only the page that really has no text
    assert doc.failure_note().startswith("page 2 could not be read (PdfReadError")
    assert {u.page for u in doc.units} == {1, 3}
    with pytest.raises(LoadError, match="unreadable PDF: page 1 could not be read"):
        load(Path("all-broken.pdf"), _pdf([BROKEN]))


def test_pdf_text_per_page_with_page_numbers():
    doc = load(Path("p.pdf"), _pdf(["First page about backups", "Second page\nabout retention"]))
    assert doc.pages == 2 and doc.empty_pages == []
    assert {u.page for u in doc.units} == {1, 2}
    second = [u for u in doc.units if u.page == 2]
    assert "retention" in " ".join(u.text for u in second)  # chunks never span pages: see the one-line-pages test


def test_pdf_pages_without_text_are_flagged():
    doc = load(Path("p.pdf"), _pdf(["has text", "", "more text"]))
    assert doc.empty_pages == [2]


def test_pdf_with_no_text_at_all_is_refused():
    with pytest.raises(LoadError, match="no extractable text"):
        load(Path("scan.pdf"), _pdf(["", ""]))


def test_encrypted_pdf_is_refused_with_reason():
    with pytest.raises(LoadError, match="encrypted PDF"):
        load(Path("secret.pdf"), _pdf(["top secret"], password="hunter2"))


def test_corrupt_pdf_is_refused_with_reason():
    with pytest.raises(LoadError, match="corrupt PDF"):
        load(Path("bad.pdf"), b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage")


def test_non_utf8_text_is_decoded():
    raw = "Café crème brûlée: the naïve façade of a déjà vu résumé.\n".encode("latin-1") * 5
    doc = load(Path("menu.txt"), raw)
    assert "Café crème brûlée" in doc.units[0].text and doc.encoding not in (None, "utf-8")


def test_binary_and_empty_files_are_refused():
    with pytest.raises(LoadError, match="binary"):
        load(Path("blob.dat"), bytes(range(256)) * 4)
    with pytest.raises(LoadError, match="unsupported file type"):
        load(Path("photo.png"), b"\x89PNG\r\n\x1a\n")
    with pytest.raises(LoadError, match="empty"):
        load(Path("empty.txt"), b"")


def test_crlf_line_numbers_match_an_editor():
    doc = load(Path("w.txt"), b"one\r\n\r\ntwo\r\nthree\r\n")
    assert [(u.text, u.line_start, u.line_end) for u in doc.units] == [("one", 1, 1), ("two\nthree", 3, 4)]


def test_pdf_numbered_section_titles_become_heading_paths():
    doc = load(Path("policy.pdf"), (SAMPLE / "backup-retention-policy.pdf").read_bytes())
    kept = next(u for u in doc.units if u.text.startswith("Backups are kept for 35 days"))
    assert kept.page == 3
    assert kept.heading == "Backup and Data Retention Policy > 6. Backups > 6.3 How long backups are kept"
    assert not any(u.heading and "35 days" in u.heading for u in doc.units)


def test_pdf_numbered_titles_come_in_the_order_of_their_numbers():
    """Without bookmarks, a numbered line is a title only in turn after the last one (zlib's crc-doc.pdf: its
    contents entries "1 Definition of CRC 2", a code listing's "1 Crc CrcByte ( Byte v a l u e ) {" and a list's
    "2. Modern CPUs have multiple ALUs ..." were titles, and sections 4.7-4.10 stood under the list item). A title
    the pattern misses leaves a gap the next one may jump ("2.3" after "2.1"; bzip2's manual has no "3." over "3.1.1")."""
    pages = [
        "Contents\n1 Definition of CRC 2\n2 Fast implementation 2\nWe know CRC.",
        "1 Definition of CRC\nA CRC is a remainder.\n2 Fast implementation\nTwo ideas:\n1. Tables speed it up\n"
        "2. Modern CPUs have multiple ALUs and run 3 at once\n2.1 Tables\nThe table holds 256 entries.\n"
        "1 Crc CrcByte ( Byte value ) {\n2.3 Words\nRead a word at a time.",
    ]
    doc = load(Path("crc.pdf"), _pdf(pages))
    heads = [u.heading for u in doc.units if u.boundary]
    assert heads == [
        "1 Definition of CRC", "2 Fast implementation", "2 Fast implementation > 2.1 Tables",
        "2 Fast implementation > 2.3 Words",
    ]  # fmt: skip
    table = next(u for u in doc.units if u.text.startswith("The table holds"))
    assert table.heading == "2 Fast implementation > 2.1 Tables"


def test_pdf_running_footers_are_dropped_and_lines_keep_their_numbers():
    doc = load(Path("policy.pdf"), (SAMPLE / "backup-retention-policy.pdf").read_bytes())
    assert not any("Page 2 of 5" in u.text or "version 2.3 - Page" in u.text for u in doc.units)
    from pypdf import PdfReader

    page2 = PdfReader(str(SAMPLE / "backup-retention-policy.pdf")).pages[1].extract_text().split("\n")
    assert all(page2[u.line_start - 1].strip() == u.text for u in doc.units if u.page == 2)


def test_a_pdf_page_number_alone_on_a_chapter_page_is_not_text():
    """A chapter's first page has its printed number alone (no running head): it is dropped, as running heads are,
    and the lines keep their numbers. A number that cannot be the page's (ahead of the sheet) stays, as does a page
    whose only line is a number. (Bare numbers on a third of the pages are a running foot, dropped as such.)"""
    pages = ["Preface", "1\nChapter one starts here\nIt goes on", "Text\n3", "7\nAhead", "2"]
    pages += [f"More about {word}" for word in "apples pears plums figs dates limes kiwis grapes".split()] * 2
    doc = load(Path("book.pdf"), _pdf(pages))
    assert [(u.page, u.line_start, u.text) for u in doc.units if u.page <= 5] == [
        (1, 1, "Preface"),
        (2, 2, "Chapter one starts here"),
        (2, 3, "It goes on"),
        (3, 1, "Text"),
        (4, 1, "7"),
        (4, 2, "Ahead"),
        (5, 1, "2"),
    ]


def test_a_pdf_running_head_that_changes_with_the_chapter_is_not_text():
    """Bash's reference manual heads each page with its chapter and printed number ("Chapter 3: Basic Shell Features
    6"), so no one head recurs on a third of the pages; each opened a chunk of its page (174 of its 196 pages), and
    16 stood alone before a section title. A head is known by its number keeping one distance behind the sheet's on
    three pages or more; the page's other lines keep their numbers, and a section title still heads what follows."""
    from pypdf import PdfReader

    pages = [
        "Bash Reference Manual",
        "Contents",
        "1 Introduction\nBash is the shell",
        "Chapter 1: Introduction 2\nMore",
    ]
    pages += [f"Chapter 3: Basic Shell Features {n}\nShell text" for n in (3, 4, 5)]
    pages[4] = "Chapter 3: Basic Shell Features 3\n3.1.2 Quoting\nQuoting removes the special meaning"
    pages += [f"Chapter 4: Shell Builtin Commands {n}\nBuiltins" for n in (6, 7, 8)]
    pages += ["Index", "Index, continued"]  # 12 sheets: each chapter's head is on fewer than a third of them
    data = _pdf(pages)
    doc = load(Path("bashref.pdf"), data)
    assert not any(u.text.startswith(("Chapter 3:", "Chapter 4:")) for u in doc.units)
    assert [u.text for u in doc.units if u.page == 4] == ["Chapter 1: Introduction 2", "More"]  # one page: too few
    assert [min(u.line_start for u in doc.units if u.page == n) for n in range(5, 11)] == [2] * 6
    sheets = [page.extract_text().split("\n") for page in PdfReader(io.BytesIO(data)).pages]
    assert all(sheets[u.page - 1][u.line_start - 1].strip() == u.text for u in doc.units)
    quoting = next(u for u in doc.units if u.text == "3.1.2 Quoting")
    assert quoting.boundary and quoting.heading.endswith(" > 3.1.2 Quoting")


def test_a_pdf_line_that_only_looks_like_a_numbered_head_stays():
    """Heads keep one distance behind the sheet: "Step 1", "Step 7", "Step 2" atop three pages do not, and stay text;
    "Guide 4" to "Guide 6" on sheets 5 to 7 do, and go. A head on two pages only is too few to tell."""
    filler = [f"More about {word}" for word in "apples pears plums figs dates limes kiwis grapes melons".split()]
    steps = ["Cover", "Step 1\nMix", "Step 7\nStir", "Step 2\nBake"]
    doc = load(Path("steps.pdf"), _pdf(steps + ["Guide 4\nOne", "Guide 5\nTwo", "Guide 6\nThree"] + filler))
    assert [u.text for u in doc.units if u.page <= 7] == ["Cover", "Step 1", "Mix", "Step 7", "Stir", "Step 2", "Bake",
                                                          "One", "Two", "Three"]  # fmt: skip
    assert [u.line_start for u in doc.units if u.page in (5, 6, 7)] == [2, 2, 2]
    doc = load(Path("two.pdf"), _pdf(steps + ["Guide 4\nOne", "Guide 5\nTwo"] + filler))
    assert [u.text for u in doc.units if u.page in (5, 6)] == ["Guide 4", "One", "Guide 5", "Two"]


def _with_outline(data: bytes, marks: list[tuple[str, int, int]]) -> bytes:
    """The PDF with bookmarks (title, 0-based page, level 1 or 2: a child of the level-1 mark before it)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    parent = None
    for title, page, level in marks:
        item = writer.add_outline_item(title, page, parent=parent if level == 2 else None)
        parent = item if level == 1 else parent
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_pdf_bookmark_whose_title_is_not_on_its_page_takes_its_place_in_the_outline_order():
    """gnuplot's page 303 prints "Part V" over "Bugs" (the bookmark "V Bugs"), the sections "Known limitations" and
    "External libraries", and at its foot "Part VI" over "Index" ("VI Index"). Bookmarks not found on their page
    took effect from its top, so Bugs' text stood under "VI Index" and the index's eight pages under "VI Index >
    External libraries". Now one before the page's first title found heads the page from its top, and one after its
    last heads the pages that follow."""
    pages = [
        "Plotting\nHow to plot",
        "Part V\nBugs\nPlease e-mail bug reports\nKnown limitations\nSome limits\nPart VI\nIndex",
        "apples, 3\npears, 4",
        "Alpha\nText of alpha\nGamma\nText of gamma",
    ]
    marks = [("Plotting", 0, 1), ("V Bugs", 1, 1), ("Known limitations", 1, 2), ("VI Index", 1, 1), ("Alpha", 3, 1),
             ("Beta", 3, 2), ("Gamma", 3, 2)]  # fmt: skip
    doc = load(Path("manual.pdf"), _with_outline(_pdf(pages), marks))
    heading = {u.text: u.heading for u in doc.units}
    assert heading["Please e-mail bug reports"] == "V Bugs"
    assert heading["Some limits"] == "V Bugs > Known limitations"
    assert heading["apples, 3"] == heading["pears, 4"] == "VI Index"
    assert heading["Text of alpha"] == "Alpha"
    assert heading["Text of gamma"] == "Alpha > Gamma"
    assert heading["How to plot"] == "Plotting"


def test_a_pdf_table_of_contents_is_not_text():
    """A contents page (dot leaders and page numbers that never go back, with chapter entries that have no leader) is
    no passage: its entries matched the words of every section they list. It is no empty page either (no OCR). A
    table of figures ending in numbers without leaders stays, and so do leaders whose numbers go back and forth."""
    toc = "\n".join(
        [
            "Table of Contents",
            "1 Introduction . . . . . . . . 1",
            "1.1 What is Bash? . . . . . . . 1",
            "2 Definitions 2",
            "3 Basic Shell Features . . . . 5",
            "3.1 Shell Syntax . . . . . . . 5",
        ]
    )
    table = "\n".join(["Quarter revenue", "North 1200", "South 1350", "East 900", "West 1100", "Total 4550"])
    prices = "\n".join(["Prices", "Coffee . . . . . 4", "Tea . . . . . 3", "Cake . . . . . 5", "Water . . . . . 1"])
    doc = load(Path("manual.pdf"), _pdf(["Bash Reference Manual", toc, "Bash is the shell", table, prices]))
    assert {u.page for u in doc.units} == {1, 3, 4, 5}
    assert doc.empty_pages == []
    assert [u.text for u in doc.units if u.page == 4][1:] == table.split("\n")[1:]
    assert "Coffee . . . . . 4" in [u.text for u in doc.units if u.page == 5]


def test_a_pdf_back_of_book_index_is_not_text():
    """An index page (entries ending in a dot leader and a page of this document, in alphabetical order, under their
    groups' letters) lists words and where they stand: as text, bash's reference manual's nine index pages were 129
    chunks of "export . . . . 50". Not an empty page either. Leaders out of alphabetical order stay, and so do
    alphabetical ones whose numbers are no pages of the document (a price list)."""
    index = "\n".join(["Index", "A", "alias . . . . . . 2", "B", "bg . . . . . . 3", "bind . . . . . . 2",
                       "break . . . . . . 1", "C", "cd . . . . . . 4", "command . . . . . . 4"])  # fmt: skip
    unsorted = "\n".join(["Steps", "Unpack . . . . . . 4", "Configure . . . . . . 2", "Build . . . . . . 3"])
    prices = "\n".join(["Prices", "Apples . . . . . . 340", "Bread . . . . . . 120", "Cheese . . . . . . 560"])
    doc = load(Path("manual.pdf"), _pdf(["The alias builtin", unsorted, "cd changes directory", index, prices]))
    assert {u.page for u in doc.units} == {1, 2, 3, 5}
    assert doc.empty_pages == []
    assert "Configure . . . . . . 2" in [u.text for u in doc.units if u.page == 2]
    assert "Bread . . . . . . 120" in [u.text for u in doc.units if u.page == 5]


def test_hostile_lines_load_in_linear_time(tmp_path):
    """A PDF line of 600,000 characters of dot leader, and an AsciiDoc line "[#aaa…" and a reST line ".. _aaa…" as
    long (and, as long, a table border that never closes, a labeled-list term that never ends in "::", a man page's
    header line, and 200,000 roff lines each going on with the next): the
    contents-page and markup checks once ran a regex that backtracked from every place it could start (one line of
    64,000 characters took 30 s, growing with its square). Loaded in a child process that gets 60 s (they take well under one), each
    long line is text like any other."""
    import subprocess
    import sys

    (tmp_path / "dots.pdf").write_bytes(_pdf(["Contents " + ". " * 300_000 + "end", "1 Introduction . . . . . 1"]))
    (tmp_path / "anchor.adoc").write_text("== Title\n\n[#" + "a" * 600_000 + "\n\nSome text.\n")
    (tmp_path / "label.rst").write_text("Title\n=====\n\n.. _" + "a" * 600_000 + "\n\nSome text.\n")
    (tmp_path / "table.rst").write_text("Title\n=====\n\n" + "= " * 300_000 + "x\n\nSome text.\n")
    (tmp_path / "terms.adoc").write_text("== Title\n\n" + "a:" * 300_000 + "\n\nSome text.\n")
    # roff lines that all go on with the next (one line of 200,003 characters), and a man page header of 600,000
    (tmp_path / "cont.1").write_text(".TH T 1\n.SH NAME\n" + "a\\\n" * 200_000 + "end\n")
    (tmp_path / "head.1.txt").write_text("T(1)" + "x" * 600_000 + "T(1)\n\nNAME\n       t - a tool\n")
    script = (
        "import sys; from pathlib import Path; from deepkb.loaders import load\n"
        "for p in map(Path, sys.argv[1:]):\n"
        "    print(p.name, [len(u.text) for u in load(p, p.read_bytes()).units])\n"
    )
    names = ("dots.pdf", "anchor.adoc", "label.rst", "table.rst", "terms.adoc", "cont.1", "head.1.txt")
    paths = [str(tmp_path / name) for name in names]
    run = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:3] == [
        "dots.pdf [600012, 26]",
        "anchor.adoc [8, 600002, 10]",
        "label.rst [5, 600004, 10]",
    ]
    assert run.stdout.split("\n")[3:5] == ["table.rst [5, 600001, 10]", "terms.adoc [8, 600000, 10]"]
    assert run.stdout.split("\n")[5:7] == ["cont.1 [4, 200003]", "head.1.txt [4, 17]"]  # the header is no text


def test_a_pdf_page_edge_of_odd_digits_is_text_not_a_crash():
    """What only looks like a page number stays text: a superscript digit ("²", a digit to str.isdigit that int()
    refuses) and a number of 5,000 digits (past int()'s limit) at a page's top."""
    from deepkb.loaders.pdf import _without_page_number

    doc = load(Path("odd.pdf"), _pdf(["Preface", "9" * 5000 + "\nA long number, above"]))
    assert [(u.page, u.line_start) for u in doc.units] == [(1, 1), (2, 1), (2, 2)]
    # A page of this test's Type 1 font cannot show "²": the loader's edge check, on the lines pypdf would give.
    assert _without_page_number([(1, "²"), (2, "Squared, above")], 3) == [(1, "²"), (2, "Squared, above")]


def test_a_pdf_of_one_line_pages_is_chunked_page_by_page(embedder):
    """A page's first line is text, not a heading: each one-line page is its own chunk, cited to its page."""
    from deepkb.ingest.chunker import chunk_units

    doc = load(Path("slides.pdf"), _pdf(["Quokkas live on Rottnest Island", "The ferry leaves Fremantle at nine"]))
    chunks = chunk_units(doc.units, embedder.count_tokens, embedder.max_tokens)
    assert [(c.text, c.page, c.line_start) for c in chunks] == [
        ("Quokkas live on Rottnest Island", 1, 1),
        ("The ferry leaves Fremantle at nine", 2, 1),
    ]
