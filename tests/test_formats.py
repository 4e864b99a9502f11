"""Formats people keep: Word, OpenDocument, EPUB, e-mail, man pages and scanned PDFs, on real documents.

The fixtures in tests/data/formats come from Debian packages (see its LICENSE.md and make_fixtures.py): a Debian
manual converted by pandoc, man pages as Debian ships them, git's mailing-list messages, Python's e-mail test
messages, a page of the FHS rendered to an image. Each citation is checked against the file itself, read here
without deepkb's loaders."""

from __future__ import annotations

import gzip
import io
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from deepkb.config import Settings
from deepkb.doctor import run as doctor
from deepkb.kb import KnowledgeBase
from deepkb.loaders import load
from deepkb.loaders.archive import MEMBER_LIMIT
from deepkb.loaders.ocr import tesseract
from deepkb.retrieval.excerpt import line_spans
from deepkb.scope import make_scope

FIXTURES = Path(__file__).resolve().parent / "data" / "formats"
W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


@pytest.fixture(scope="module")
def formats_kb(tmp_path_factory, embedder):
    """Every fixture but the scanned PDF, ingested once for the read-only tests of this module."""
    base = tmp_path_factory.mktemp("formats")
    docs = base / "docs"
    shutil.copytree(FIXTURES, docs, ignore=shutil.ignore_patterns("*.py", "*.md", "scanned-*.pdf"))
    # A mail client names a message it has seen with the ':2,S' info suffix; ':' cannot be checked out on Windows,
    # so the fixture is stored without it and named here.
    message = docs / "Maildir" / "cur" / "1230768000.M1P1.example"
    message.rename(message.with_name(message.name + ":2,S"))
    with KnowledgeBase.open(base / "kb", embedder=embedder) as kb:
        report = kb.ingest([docs])
        yield kb, docs, report


def _hit(kb, query: str, suffix: str, mode: str = "keyword"):
    """The best hit in the one document whose path ends with `suffix`: the fixtures hold one manual as .docx, .odt
    and .epub, whose passages are twins (one result with the others under also_in), so each is searched alone."""
    from deepkb.scope import make_scope

    (path,) = [p for (p,) in kb.store.db.execute("SELECT path FROM documents") if p.endswith(suffix)]
    hits = kb.search(query, k=10, mode=mode, scope=make_scope([path]))
    return next(h for h in hits if h.path.endswith(suffix))


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def test_every_format_is_ingested_without_a_complaint(formats_kb):
    kb, docs, report = formats_kb
    assert report.skipped == [] and report.warnings == []
    assert report.added == 10  # docx, odt, epub, 3 man.gz, 1 man, mbox, eml, one Maildir message
    kinds = dict(kb.store.db.execute("SELECT substr(path, length(?) + 2), kind FROM documents", [str(docs)]))
    assert kinds == {
        "copyright-format.docx": "docx", "copyright-format.odt": "odt", "copyright-format.epub": "epub",
        "ls.1.gz": "man", "gzip.1.gz": "man", "ldattach.8.gz": "man", "access.conf.5": "man", "git-howto.mbox": "email",
        "ppp-digest.eml": "email", "Maildir/cur/1230768000.M1P1.example:2,S": "email",
    }  # fmt: skip


def test_docx_cites_the_paragraph_that_holds_the_text(formats_kb):
    kb, docs, _ = formats_kb
    hit = _hit(kb, "Files-Excluded field", ".docx")
    assert hit.heading and "debian/copyright" in hit.heading.split(" > ")[0]
    # paragraph N of the body, counted here with zipfile and ElementTree as Word's navigator counts them
    from xml.etree import ElementTree

    body = ElementTree.fromstring(zipfile.ZipFile(docs / "copyright-format.docx").read("word/document.xml"))
    paragraphs = ["".join(t.text or "" for t in p.iter(f"{W}t")) for p in body.iter(f"{W}p")]
    assert _words(hit.text.split("\n")[0]) == _words(paragraphs[hit.line_start - 1])
    last = [line for line in hit.text.split("\n") if line.strip()][-1]
    assert _words(last) == _words(paragraphs[hit.line_end - 1])


