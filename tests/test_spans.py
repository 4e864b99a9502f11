"""Evidence on real manuals: every chunk and every excerpt stands exactly on the lines (and page) it cites, heading
paths are the document's own section titles, and an HTML page's navigation is not indexed.

The documents are excerpts of Debian's doc packages in tests/data/manuals (licenses in its README.md)."""

from __future__ import annotations

import gzip
import html
import re
import shutil
from pathlib import Path

import pytest
from spancheck import violation

from deepkb.ingest.chunker import chunk_units
from deepkb.loaders import load
from deepkb.loaders.man import load_man
from deepkb.retrieval.excerpt import segments, window
from deepkb.retrieval.search import Hit
from deepkb.types import MAX_GAP

FIXTURES = Path(__file__).resolve().parent / "data" / "manuals"
DOCS = [
    "git-user-manual.txt", "git-rebase.txt", "git-rebase.html", "python-argparse.rst.txt", "python-argparse.html",
    "tar.1.txt", "sqlite-lang_createindex.html", "sqlite-pragma.html", "sqlite-lang_corefunc.html", "pg-sql-vacuum.html", "bash-excerpt.html", "rsync-NEWS.md",
    "bashref-p100-101.pdf", "systemd-machine-id-setup.1.txt", "xmlsec-README.md",
]  # fmt: skip


@pytest.fixture(scope="module")
def manuals(tmp_path_factory) -> Path:
    """The fixtures as a user has them: decompressed, under their own names."""
    folder = tmp_path_factory.mktemp("manuals")
    for source in FIXTURES.iterdir():
        if source.suffix == ".gz":
            (folder / source.stem).write_bytes(gzip.decompress(source.read_bytes()))
        elif source.name != "README.md":
            shutil.copyfile(source, folder / source.name)
    return folder


def _chunks(embedder, path: Path, target: int = 200):
    doc = load(path, path.read_bytes())
    return chunk_units(doc.units, embedder.count_tokens, embedder.max_tokens, target_tokens=target, overlap_tokens=32)


@pytest.mark.parametrize("name", DOCS)
def test_every_chunk_stands_exactly_on_its_span(manuals, embedder, name):
    path = manuals / name
    bad = []
    for target in (200, 48):  # the default size, and a small one that splits long paragraphs and lines
        for chunk in _chunks(embedder, path, target):
            why = violation(str(path), chunk.page, chunk.line_start, chunk.line_end, chunk.text)
            if why:
                bad.append(f"{name} p.{chunk.page} L{chunk.line_start}-{chunk.line_end}: {why}")
    assert not bad, f"{len(bad)} chunks off their spans:\n" + "\n".join(bad[:10])


def test_every_excerpt_stands_exactly_on_its_span(manuals, embedder):
    """What `deepkb ask` sends the model: windows of a chunk's sentences, each cited with its own lines."""
    bad, checked = [], 0
    for name in DOCS:
        path = manuals / name
        for n, chunk in enumerate(_chunks(embedder, path)):
            hit = Hit(n, str(path), chunk.page, chunk.line_start, chunk.line_end, chunk.heading, 0.0, chunk.text)
            segs = segments(hit)
            assert segs, f"{name} L{chunk.line_start}-{chunk.line_end}: lines not matched again"
            windows = [(k, k) for k in range(len(segs))] + [(k, min(k + 2, len(segs) - 1)) for k in range(len(segs))]
            for lo, hi in windows:
                part = window(hit, segs, lo, hi)
                checked += 1
                why = violation(str(path), part.page, part.line_start, part.line_end, part.text)
                if why:
                    bad.append(f"{name} p.{part.page} L{part.line_start}-{part.line_end}: {why}")
    assert checked > 1000
    assert not bad, f"{len(bad)} excerpts off their spans:\n" + "\n".join(bad[:10])


@pytest.mark.parametrize("name", DOCS)
def test_no_chunk_stretches_over_lines_that_hold_none_of_its_text(manuals, embedder, name):
    """SQLite's pages draw their syntax as 2,000 lines of SVG, which is not indexed: the text before the diagram and
    the text after it are separate chunks (the CREATE INDEX page had one citing L128-2497 for 17 lines of text)."""
    for chunk in _chunks(embedder, manuals / name):
        lines = chunk.text.count("\n") + 1
        assert chunk.line_end - chunk.line_start + 1 <= 3 * lines + MAX_GAP, (name, chunk.line_start, chunk.line_end)


