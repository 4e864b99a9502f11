"""PDF through pypdf: text per page with line numbers; headings from the outline or numbered section titles."""

from __future__ import annotations

import io
import logging
import re
from collections import defaultdict

from deepkb.errors import LoadError
from deepkb.loaders.base import LoadedDocument, Unit, normalize_newlines
from deepkb.loaders.ocr import OCRProgress, ocr_pages

logging.getLogger("pypdf").setLevel(logging.ERROR)


def load_pdf(data: bytes, on_ocr_page: OCRProgress | None = None) -> LoadedDocument:
    """PDF through pypdf: text per page; pages without text are OCR'd when tesseract is installed (else flagged);
    encrypted or corrupt files refused."""
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
    title = _metadata_title(reader)
    outline = _outline(reader)
    units: list[Unit] = []
    empty: list[int] = []
    path: list[tuple[int, str]] = [(0, title)] if title else []
    failed: dict[int, str] = {}
    page_lines = [extract_page_lines(page, number, failed) for number, page in enumerate(pages, start=1)]
    running, heads = _running_lines(page_lines), _numbered_heads(page_lines)
    navigation: set[int] = set()  # contents and index pages: lists of titles and where they stand, not text
    numbering = None if outline else _Numbering([line for lines in page_lines for _, line in lines])
    for number, all_lines in enumerate(page_lines, start=1):
        pending = outline.get(number, [])
        kept = [(i, line) for i, line in all_lines if _shape(line) not in running and (number, i) not in heads]
        if _is_contents(kept) or _is_index(kept, len(pages)):
            navigation.add(number)
        lines = [] if number in navigation else _without_page_number(kept, number)
        keys = {_key(line) for _, line in lines}
        found = [j for j, (_, entry) in enumerate(pending) if _key(entry) in keys]
        # A bookmark whose title is not on the page (gnuplot's "V Bugs" is printed "Part V" over "Bugs") takes its
        # place by the outline's order: before the page's first title found, from the page's top; after its last,
        # from the next page ("VI Index" opens at the foot of page 303, which also holds Bugs' sections "Known
        # limitations" and "External libraries": the index's eight pages stood under "External libraries").
        unplaced = [j for j in range(len(pending)) if j not in found]
        for j in [j for j in unplaced if not found or j < found[0]]:
            path = _under(path, *pending[j])
        unplaced = [j for j in unplaced if found and j > found[0]]
        if not lines:
            if number not in failed and number not in navigation:
                empty.append(number)
            continue
        for i, line in lines:
            level = _heading_level(line, pending, bool(outline))
            if level is not None and numbering is not None:
                level = numbering.follows(line, level)
            if level is not None:
                at = next((j for j in found if _key(pending[j][1]) == _key(line)), None)
                for j in [j for j in unplaced if at is not None and j < at]:  # between two titles: before the next
                    path = _under(path, *pending[j])
                unplaced = [j for j in unplaced if at is None or j > at]
                path = _under(path, level, line)
            # Only a heading is a boundary: the chunker cuts at every page itself, and a page's first line is text
            # (as a boundary it was taken for a heading, and a PDF of one-line pages got no chunk at all).
            units.append(Unit(line, i, i, number, " > ".join(p[1] for p in path) or None, level is not None))
        for j in unplaced:  # after the page's last title found: they head the pages that follow
            path = _under(path, *pending[j])
    doc = LoadedDocument("pdf", units, title=title, pages=len(pages), empty_pages=empty, failed_pages=failed)
    ocr_pages(doc, pages, on_ocr_page)  # only pages without a text layer
    return doc


def _under(path: list[tuple[int, str]], level: int, title: str) -> list[tuple[int, str]]:
    """The heading path once a title of this level begins."""
    return [p for p in path if p[0] < level] + [(level, title)]


def extract_page_lines(page, number: int, failed: dict[int, str]) -> list[tuple[int, str]]:
    """A page's non-blank lines with their line numbers in the page's extracted text; a page pypdf cannot read is
    recorded in `failed` (it is not a scanned page) and gives no lines. Public: the excerpt step re-reads one page
    of a cited PDF with it, so its lines are numbered exactly as the ingest numbered them."""
    try:
        text = normalize_newlines(page.extract_text() or "")
    except Exception as exc:  # one unreadable page must not lose the rest of the document
        failed[number] = f"{type(exc).__name__}: {exc}"
        return []
    return [(i, line.strip()) for i, line in enumerate(text.split("\n"), 1) if line.strip()]


def _shape(line: str) -> str:
    return re.sub(r"\d+", "#", " ".join(line.lower().split()))