def test_odt_headings_and_paragraphs(formats_kb):
    kb, docs, _ = formats_kb
    hit = _hit(kb, "Upstream-Contact", ".odt")
    assert hit.heading and hit.heading.split(" > ")[-1][0].isdigit()  # a numbered section of the manual
    content = zipfile.ZipFile(docs / "copyright-format.odt").read("content.xml").decode()
    paragraphs = re.findall(r"<text:(?:p|h)\b[^>]*?(?:/>|>(.*?)</text:(?:p|h)>)", content, re.S)
    cited = re.sub(r"<[^>]+>", "", " ".join(paragraphs[hit.line_start - 1 : hit.line_end]))
    assert _words(hit.text)[:5] == _words(cited)[:5]


def test_epub_cites_the_chapter_and_its_lines(formats_kb):
    kb, docs, _ = formats_kb
    hit = _hit(kb, "Upstream-Contact", ".epub")
    assert hit.page is not None and hit.page >= 1
    book = zipfile.ZipFile(docs / "copyright-format.epub")
    opf_name = next(n for n in book.namelist() if n.endswith(".opf"))
    opf = book.read(opf_name).decode()
    spine = re.findall(r'<itemref[^>]*idref="([^"]+)"', opf)
    hrefs = dict(re.findall(r'<item[^>]*id="([^"]+)"[^>]*href="([^"]+)"', opf))
    chapter = book.read(str(Path(opf_name).parent / hrefs[spine[hit.page - 1]]).lstrip("./")).decode()
    source = "\n".join(chapter.split("\n")[hit.line_start - 1 : hit.line_end])
    assert "upstream-contact" in source.lower()
    assert hit.heading.startswith("Machine-readable debian/copyright file")


def test_man_pages_sections_are_headings_and_lines_are_the_sources(formats_kb):
    kb, docs, _ = formats_kb
    hit = _hit(kb, "list directory contents", "ls.1.gz")
    assert hit.heading == "LS(1) > NAME"
    source = gzip.decompress((docs / "ls.1.gz").read_bytes()).decode().split("\n")
    assert "list directory contents" in "\n".join(source[hit.line_start - 1 : hit.line_end])
    plain = _hit(kb, "login access control table", "access.conf.5")
    assert plain.heading.startswith("ACCESS.CONF(5)")
    gz = _hit(kb, "Lempel-Ziv coding", "gzip.1.gz")
    assert gz.heading.startswith("GZIP(1) > ")
    assert "\\f" not in gz.text and "\\-" not in gz.text  # roff escapes are gone


def test_mbox_one_section_per_message_without_quotes(formats_kb):
    kb, docs, _ = formats_kb
    mbox_lines = (docs / "git-howto.mbox").read_text().split("\n")
    hit = _hit(kb, "Exactly my feeling Catalin", ".mbox")
    assert hit.heading.startswith("Re: sending changesets from the middle of a git tree — Junio C Hamano")
    # lines of the mailbox file itself: the chunk's span, and the exact line of each of its lines
    assert "Exactly my feeling" in "\n".join(mbox_lines[hit.line_start - 1 : hit.line_end])
    at = next(span for line, span in zip(hit.text.split("\n"), line_spans(hit)) if "Exactly my feeling" in line)
    assert "Exactly my feeling" in mbox_lines[at[0] - 1]
    # the quoted text of the message it answers is not indexed again (it is quoted with "> " in the file)
    assert any(line.startswith("> Dear diary") for line in mbox_lines)
    assert not kb.search("Dear diary letter", k=5, mode="keyword")
    assert "writes:" not in hit.text  # the attribution line before the quote goes with it
    revert = _hit(kb, "revert of a merge", ".mbox")
    assert revert.heading.startswith("Re: Odd merge behaviour involving reverts — Linus Torvalds")
    # the malformed multipart (no start boundary) between them is kept, as are the messages after it
    headings = {h.heading.split(" — ")[0] for h in kb.search("git", k=50, mode="keyword") if h.path.endswith(".mbox")}
    assert {"corrupt object on git-gc", "Re: Odd merge behaviour involving reverts"} <= headings