def test_a_pdf_chunk_never_takes_a_heading_from_the_page_before(manuals, embedder):
    """bashref.pdf's page 100 ends with the title `6.3 Interactive Shells`; page 101 is its text."""
    chunks = _chunks(embedder, manuals / "bashref-p100-101.pdf")
    second = [c for c in chunks if c.page == 2]
    assert second and not any("6.3 Interactive Shells" in c.text for c in second)
    assert second[0].heading.endswith("6.3 Interactive Shells") and second[0].line_start == 1
    assert any(c.text.startswith("6.3.1 What is an Interactive Shell?") for c in second)


@pytest.mark.parametrize(
    "name",
    [
        "git-rebase.html",
        "python-argparse.html",
        "pg-sql-vacuum.html",
        "bash-excerpt.html",
        "git-clean.txt",
        "sqlite-lang_corefunc.html",
    ],
)
def test_a_definition_list_term_is_never_cut_from_its_definition(manuals, embedder, name):
    """A term (<dt>: "-e", "\\timing [ on | off ]", "FULL"; AsciiDoc's "filter by pattern::" on its own line) is no
    passage of its own: the chunk that holds it also holds the first line of its definition, so neither the search
    nor the model sees a definition without what it defines. (Terms are followed by their definition, or by more terms
    of the same definition: "set [-abef…]", "set [+abef…]".)"""
    doc = load(manuals / name, (manuals / name).read_bytes())
    pairs = [(u, nxt) for u, nxt in zip(doc.units, doc.units[1:]) if u.lead and not nxt.boundary]
    assert len(pairs) >= 5, name  # the page has definition lists
    for target in (200, 48):
        chunks = _chunks(embedder, manuals / name, target)
        fits = [(t, d) for t, d in pairs if sum(embedder.count_tokens([t.text, d.text.split("\n")[0]])) < target // 2]
        cut = [
            f"{term.text!r} (L{term.line_start})"
            for term, definition in fits
            if not any(term.text in c.text and definition.text.split("\n")[0] in c.text.split(term.text, 1)[1]
                       for c in chunks)
        ]  # fmt: skip
        assert not cut, f"{name}, {target}-token chunks: {len(cut)} terms cut from their definitions: {cut[:5]}"


def test_no_chunk_of_the_whole_bash_manual_is_terms_alone(manuals, embedder):
    """Terms whose definition is longer than a chunk stay with its first lines: bind's five synopsis lines, then a
    long definition, were a chunk of their own (and complete's "complete -pr [-DEI] [name ...]" another)."""
    path = manuals / "bash.html"
    terms = {u.text for u in load(path, path.read_bytes()).units if u.lead}
    chunks = _chunks(embedder, path)
    alone = [
        f"L{c.line_start}-{c.line_end}: {c.text[:60]!r}"
        for c, after in zip(chunks, chunks[1:])
        if all(p.strip() in terms for p in c.text.split("\n\n") if p.strip())
        and after.line_start <= c.line_end + 3  # what they define follows (SEE ALSO's references are terms alone)
    ]
    assert len(terms) > 100 and not alone, alone[:5]


# heading paths ------------------------------------------------------------------------------------------------
def _html_titles(raw: str) -> list[str]:
    """The h1-h6 titles of an HTML page as its generator wrote them, typography undone, numbering dropped."""
    out = []
    for match in re.finditer(r"<h([1-6])\b[^>]*>(.*?)</h\1>", raw, re.S):
        title = html.unescape(re.sub(r"<[^>]*>", "", match.group(2)))
        title = title.replace("¶", "").replace("→", "->").replace("’", "'").replace("—", "---")
        out.append(re.sub(r"^(Chapter \d+\.|Appendix [A-Z]\.|\d+(\.\d+)*\.?)\s+", "", " ".join(title.split())))
    return out


def _loader_titles(path: Path) -> list[str]:
    doc = load(path, path.read_bytes())
    return [u.heading.rsplit(" > ", 1)[-1] for u in doc.units if u.boundary]


def _listing_lines(text: str) -> set[str]:
    """The lines inside AsciiDoc delimited blocks (listing ----, literal ...., example ====)."""
    inside, out = None, set()
    for line in text.split("\n"):
        stripped = line.rstrip()
        if inside is not None:
            if stripped == inside:
                inside = None
            elif stripped:
                out.add(stripped.strip())
        elif re.fullmatch(r"(-{4,}|\.{4,}|={4,})", stripped):
            inside = stripped
    return out


def test_git_user_manual_headings_are_its_section_titles(manuals):
    """The AsciiDoc `==` titles, as git's own HTML build of the same manual shows them; none from a listing."""
    path = manuals / "git-user-manual.txt"
    mine = _loader_titles(path)
    theirs = [t for t in _html_titles((manuals / "git-user-manual.html").read_text()) if t != "Note"]
    assert mine[0] == "Git User Manual" and mine[1:] == theirs[1:]
    assert len(mine) == 119
    listing = _listing_lines(path.read_text())
    assert "HEAD is now at 427abfa Linux v2.6.17" in listing
    doc = load(path, path.read_bytes())
    sections = {u.heading.removesuffix(f" > {u.entry}") if u.entry else u.heading for u in doc.units if u.heading}
    assert {part for path_ in sections for part in path_.split(" > ")} == set(mine)
    terms = {t for u in doc.units if u.entry for t in u.entry.split(" > ")}  # its labeled lists' terms
    assert terms and not {part for u in doc.units if u.heading for part in u.heading.split(" > ")} & listing


def test_asciidoc_markup_lines_are_no_passage_text(manuals, embedder):
    """Block anchors (`[[telling-git-your-name]]`), block styles (`[verse]`, `[appendix]`) and directives
    (`include::...[]`) render as nothing. As text, the anchor before each section title ended the section before it:
    21 of the manual's chunks were little else ("[[creating-tags]]" alone). A listing's lines stay as they are."""
    path = manuals / "git-user-manual.txt"
    text = path.read_text()
    assert text.count("\n[[") >= 100 and "[appendix]" in text
    chunks = _chunks(embedder, path)
    lines = [line for c in chunks for line in c.text.split("\n")]
    assert not [x for x in lines if x.startswith("[[") and x.endswith("]]") or x in ("[appendix]", "[preface]")]
    assert sum(len(c.text.split()) <= 3 for c in chunks) <= 2
    developing = next(c for c in chunks if "== Developing with Git" in c.text)
    assert "Before creating any commits, you should introduce yourself to Git." in developing.text
    assert developing.heading == "Git User Manual > Developing with Git"  # what its two titles share
    assert "name = Your Name Comes Here" in "\n".join(lines)  # a listing's text stays
    rebase = _chunks(embedder, manuals / "git-rebase.txt")
    assert not any(x in ("[verse]", "[NOTE]") or x.startswith("include::") for c in rebase for x in c.text.split("\n"))


def test_table_borders_are_no_passage_text(manuals, embedder):
    """A reST table's borders (argparse's quick-links table: `====== ====== ======`; grid tables' `+----+----+`)
    draw the table and say nothing. As text, each of argparse's three borders, 200 characters of "=", was a chunk of
    its own (110-151 tokens of nothing). The rows stay, on their own lines."""
    path = manuals / "python-argparse.rst.txt"
    lines = path.read_text().split("\n")
    borders = [n for n, line in enumerate(lines, 1) if re.fullmatch(r"=+( +=+)+", line)]
    assert len(borders) == 3
    chunks = _chunks(embedder, path)
    assert not [c for c in chunks if not c.text.replace("=", "").replace("-", "").split()]
    assert not [line for c in chunks for line in c.text.split("\n") if re.fullmatch(r"[=\s]+", line) and " " in line]
    row = next(c for c in chunks if "Limit values to a specific set of choices" in c.text)
    assert "Name" in row.text and row.line_start > borders[0] and row.line_end < borders[-1]
    grid = "Title\n=====\n\n+------+-------+\n| a    | b     |\n+======+=======+\n| one  | two   |\n+------+-------+\n"
    doc = load(Path("table.rst"), grid.encode())
    assert [(u.text, u.line_start) for u in doc.units if not u.boundary] == [
        ("| a    | b     |", 5),
        ("| one  | two   |", 7),
    ]


def test_rest_labels_and_index_directives_are_no_passage_text(manuals, embedder):
    """reST link targets and labels (`.. _prog:`) and the directives that only index or attribute (`.. index::
    single: ? (question mark)`, `.. module:: argparse` with its `:synopsis:`, `.. sectionauthor::`) render as
    nothing. As text, a label before a section title ended the section before it: Python's sqlite3 page had "How-to
    guides" over only ".. _sqlite3-placeholders:" as a chunk of its own. Directives that render text stay."""
    path = manuals / "python-argparse.rst.txt"
    text = path.read_text()
    assert text.count("\n.. _") >= 10 and "\n.. index:: " in text and "\n.. module:: argparse" in text
    lines = [line.strip() for c in _chunks(embedder, path) for line in c.text.split("\n")]
    assert not [x for x in lines if x.startswith((".. _", ".. index::", ".. module", ".. sectionauthor", ":synopsis:"))]
    assert any(x.startswith(".. versionadded::") for x in lines)  # renders "Added in version ..."
    page = "Guide\n=====\n\nHow-to guides\n-------------\n\n.. _placeholders:\n\nPlaceholders\n^^^^^^^^^^^^\n\nUse ?.\n"
    units = [u for u in load(Path("guide.rst"), page.encode()).units if not u.boundary]
    assert [(u.text, u.heading) for u in units] == [("Use ?.", "Guide > How-to guides > Placeholders")]


def test_a_rendered_man_pages_header_and_footer_are_no_passage_text(manuals, embedder):
    """`man tar > tar.1.txt` opens with the header `TAR(1)  GNU TAR Manual  TAR(1)` and ends with the footer `TAR
    July 13, 2020  TAR(1)`, on every page where the text was paginated: running heads, not text. As text the header
    was a chunk of its own and the footer's date stood in the last section's passage."""
    path = manuals / "tar.1.txt"
    chunks = _chunks(embedder, path)
    text = "\n".join(c.text for c in chunks)
    assert "GNU TAR Manual" not in text and "July 13, 2020" not in text
    assert "There is NO WARRANTY" in text  # the line before the footer stays
    assert chunks[0].heading == "NAME" and "tar - an archiving utility" in chunks[0].text
    page = "\n".join(["LS(1)        User Commands        LS(1)", "", "NAME", "       ls - list directory contents", "",
                      "GNU coreutils 9.1        2023        LS(1)", "LS(1)        User Commands        LS(1)", "",
                      "SEE ALSO", "       Full documentation see dir(1) or LS(1)", "", "GNU 2023       LS(1)"])  # fmt: skip
    doc = load(Path("ls.1.txt"), page.encode())
    assert [u.text.strip() for u in doc.units if not u.boundary] == [
        "ls - list directory contents",
        "Full documentation see dir(1) or LS(1)",
    ]


def test_an_admonition_title_labels_its_box_not_the_text_after_it(manuals):
    """DocBook writes a note as <div class="note"><h3 class="title">Note</h3>...</div>: the heading names the box.
    Taken for a section it headed everything after the box up to the next title (32 passages of git's HTML manual,
    and PostgreSQL's psql meta-commands were "Usage > Note")."""
    path = manuals / "git-user-manual.html"
    theirs = _html_titles(path.read_text())
    doc = load(path, path.read_bytes())
    parts = {part for u in doc.units if u.heading for part in u.heading.split(" > ")}
    assert theirs.count("Note") == 3 and "Note" not in parts
    assert len(_loader_titles(path)) == len(theirs) - 3
    labels = [i for i, u in enumerate(doc.units) if u.text == "Note"]
    assert len(labels) == 3  # the label stays as the box's text, under the section the box stands in
    for i in labels:
        assert doc.units[i].heading == doc.units[i - 1].heading == doc.units[i + 2].heading


def test_a_docbook_reference_page_heads_its_sections_with_its_name(manuals):
    """PostgreSQL's reference pages title themselves (refnamediv) with the same <h2> as their sections: the name heads
    them, as a man page's does ("VACUUM > Parameters", not a bare "Parameters" shared by every command's page)."""
    path = manuals / "pg-sql-vacuum.html"
    doc = load(path, path.read_bytes())
    headings = [u.heading for u in doc.units if u.boundary]
    assert [h.rsplit(" > ", 1)[-1] for h in headings] == _html_titles(path.read_text())
    assert headings[0] == "VACUUM" and all(h.startswith("VACUUM > ") for h in headings[1:])
    assert "VACUUM > Parameters" in headings


def test_sqlite_reference_entries_are_headed_by_their_own_hidden_headings(manuals):
    """SQLite's pragma page lists its 74 PRAGMAs under one <h2>; each entry opens with a hidden
    `<h _id=pragma_integrity_check style="display:none"> PRAGMA integrity_check</h>`, the heading its search index and
    its table of contents use. Each is a section under "List Of PRAGMAs", as the page's contents list them (before,
    every pragma's text stood under "PRAGMA Statements > List Of PRAGMAs")."""
    path = manuals / "sqlite-pragma.html"
    raw = path.read_text()
    listed = re.findall(r"<li><a href='pragma.html#pragma_(\w+)'>", raw)
    doc = load(path, path.read_bytes())
    headings = [u.heading for u in doc.units if u.boundary]
    entries = [h for h in headings if h.startswith("PRAGMA Statements > List Of PRAGMAs > ")]
    assert entries == [
        f"PRAGMA Statements > List Of PRAGMAs > PRAGMA {n}" for n in re.findall(r"<h _id=pragma_(\w+)", raw)
    ]
    assert len(listed) >= 70 and set(listed) <= {h.rsplit(" PRAGMA ", 1)[-1] for h in entries}
    check = next(u for u in doc.units if "If pragma integrity_check finds no errors" in u.text)
    assert check.heading == "PRAGMA Statements > List Of PRAGMAs > PRAGMA integrity_check"
    assert [h.rsplit(" > ", 1)[-1] for h in headings if h not in entries] == _html_titles(raw)


def test_an_html_pages_title_set_before_its_first_heading_is_no_passage(manuals, embedder):
    """SQLite sets each page's <title> again in `<div class="fancy_title">` above its first heading: that is the
    page's title, not a passage (as one, each page had a chunk of one to five words and no heading). The same words
    after a heading, or a first paragraph that is not the title, stay."""
    for name in ("sqlite-lang_createindex.html", "sqlite-lang_corefunc.html"):
        path = manuals / name
        doc = load(path, path.read_bytes())
        assert doc.title and f'<div class="fancy_title">\n{doc.title}\n</div>' in path.read_text()
        assert doc.units[0].boundary, (name, doc.units[0].text)
        assert all(c.heading for c in _chunks(embedder, path))
    page = "<title>Widgets</title><div>Widgets</div><p>Intro text.</p><h1>Widgets</h1><p>Widgets</p>"
    doc = load(Path("w.html"), page.encode())
    assert [u.text for u in doc.units] == ["Intro text.", "Widgets", "Widgets"]
    assert [u.text for u in load(Path("w.html"), b"<title>A</title><p>B</p><h1>C</h1>").units] == ["B", "C"]


def test_a_term_in_its_own_paragraph_inside_dt_is_still_a_term(manuals):
    """SQLite writes a function's entry as `<dt><p><b>abs(<i>X</i>)</b></dt><dd><p>The abs(X) function…`: the <p>
    inside the <dt> took the term for a paragraph, so 35 chunks of the function list stood under the list's title
    alone. Each of the page's 43 entries now heads its description, as a <dt> without a <p> does (a <br> between
    two forms of one function, "like(X,Y)" and "like(X,Y,Z)", makes two terms)."""
    path = manuals / "sqlite-lang_corefunc.html"
    raw = path.read_text()
    entries = re.findall(r"<dt><p>(.*?)</dt>", raw, re.S)
    forms = [form for entry in entries for form in re.split(r"<br\s*/?>", entry)]
    terms = [" ".join(html.unescape(re.sub(r"<[^>]*>", "", form)).split()) for form in forms]
    doc = load(path, path.read_bytes())
    assert len(entries) == 43 and [u.text for u in doc.units if u.lead] == terms
    abs_ = next(u for u in doc.units if u.text.startswith("The abs(X) function returns the absolute value"))
    assert abs_.heading == "2. Descriptions of built-in scalar SQL functions > abs(X)"
    assert not [u for u in doc.units if u.lead and "Descriptions" in u.text]  # its <h1> is no term


def test_git_command_page_headings_are_its_section_titles(manuals):
    """Two-line AsciiDoc titles (NAME / ----): the sections of git's own HTML page, less what it includes from
    another file."""
    mine = _loader_titles(manuals / "git-rebase.txt")
    theirs = _html_titles((manuals / "git-rebase.html").read_text())
    assert mine[0] == "git-rebase(1)" and theirs[0] == "git-rebase(1) Manual Page"
    assert mine[1:] == [t for t in theirs[1:] if t != "MERGE STRATEGIES"]  # include::merge-strategies.txt[]


def test_git_pages_with_few_titles_are_still_read_as_asciidoc(manuals):
    """git's howtos and the pages other pages include have few titles and no anchors, but AsciiDoc's listing blocks,
    directives and list continuations. Read as reST, a one-line listing between its like delimiters was an overlined
    section title ("$ git checkout -b revert-c99 master" over the text after it) and `ifdef::git-rev-list[]` over its
    underline a title: 7 such headings in git-doc's pages. Of 3,971 text files (this machine's /usr/share/doc and the
    bench's Debian packages), 22 are read as AsciiDoc now: 18 of git's pages, git's contrib README and three of
    PostgreSQL's tutorial SQL files (boxed comments; one box's line, "-- Aggregate Functions", is no title now)."""
    page = manuals / "git-howto-revert-branch-rebase.txt"
    howto = load(page, page.read_bytes())
    assert {u.heading for u in howto.units if u.heading} == {"How to revert an existing commit"}
    assert any(u.text.startswith("----") and "$ git checkout -b revert-c99 master" in u.text for u in howto.units)
    included = manuals / "git-rev-list-description.txt"
    doc = load(included, included.read_bytes())
    assert not [u.heading for u in doc.units if u.heading]
    assert not [u.text for u in doc.units if "ifdef::" in u.text or "endif::" in u.text]  # markup, not text
    assert any("$ git rev-list foo bar ^baz" in u.text for u in doc.units)


def test_asciidoc_labeled_list_entries_stand_under_their_terms_as_in_the_html_page(manuals):
    """git's pages list options and commands as AsciiDoc labeled lists (`-i::` / `--interactive::` over their
    description): each description stands under its terms (`OPTIONS > -i, --interactive`), as git's own HTML build of
    the same page renders them (<dt>); a term alone leads into its description. Before, every option of the .txt page
    stood under "OPTIONS" alone while its .html twin's stood under their option."""
    txt, html_ = (load(manuals / n, (manuals / n).read_bytes()) for n in ("git-rebase.txt", "git-rebase.html"))
    mine = {t for u in txt.units if u.entry for t in u.entry.rsplit(" > ", 1)[-1].split(", ")}
    theirs = {u.heading.rsplit(" > ", 1)[-1] for u in html_.units if u.lead}
    assert len(mine & theirs) >= 55 and all(t in theirs or t.endswith("…") for t in mine), sorted(mine - theirs)
    interactive = next(u for u in txt.units if "\tMake a list of the commits which are" in u.text)
    assert interactive.heading == "git-rebase(1) > OPTIONS > -i, --interactive" and not interactive.lead
    easy = next(u for u in txt.units if u.text == "Easy case: The changes are literally the same.::")
    assert easy.lead and easy.heading.endswith(" > Easy case: The changes are literally the same.")
    after = next(u for u in txt.units if u.boundary and u.line_start > interactive.line_start)
    assert after.heading.count(" > ") == 1  # a section title closes the list


def test_rest_page_headings_are_its_section_titles(manuals):
    """Sphinx's HTML build of the same page holds the same section titles (its sidebar's aside)."""
    mine = _loader_titles(manuals / "python-argparse.rst.txt")
    raw = (manuals / "python-argparse.html").read_text()
    body = raw[raw.index('<div class="body"') : raw.index('<div class="sphinxsidebar"')]
    assert mine == _html_titles(body)
    assert len(mine) == 53


def test_rest_object_descriptions_stand_under_their_signatures(manuals):
    """`.. method:: ArgumentParser.add_argument(name or flags..., ...)` over its indented description is an entry, as
    Sphinx renders it (a <dt> with the object's id): the description stands under its signature, and the directive
    line is a term that leads into it. The objects are those of Sphinx's HTML build of the same page (a directive of
    several signatures, RawDescriptionHelpFormatter's, is one entry under its first)."""
    path = manuals / "python-argparse.rst.txt"
    doc = load(path, path.read_bytes())
    built = (manuals / "python-argparse.html").read_text()
    ids = [i.removeprefix("argparse.") for i in re.findall(r'<dt class="sig sig-object py" id="([^"]+)"', built)]
    terms = [u for u in doc.units if u.lead]
    names = [u.heading.rsplit(" > ", 1)[-1].split("(")[0].rstrip("…") for u in terms]
    assert len(terms) == 21 and set(names) <= set(ids)
    assert all(any(i.rsplit(".", 1)[-1] in u.text for u in terms) for i in ids)
    define = next(u for u in doc.units if u.text.lstrip().startswith("Define how a single command-line argument"))
    assert define.heading.rsplit(" > ", 1)[-1].startswith("ArgumentParser.add_argument(name or flags")
    assert define.heading.startswith("argparse --- Parser for command-line options, arguments and sub-commands > ")


def test_man_page_headings_are_its_sections(manuals):
    """The rendered page's section titles are the .SH and .SS requests of its roff source."""
    roff = gzip.decompress((FIXTURES / "tar.1.roff.gz").read_bytes()).decode()
    sections = []
    for line in roff.split("\n"):
        if line.startswith((".SH", ".SS")):
            title = re.sub(r"\\f[BIRP]|\\\(.{2}|\\", "", line[4:]).strip().strip('"')
            sections.append(title)
    assert _loader_titles(manuals / "tar.1.txt") == sections


def test_a_rendered_man_page_with_a_long_name_still_has_its_sections(manuals, tmp_path):
    """man sets a page's name at both ends of its header line; a long name leaves no space between the parts or is cut
    short at the left, and the page was not known for a man page: no section titles at all (systemd's, gcloud's, tc's
    names with spaces: 19 of 273 pages sampled from this machine's /usr/share/man, gcloud's aside, and 60 of 60 of
    gcloud's; none now, against each page's .SH titles). A section title is any line at the margin, as .SH sets it:
    perf-arm-spe(1)'s "WHY SAMPLING?", top(1)'s "1. COMMAND-LINE Options"."""
    page = manuals / "systemd-machine-id-setup.1.txt"  # SYSTEMD-MACHINE-ID-SETUP(1)systemd-machine-id-setupSYSTEMD-...
    roff = (manuals / "systemd-machine-id-setup.1.roff").read_text()
    sections = [re.sub(r'^\.SH "?|"$', "", line) for line in roff.split("\n") if line.startswith(".SH")]
    assert (
        _loader_titles(page)
        == sections
        == [*"NAME SYNOPSIS DESCRIPTION OPTIONS".split(), "EXIT STATUS", "SEE ALSO", "NOTES"]
    )
    assert not any("SYSTEMD-MACHINE-ID-SETUP(1)" in u.text for u in load(page, page.read_bytes()).units)  # header
    for header, name in [
        (
            "GCLOUD_ALLOYDB_OPERATIONS_LIGeneral Commands GCLOUD_ALLOYDB_OPERATIONS_LIST(1)",
            "GCLOUD_ALLOYDB_OPERATIONS_LIST",
        ),
        (
            "SYSTEMD-VERITYSETUP-GENERsystemd-veritysetup-gSYSTEMD-VERITYSETUP-GENERATOR(8)",
            "SYSTEMD-VERITYSETUP-GENERATOR",
        ),
        ("Flow filter in tc(8)                 Linux                Flow filter in tc(8)", "Flow filter in tc"),
    ]:
        text = f"{header}\n\nNAME\n       {name.lower()} - does it\n\nWHY SAMPLING?\n       Because.\n\n"
        text += (
            "1. COMMAND-LINE Options\n       -h  Help.\n\n____________________\n\nsystemd 252"
            + " " * 40
            + f"{name}(8)\n"
        )
        path = tmp_path / "long-name.8.txt"
        path.write_text(text)
        assert _loader_titles(path) == ["NAME", "WHY SAMPLING?", "1. COMMAND-LINE Options"], header


def test_a_man_page_option_stands_under_its_tag_like_a_definition_list_entry(manuals):
    """A man page rendered to text sets each option (a roff .TP paragraph) on a line of its own, its description
    indented below it: the description's paragraphs stand under the option in the heading path. The entries found
    are the .TP tags of the page's roff source; list items and example command lines are not entries."""
    roff = gzip.decompress((FIXTURES / "tar.1.roff.gz").read_bytes()).decode().split("\n")
    tags = {
        " ".join(re.sub(r"^\.[BIR]{1,2} |\\f[BIRP]|\\\(.{2}|\\|\"", "", roff[i + 1]).replace("= ", "=").split())
        for i, line in enumerate(roff[:-1])
        if line.startswith(".TP")
    }
    doc = load(manuals / "tar.1.txt", (manuals / "tar.1.txt").read_bytes())
    units = {u.line_start: u for u in doc.units}
    strip = next(u for u in doc.units if u.text.strip().startswith("--strip-components=NUMBER"))
    assert strip.heading == "OPTIONS > File name transformations > --strip-components=NUMBER"
    assert "Strip NUMBER leading components" in strip.text
    after = units[min(n for n in units if n > strip.line_start)]
    assert after.heading.endswith("> --transform=EXPRESSION, --xform=EXPRESSION")  # the next option, not inside
    terms = {
        u.heading.rsplit(" > ", 1)[-1]
        for u in doc.units
        if u.entry and u.text.strip().startswith(u.entry.rsplit(" > ", 1)[-1].rstrip("…"))
    }
    found = {t for t in terms if t in tags or t.endswith("…") and any(x.startswith(t[:-1]) for x in tags)}
    assert len(found) >= 0.97 * len(terms) and len(found) >= 0.85 * len(tags), (sorted(terms - found), len(tags))
    assert not [t for t in terms if t.startswith(("•", "$ "))]
    # The roff source itself (what /usr/share/man holds) gives its .TP paragraphs the same entries.
    source = load_man("\n".join(roff))
    from_roff = {u.heading.split(" > ", 1)[1] for u in source.units if u.entry}
    from_text = {u.heading for u in doc.units if u.entry}
    assert "OPTIONS > File name transformations > --strip-components=NUMBER" in from_roff
    assert len(from_roff & from_text) >= 0.95 * len(from_text)


def test_a_less_than_sign_in_html_text_is_text_to_the_span_check_too(tmp_path, embedder):
    """SQLite's pages write comparisons with a bare "<" ("WHERE clauses of the form (rowid<'2')", "not b<>0"), which
    HTML reads as text: a tag opens with "<" and a letter. The span check read them as tags up to the next ">", and
    called 58 chunks of SQLite's documentation off their spans that stand exactly on them."""
    page = tmp_path / "changes.html"
    page.write_text(
        "<html><body><h2>Changes</h2>\n<ul>\n<li><p>Fix a bug in WHERE clauses of the form (rowid<'2')\n"
        "so that rows are found again.</p>\n<li><p>New SQLITE_OMIT option.</p>\n</ul>\n"
        "<pre>select a+10, case when not b<>0 then 1 else 0 end from t1;\n"
        "select a+160 from t1 where not (c=1 AND b<10);</pre>\n<p>After the <b>list</b>.</p>\n</body></html>\n"
    )
    chunks = _chunks(embedder, page, target=16)
    assert len(chunks) > 1 and any("rowid<'2'" in c.text for c in chunks) and any("b<>0" in c.text for c in chunks)
    for chunk in chunks:
        assert violation(str(page), None, chunk.line_start, chunk.line_end, chunk.text) is None, chunk
    first = chunks[0]  # and the check still fails a span one line off
    assert violation(str(page), None, first.line_start + 1, first.line_end + 1, first.text) is not None


# boilerplate --------------------------------------------------------------------------------------------------
def test_html_navigation_and_menus_are_not_indexed(manuals, embedder):
    """SQLite's site menu, tagline and search form, PostgreSQL's navigation bars and Sphinx's sidebar are chrome;
    the pages' own text stays, on its own lines."""
    cases = {
        "sqlite-lang_createindex.html": (
            ["Small. Fast. Reliable.", "Choose any three", "Search Documentation", "Purchase", "hide"],
            'The CREATE INDEX command consists of the keywords "CREATE INDEX"',
        ),
        "pg-sql-vacuum.html": (["Prev", "Next", "Home"], "VACUUM reclaims storage occupied by dead tuples."),
        "python-argparse.html": (
            ["Previous topic", "Next topic", "Quick search", "Report a Bug", "Navigation"],
            "The argparse module makes it easy to write user-friendly",
        ),  # fmt: skip
    }
    for name, (chrome, content) in cases.items():
        path = manuals / name
        chunks = _chunks(embedder, path)
        text = "\n".join(c.text for c in chunks)
        lines = {line.strip() for line in text.split("\n")}
        for phrase in chrome:
            assert phrase not in lines and not any(line.startswith(phrase) for line in lines), (name, phrase)
        holder = next(c for c in chunks if content.split()[1] in c.text and " ".join(c.text.split()).find(content) >= 0)
        assert violation(str(path), None, holder.line_start, holder.line_end, holder.text) is None