def _running_lines(page_lines: list[list[tuple[int, str]]]) -> set[str]:
    """Running headers and footers ("Page 3 of 5", "134 GNU Octave (version 7.3.0)"): lines at the top or bottom
    of a page whose shape, digits aside, recurs on at least a third of the pages. They would pollute chunks."""
    from collections import Counter

    counts: Counter[str] = Counter()
    for lines in page_lines:
        edge = {_shape(line) for _, line in lines[:2] + lines[-2:]}
        counts.update(edge)
    threshold = max(3, len(page_lines) // 3)
    return {shape for shape, n in counts.items() if n >= threshold}


_EDGE_NUMBER = re.compile(r"^(\d{1,6})\s+\S|\S\s+(\d{1,6})$")
HEAD_PAGES = 3  # pages a numbered running head must recur on


def _numbered_heads(page_lines: list[list[tuple[int, str]]]) -> set[tuple[int, int]]:
    """Running heads that change with the chapter, found by their page number: (sheet, line number) of the lines at
    a page's top or bottom that begin or end with its printed number, where at least HEAD_PAGES pages have a line of
    the same shape (digits aside) whose number stands the same distance behind the sheet's. Bash's reference manual
    heads each page with its chapter, "Chapter 3: Basic Shell Features 6", so no one head recurs on a third of the
    pages (`_running_lines`); they opened a chunk of every page, and stood alone as 16 chunks before a section title.
    The distance is the front matter, the same for every page of a document: a line that only looks like a head
    ("Step 3" atop a page) does not keep it from page to page."""
    found: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for sheet, lines in enumerate(page_lines, start=1):
        for i, line in lines[:2] + lines[-2:]:
            match = _EDGE_NUMBER.search(line) if line.isascii() else None
            if match:
                behind = sheet - int(match.group(1) or match.group(2))
                if 0 <= behind < 100:
                    found[(_shape(line), behind)].append((sheet, i))
    return {place for places in found.values() if len({s for s, _ in places}) >= HEAD_PAGES for place in places}


_ENTRY = re.compile(r"[^\d\s].*\s(\d{1,6})$")  # a chapter's entry without a leader: "II Plotting styles 62"
CONTENTS_SHARE = 0.6


def _leader(line: str) -> tuple[str, int] | None:
    """The title and the page number of a line that ends in a dot leader ("3.5.3 Shell Parameter Expansion . . . .
    23"), else None. By string methods, in time linear in the line: a regex search for the leader backtracked over a
    hostile line of dots for each place it could start (30 s for one line of 64,000 characters)."""
    head = line.rstrip("0123456789")
    if not 1 <= len(line) - len(head) <= 6:
        return None
    title = head.rstrip(". \t")
    if not title or head[len(title) :].count(".") < 3:
        return None
    return title, int(line[len(head) :])


def _is_contents(lines: list[tuple[int, str]]) -> bool:
    """A table of contents (or of figures) page: lines ending in a dot leader and a page number (3 at least), which
    with the entries that end in a number without one ("Glossary 47") make most of the page, their numbers never
    going back. Its entries are a title and a number each, found by the words of every section they list: bash's
    reference manual had 7 of them among 825 top-5 search results on 165 questions, each in the place of a passage
    that answers. The text itself is where they point."""
    numbers: list[int] = []
    leaders = 0
    for _, line in lines:
        leader = _leader(line)
        number = leader[1] if leader else None
        leaders += leader is not None
        if number is None and (entry := _ENTRY.fullmatch(line)):
            number = int(entry.group(1))
        if number is not None:
            numbers.append(number)
    return leaders >= 3 and len(numbers) >= CONTENTS_SHARE * len(lines) and numbers == sorted(numbers)


def _is_index(lines: list[tuple[int, str]], pages: int) -> bool:
    """A back-of-book index page: entries ending in a dot leader and a page number of this document (3 at least),
    with the one-letter heads of their groups ("E"), make most of the page, their terms in alphabetical order (one in
    ten may stand out of it: Texinfo sorts "$!" and "PS0" its own way). Like a contents page it lists words and where
    they stand; as text, bash's reference manual's nine index pages were 129 chunks of "export . . . . 50"."""
    terms: list[str] = []
    entries = letters = 0
    for _, line in lines:
        leader = _leader(line)
        if leader is not None and leader[1] <= pages:
            entries += 1
            term = "".join(ch for ch in leader[0].casefold() if ch.isalnum())
            if term:
                terms.append(term)
        elif len(line.strip()) == 1:
            letters += 1
    backwards = sum(b < a for a, b in zip(terms, terms[1:]))
    return entries >= 3 and entries + letters >= CONTENTS_SHARE * len(lines) and backwards <= 0.1 * len(terms)


def _without_page_number(lines: list[tuple[int, str]], number: int) -> list[tuple[int, str]]:
    """The page's lines without its printed number standing alone on its first or last line: a chapter's first page
    carries it without the running head that carries it elsewhere (bash's reference manual: "113" alone atop sheet
    119, which became a chunk of its own). A printed number runs at most 100 behind the sheet's (front matter)."""

    def page_number(line: str) -> bool:  # ASCII digits only: str.isdigit() is true for "²", which int() refuses
        return line.isascii() and line.isdigit() and len(line) <= 6 and 0 <= number - int(line) < 100

    if len(lines) > 1 and page_number(lines[0][1]):
        lines = lines[1:]
    if len(lines) > 1 and page_number(lines[-1][1]):
        lines = lines[:-1]
    return lines


_NUMBERED = re.compile(r"^(\d{1,2}(?:\.\d{1,2}){0,4})\.?\s+[A-Z][^\n]{1,80}$")


def _key(text: str) -> str:
    """Compare headings without their numbering, case or spacing."""
    return re.sub(r"^[\d.\s]+", "", " ".join(text.lower().split()))


def _heading_level(line: str, bookmarks: list[tuple[int, str]], has_outline: bool) -> int | None:
    """A section title: a bookmark's title on its page, else (no outline at all) a numbered title like `6.3 Scope`."""
    key = _key(line)
    for level, entry in bookmarks:
        if key and key == _key(entry):
            return level
    if has_outline:
        return None
    match = _NUMBERED.match(line)
    if match and not line.rstrip().endswith((".", ",", ";", ":")) and len(line.split()) <= 12:
        return match.group(1).count(".") + 1
    return None


class _Numbering:
    """Numbered titles (a PDF without bookmarks) come in the order of their numbers: each one a little ahead of the
    last (the next at its level or above, a gap of one allowed, or a first subsection; bzip2's manual prints no "3."
    over its "3.1.1"). A line numbered out of turn is text: a numbered list's item ("2. Modern CPUs have multiple
    ALUs"), a code listing's line number ("1 Crc CrcByte ( Byte v a l u e ) {"), and a table of contents' entry ("1
    Definition of CRC 2", whose title is numbered again later without the page number). zlib's crc-doc.pdf had all
    three as titles: its sections 4.7 to 4.10 stood under "2. Modern CPUs have multiple ALUs and may execute 3-4
    instructions"."""

    def __init__(self, lines: list[str]) -> None:
        titles = [" ".join(line.split()) for line in lines if _NUMBERED.match(line)]
        later: set[str] = set()
        self.entries: set[str] = set()  # contents entries: the title again, later, without the page number
        for title in reversed(titles):
            if (entry := re.fullmatch(r"(.+?)\s+\d{1,4}", title)) and _key(entry.group(1)) in later:
                self.entries.add(title)
            later.add(_key(title))
        self.last: tuple[int, ...] | None = None

    def follows(self, line: str, level: int) -> int | None:
        """The title's level when it comes in turn after the last numbered title (and is then the last), else None."""
        if " ".join(line.split()) in self.entries:
            return None
        number = tuple(int(n) for n in _NUMBERED.match(line).group(1).split("."))
        if self.last is not None and not _ahead(number, self.last):
            return None
        self.last = number
        return level


def _ahead(number: tuple[int, ...], last: tuple[int, ...]) -> bool:
    """`number` comes a little after `last`: 1 or 2 ahead where they first differ, and from there only the first
    subsections (1 or 2); or `last` with first subsections added."""
    for k, (a, b) in enumerate(zip(number, last)):
        if a != b:
            return 1 <= a - b <= 2 and all(n <= 2 for n in number[k + 1 :])
    return len(number) > len(last) and all(n <= 2 for n in number[len(last) :])


def _metadata_title(reader) -> str | None:
    try:
        title = (reader.metadata or {}).get("/Title")
    except Exception:  # broken metadata is no reason to lose the text
        return None
    return " ".join(str(title).split()) or None if title else None


def _outline(reader) -> dict[int, list[tuple[int, str]]]:
    """Bookmarks by page: (level, title), so PDF chunks get a heading path."""
    result: dict[int, list[tuple[int, str]]] = {}

    def walk(items, level: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            try:
                number = reader.get_destination_page_number(item) + 1
            except Exception:
                continue
            result.setdefault(number, []).append((level, " ".join(str(item.title).split())))

    try:
        walk(reader.outline, 1)
    except Exception:  # a broken outline only costs the heading paths
        return {}
    return result