def test_eml_and_maildir_messages(formats_kb):
    kb, docs, _ = formats_kb
    digest = _hit(kb, "mailing list submissions", ".eml")
    assert digest.heading.startswith("Ppp digest, Vol 1 #2 - 5 msgs — ppp-request@zzz.org")
    maildir = _hit(kb, "Yadda yadda", ":2,S")
    assert maildir.heading.startswith("bar — foo")
    assert maildir.text.count("Yadda yadda yadda") == 1  # a part and its forwarded copy count once
    scoped = kb.search("Yadda", k=5, mode="keyword", scope=make_scope(types="email"))
    assert scoped and all(h.path.endswith((".eml", ".mbox", ":2,S")) for h in scoped)


@pytest.mark.parametrize(
    ("query", "suffix"),
    [("Files-Excluded field", ".docx"), ("Exactly my feeling Catalin", ".mbox"), ("Upstream-Contact", ".epub"),
     ("list directory contents", "ls.1.gz")],
)  # fmt: skip
def test_excerpts_reread_the_lines_through_the_loader(formats_kb, query, suffix):
    kb, _, _ = formats_kb
    spans = line_spans(_hit(kb, query, suffix))
    assert spans is not None and any(s is not None for s in spans)


# hostile and broken files ------------------------------------------------------------------------------------
def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def test_hostile_files_are_refused_each_with_one_line_and_nothing_else_is_lost(kb, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(FIXTURES / "copyright-format.docx", docs / "good.docx")
    shutil.copy(FIXTURES / "ppp-digest.eml", docs / "good.eml")
    doc_xml = b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
    (docs / "bomb.docx").write_bytes(
        _zip({"word/document.xml": doc_xml + b" " * (8 << 20) + b"</w:body></w:document>"})
    )
    (docs / "big.epub").write_bytes(_zip({"META-INF/container.xml": b"x" * (MEMBER_LIMIT + 1)}))
    (docs / "laughs.docx").write_bytes(_zip({"word/document.xml": b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">'
                                            b'<!ENTITY b "&a;&a;&a;">]><d>&b;</d>'}))  # fmt: skip
    (docs / "truncated.odt").write_bytes((FIXTURES / "copyright-format.odt").read_bytes()[:5000])
    (docs / "bomb.1.gz").write_bytes(gzip.compress(b".SH NAME\n" + b"x" * (8 << 20)))
    with open(docs / "huge.mbox", "wb") as fh:  # sparse: 300 MiB on paper, nothing on the disk
        fh.write(b"From a@b Thu Jan  1 00:00:00 2009\nSubject: hi\n\nhello\n")
        fh.truncate(300 << 20)
    (docs / "garbage.eml").write_bytes(b"\xff\xfe\x00garbage\x00" * 10)
    report = kb.ingest([docs])
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert set(reasons) == {"bomb.docx", "big.epub", "laughs.docx", "truncated.odt", "bomb.1.gz", "huge.mbox",
                            "garbage.eml"}, reasons  # fmt: skip
    assert "zip bomb" in reasons["bomb.docx"] and "zip bomb" in reasons["big.epub"]
    assert "declares entities" in reasons["laughs.docx"]
    assert reasons["truncated.odt"].startswith("corrupt OpenDocument text")
    assert "gzip bomb" in reasons["bomb.1.gz"]
    assert reasons["huge.mbox"].startswith("mbox mailbox larger than 256 MiB")
    assert all("\n" not in r and "Traceback" not in r for r in reasons.values())
    assert report.added == 2  # the good files beside them
    assert kb.search("Upstream-Contact", k=1, mode="keyword")[0].path.endswith("good.docx")


def test_a_malformed_message_in_an_mbox_costs_only_that_message(tmp_path, monkeypatch):
    from deepkb.loaders import mail

    data = (FIXTURES / "git-howto.mbox").read_bytes()
    real = mail._message_units
    calls = []

    def flaky(lines, first, end, mbox):
        calls.append(first)
        if len(calls) == 2:
            raise ValueError("bad header")
        return real(lines, first, end, mbox)

    monkeypatch.setattr(mail, "_message_units", flaky)
    doc = load(tmp_path / "box.mbox", data)
    assert doc.failure_note() == "message 2 could not be read (ValueError: bad header)"
    assert len({u.heading for u in doc.units if u.boundary}) == 3


# OCR -------------------------------------------------------------------------------------------------------
needs_tesseract = pytest.mark.skipif(
    tesseract() is None, reason="tesseract is not installed (.ci/run installs tesseract-ocr; apt was not reachable)"
)


@needs_tesseract
def test_scanned_page_is_ocrd_and_the_text_page_is_not(kb, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(FIXTURES / "scanned-fhs.pdf", docs / "scan.pdf")

    from deepkb.ingest.sync import Progress

    class Seen(Progress):
        pages: list[tuple[int, int]] = []

        def ocr_page(self, path, done, total):
            self.pages.append((done, total))

    seen = Seen()
    report = kb.ingest([docs], progress=seen)
    assert report.added == 1 and report.skipped == [] and seen.pages == [(1, 1)]  # page 1 has a text layer
    hit = kb.search("predict the location of installed files and directories", k=1)[0]
    assert hit.path.endswith("scan.pdf") and hit.page == 2
    cover = kb.search("Cover sheet next page scan", k=1, mode="keyword")[0]
    assert cover.page == 1
    again = kb.ingest([docs], progress=seen)
    assert again.unchanged == 1 and seen.pages == [(1, 1)]  # incremental: not read, not OCR'd again
    assert line_spans(hit) is not None  # excerpts re-read the OCR'd lines from the OCR cache


def test_without_tesseract_a_scan_says_how_to_get_it(tmp_path, monkeypatch, kb_home):
    monkeypatch.setenv("DEEPKB_TESSERACT", "")
    from deepkb.errors import LoadError

    two = b"/Kids [3 0 R 6 0 R] /Count 2"
    one_page = (FIXTURES / "scanned-fhs.pdf").read_bytes().replace(two, b"/Kids [6 0 R] /Count 1".ljust(len(two)))
    with pytest.raises(LoadError, match="install tesseract"):
        load(tmp_path / "scan.pdf", one_page)
    finding = next(f for f in doctor(Settings.load(kb_home)) if f.check == "ocr")
    assert finding.status == "skip" and "apt install tesseract-ocr" in finding.detail


@needs_tesseract
def test_doctor_finds_tesseract(kb_home):
    finding = next(f for f in doctor(Settings.load(kb_home)) if f.check == "ocr")
    assert finding.status == "ok" and "tesseract" in finding.detail


@needs_tesseract
def test_installing_tesseract_later_reads_the_scanned_pages_of_unchanged_files(kb, tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(FIXTURES / "scanned-fhs.pdf", docs / "mixed.pdf")  # a text page and a scanned one
    two = b"/Kids [3 0 R 6 0 R] /Count 2"
    scan_only = (FIXTURES / "scanned-fhs.pdf").read_bytes().replace(two, b"/Kids [6 0 R] /Count 1".ljust(len(two)))
    (docs / "scan.pdf").write_bytes(scan_only)
    monkeypatch.setenv("DEEPKB_TESSERACT", "")  # not installed yet
    before = kb.ingest([docs])
    assert before.added == 1 and [Path(s.path).name for s in before.skipped] == ["scan.pdf"]
    assert "install tesseract" in before.skipped[0].reason
    monkeypatch.delenv("DEEPKB_TESSERACT")  # installed now; the files did not change
    after = kb.ingest([docs])
    assert after.added == 1 and after.updated == 1 and after.skipped == []
    hits = kb.search("predict the location of installed files", k=5, mode="keyword")
    pages = {Path(p.path).name for h in hits for p in (h, *h.also_in)}  # the same scanned page: one hit, twins
    assert pages == {"mixed.pdf", "scan.pdf"}
    assert kb.ingest([docs]).unchanged == 2  # OCR'd once: not read again


def test_a_text_file_named_like_a_man_page_stays_text():
    assert load(Path("README.1st"), b"Read me first.\n\nThen the rest.\n").kind == "text"
    assert load(FIXTURES / "access.conf.5", (FIXTURES / "access.conf.5").read_bytes()).kind == "man"
