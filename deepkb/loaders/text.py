"""Plain text, source code and Markdown: encoding detected, paragraphs with their lines, headings as paths."""

from __future__ import annotations

import re

from deepkb.errors import LoadError
from deepkb.loaders.base import (
    TERM_CHARS,
    TERM_DEPTH,
    LoadedDocument,
    Unit,
    normalize_newlines,
    paragraphs,
    propagate_headings,
    term_heading,
)


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


def load_plain(text: str, name: str = "") -> LoadedDocument:
    """Plain text and source code: paragraphs, with the section titles of the text's own syntax as heading paths.

    AsciiDoc (`== Title`, two-line titles whose underline matches the title's length, never inside a `----`
    listing or other delimited block), reStructuredText (an underline at least as long as the title, after a blank
    line; levels in the order the styles appear) and man pages rendered to text (section and subsection titles);
    other text gets reST's rule for underlined titles. The underline itself is not part of any passage, nor are a
    table's border lines (`====== =====`, `+-----+----+`) or a rendered man page's header and footer lines."""
    lines = text.split("\n")
    dialect = _dialect(lines, name)
    markup: set[int] = set()  # lines that render as nothing: markup, table borders, a rendered page's running heads
    if dialect == "man":
        markup = _man_page_heads(lines)
        headings = _man_headings(lines, markup)
    elif dialect == "asciidoc":
        headings, markup, terms = _asciidoc_headings(lines)
    else:
        headings = _rest_headings(lines)
        markup = _rest_markup(lines)
    units: list[Unit] = []
    path: list[tuple[int, str]] = []
    taken = set(markup)  # title, underline and overline lines, and markup: not paragraph text
    for _, _, first, last in headings.values():
        taken.update(range(first, last + 1))
    block_start = 0
    for i in [*sorted(headings), len(lines)]:
        segment = [line if k + block_start not in taken else "" for k, line in enumerate(lines[block_start:i])]
        units.extend(paragraphs(segment, block_start + 1))
        if i < len(lines):
            level, title, first, last = headings[i]
            path = [p for p in path if p[0] < level] + [(level, title)]
            units.append(Unit(lines[i].strip(), i + 1, i + 1, heading=" > ".join(p[1] for p in path), boundary=True))
            block_start = last + 1 if last >= i else i + 1
    units.sort(key=lambda u: u.line_start)
    if dialect == "man":
        _man_entries(units)
    elif dialect == "rest":
        _rest_entries(units)
    elif dialect == "asciidoc":
        _asciidoc_entries(units, terms)
    propagate_headings(units)
    return LoadedDocument("text", units)


# An AsciiDoc labeled list's term on a line of its own ("--cached::"), and its list's nesting level by its marker.
_ADOC_TERM = re.compile(r"([^\s:][^\n]*?)(::|:::|::::|;;)")
_ADOC_TERM_LEVELS = {"::": 0, ":::": 1, "::::": 2, ";;": 3}
_BULLETS = ("•", "·", "o ", "* ", "+ ")


def _not_term(line: str) -> bool:
    """A sentence, a list item or a command line of an example, which an indented line may follow too."""
    return line.endswith((".", ":", "\\")) or line.startswith((*_BULLETS, "$ ", "# ", "% "))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


class _OpenTerms:
    """The definition list terms a passage stands inside, outermost first, each at its level (an indent, or a list's
    nesting): a term closes the open terms of its level and deeper; at most TERM_DEPTH stay open."""

    def __init__(self) -> None:
        self.terms: list[tuple[int, str]] = []

    def close(self, level: int) -> None:
        while self.terms and self.terms[-1][0] >= level:
            self.terms.pop()

    def open(self, level: int, term: str) -> bool:
        self.close(level)
        if len(self.terms) >= TERM_DEPTH:
            return False
        self.terms.append((level, term_heading(term)))
        return True

    @property
    def path(self) -> str | None:
        return " > ".join(term for _, term in self.terms) or None


def _man_entries(units: list[Unit]) -> None:
    """A man page's tagged paragraphs (an option, `--delete`, on a line of its own with its description indented
    below it) are definition list entries: each paragraph of the description stands under its term (`OPTIONS >
    --delete`), as an HTML <dt>'s does, until text comes back to the term's indent. Nested to TERM_DEPTH."""
    terms = _OpenTerms()  # by indent
    for unit in units:
        if unit.boundary:
            terms = _OpenTerms()
            continue
        lines = unit.text.split("\n")
        indent = _indent(lines[0])
        terms.close(indent)
        tagged = len(lines) > 1 and _indent(lines[1]) > indent and lines[1].strip()
        term, column = lines[0].strip(), _indent(lines[1]) if tagged else 0
        if tagged and len(lines[0]) > column and lines[0][column - 1] == " " and lines[0][column] != " ":
            term = lines[0][:column].strip()  # a short tag with its description on its line: "-d     A synonym for"
        if tagged and len(term) <= 2 * TERM_CHARS and not _not_term(term):
            terms.open(indent, term)
        unit.entry = terms.path


_REST_OBJECT = re.compile(
    r"( *)\.\. (?:py:)?(?:function|method|class|attribute|data|exception|decorator|decoratormethod|classmethod"
    r"|staticmethod|property|envvar|option|cmdoption|describe|object)::[ \t]*(\S[^\n]*)"
)


def _rest_entries(units: list[Unit]) -> None:
    """reST's object descriptions (`.. method:: execute(sql, parameters=(), /)` over its indented description, as
    Python's library pages are written) are definition list entries, as Sphinx renders them: the description stands
    under its signature (`Connection objects > Connection > execute(sql, parameters=(), /)`), a method under its
    class, and the directive line leads into its description. Nested to TERM_DEPTH."""
    terms = _OpenTerms()  # by indent
    for unit in units:
        if unit.boundary:
            terms = _OpenTerms()
            continue
        indent = _indent(unit.text.split("\n", 1)[0])
        terms.close(indent)
        described = _REST_OBJECT.match(unit.text)
        if described and terms.open(indent, described.group(2)):
            unit.lead = True
        unit.entry = terms.path


_PUNCT = re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_UNDERLINE = re.compile(rf"([{_PUNCT}])\1*\s*$")
_MAN_SECTION_NUMBER = re.compile(r"\(([0-9]\w*)\)$")
# A reST simple table's border (two or more columns of = or -) or a grid table's (+----+----+): markup, not text. A
# line of one run is a title's underline or a one-column table's border, which the title rule reads.
_TABLE_BORDER = re.compile(r"[ \t]*(?:=+(?: +=+)+|-+(?: +-+)+|\+(?:[-=]+\+)+)[ \t]*")
# A section title of a rendered man page: .SH sets it at the margin, and every other line is indented ("NAME", "WHY
# SAMPLING?", top(1)'s "1. COMMAND-LINE Options"); a rule of underscores at the margin is no title.
_MAN_SECTION = re.compile(r"^(?=.*[^\W\d_])\S.{0,78}$")
_MAN_SUBSECTION = re.compile(r"^ {2,4}(\S.{0,70})$")
_ADOC_TITLE = re.compile(r"^(={1,6})\s+(\S.*?)(?:\s+=+)?\s*$")
_ADOC_DELIMITER = re.compile(r"^(-{4,}|\.{4,}|={4,}|\+{4,}|\*{4,}|_{4,}|/{4,}|\|={3,}|```.*|--)\s*$")
_ADOC_MARKERS = re.compile(r"^(={1,6} \S|\[\[[\w:.-]+\]\]$|\[(verse|listing|source|literal|preface|appendix|NOTE|TIP|"
                           r"IMPORTANT|WARNING|CAUTION)\b[^\]]*\]$)|\blinkgit:[\w-]+\[\d")  # fmt: skip
_ADOC_LEVELS = {"=": 0, "-": 1, "~": 2, "^": 3, "+": 4}
_ROLE = re.compile(r":[\w:+-]+:`([^`<]*?)\s*(?:<[^>]*>)?`")

Headings = dict[int, tuple[int, str, int, int]]  # title line index -> (level, title, first line, last line taken)


def _dialect(lines: list[str], name: str) -> str:
    """man, asciidoc, rest or text: from the name and a look at the text's own markup."""
    lower = name.lower()
    if lower.endswith((".rst", ".rst.txt", ".rest")):
        return "rest"
    first = next((line for line in lines[:5] if line.strip()), "")
    if _man_header(first):
        return "man"
    if lower.endswith((".adoc", ".asciidoc")) or _asciidoc_signs(lines[:4000]) >= 2:
        return "asciidoc"
    if sum(line.startswith(".. ") and "::" in line for line in lines[:4000]) >= 2:
        return "rest"
    return "text"


# AsciiDoc's preprocessor directives, and a listing, literal or comment block's delimiter.
_ADOC_DIRECTIVE = re.compile(r"(?:include|ifdef|ifndef|ifeval|endif)::[^\[\s]*\[[^\]]*\]")
_ADOC_BLOCK = re.compile(r"-{4,}|\.{4,}|/{4,}")


def _asciidoc_signs(lines: list[str]) -> int:
    """How many lines only AsciiDoc writes: its titles, anchors, block styles and macros (`_ADOC_MARKERS`), its
    directives (`ifdef::git-rev-list[]`) and a list continuation (`+` alone under text) count one each; a listing block
    of two lines or more between like delimiters, touching both, counts half (reST reads one line between like lines
    as an overlined title and has no block of more, but plain text boxes a note between two rules now and then).
    git's howtos and the pages included in others have few titles and anchors but these: read as reST, a one-line
    listing was a section ("$ git diff master..revert-c99", "H-I-J") and a directive a title."""
    signs, blocks = 0, 0
    opened: str | None = None
    inside = 0
    for i, line in enumerate(lines):
        line = line.rstrip()
        if opened is not None:
            if line == opened:  # the content touches both delimiters: a horizontal rule stands between blank lines
                blocks += inside >= 2 and bool(lines[i - 1].strip())
                opened = None
            else:
                inside += 1
            continue
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if _ADOC_BLOCK.fullmatch(line) and (i == 0 or not lines[i - 1].strip()) and following:
            opened, inside = line, 0
        elif (
            _ADOC_MARKERS.search(line) or _ADOC_DIRECTIVE.fullmatch(line) or line == "+" and i and lines[i - 1].strip()
        ):
            signs += 1
    return signs + blocks // 2


def _man_header(line: str) -> str | None:
    """NAME(SECTION) when the line is a rendered man page's header, which names the page at both ends (`TAR(1)  GNU
    TAR Manual  TAR(1)`). A long name fills the line with no space between the parts
    (`SYSTEMD-MACHINE-ID-SETUP(1)systemd-machine-id-setupSYSTEMD-MACHINE-ID-SETUP(1)`) or is cut short at the left
    (`GCLOUD_ALLOYDB_OPERATIONS_LIGeneral Commands GCLOUD_ALLOYDB_OPERATIONS_LIST(1)`,
    `SYSTEMD-VERITYSETUP-GENERsystemd-veritysetup-gSYSTEMD-VERITYSETUP-GENERATOR(8)`); either way the page had no
    section titles before. It stands at the margin, as the text it heads does not."""
    if line.startswith("  "):
        return None
    line = line.strip()
    end = _MAN_SECTION_NUMBER.search(line)
    if end is None:
        return None
    tag = f"({end.group(1)})"
    first = line.find(tag)
    if 0 < first < end.start() and line[: end.start()].endswith(line[:first]):
        return line[:first] + tag  # tc-flow(8)'s name has spaces: `Flow filter in tc(8)  Linux  Flow filter in tc(8)`
    start = line.rfind(line[:10], 1, end.start())  # a long name, cut short at the left: its first 10 characters again
    name = line[start : end.start()]
    return name + tag if start > 0 and len(name) >= 16 and " " not in name else None


def _clean_title(title: str) -> str:
    return " ".join(_ROLE.sub(r"\1", title).replace("``", "").split())


def _is_title(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and line == line.lstrip() and not _UNDERLINE.fullmatch(stripped) and len(stripped) < 100


# reST lines that render as nothing: a link target or label (`.. _sqlite3-placeholders:`), and the directives that
# only index, attribute or set a default (`.. index:: single: ? (question mark)`, `.. module:: argparse`).
_REST_MARKUP = re.compile(
    r"[ \t]*\.\. (?:_[^:\n]+:|__:|(?:index|sectionauthor|moduleauthor|module|currentmodule|highlight|tabularcolumns"
    r"|default-role|py:module|py:currentmodule)::)(?:[ \t].*)?"
)


def _rest_markup(lines: list[str]) -> set[int]:
    """The lines of reST (and plain text) that draw or mark and say nothing: table borders, link targets and
    labels, and the index and attribution directives with their indented options. As text, a label before each
    section title ended the section before it (Python's sqlite3 page: "How-to guides" over only
    ".. _sqlite3-placeholders:", a chunk of its own)."""
    out: set[int] = set()
    inside: int | None = None  # the indent of the markup directive whose indented lines are still running
    for i, line in enumerate(lines):
        if inside is not None and line.strip() and _indent(line) > inside:
            out.add(i)
            continue
        inside = None
        if _TABLE_BORDER.fullmatch(line):
            out.add(i)
        elif _REST_MARKUP.fullmatch(line):
            out.add(i)
            inside = _indent(line)
    return out


def _rest_headings(lines: list[str]) -> Headings:
    """reST's rule: a title line (not indented) after a blank line or an overline, underlined by one punctuation
    character repeated at least as long as the title; an overline, when there is one, matches the underline."""
    styles: list[tuple[str, bool]] = []
    out: Headings = {}
    for i in range(len(lines) - 1):
        title, under = lines[i], lines[i + 1].rstrip()
        if not _is_title(title) or not _UNDERLINE.fullmatch(under) or len(under) < max(len(title.strip()), 3):
            continue
        over = i > 0 and lines[i - 1].rstrip() == under
        before = i - 2 if over else i - 1
        if before >= 0 and lines[before].strip():
            continue
        if i + 2 < len(lines) and lines[i + 2].strip() and not over and lines[i + 2].startswith(" "):
            continue  # an underline followed by indented text: a table border or a literal, not a section
        style = (under[0], over)
        if style not in styles:
            styles.append(style)
        out[i] = (styles.index(style) + 1, _clean_title(title), i - 1 if over else i, i + 1)
    return out


_ADOC_MARKUP = re.compile(
    r"\[\[[^\[\]]+\]\]|\[#[\w:.-][^\]]*\]"  # block anchors: [[id]], [[id,text]], [#id] (no nested quantifiers)
    r"|\[(verse|listing|source|literal|preface|appendix|glossary|bibliography|index|abstract|colophon|dedication"
    r"|partintro|quote|example|sidebar|NOTE|TIP|IMPORTANT|WARNING|CAUTION|discrete|float)\b[^\]]*\]"  # block styles
    r"|" + _ADOC_DIRECTIVE.pattern  # directives
)


def _asciidoc_headings(lines: list[str]) -> tuple[Headings, set[int], dict[int, tuple[int, str]]]:
    """AsciiDoc: `== Title` lines and two-line titles (underline of = - ~ ^ + within two characters of the title's
    length), outside delimited blocks (listing, literal, example, comment, passthrough, sidebar, quote, table); and,
    outside them too, the markup lines that render as nothing: block anchors (`[[reflogs]]`), block styles
    (`[verse]`, `[appendix]`) and directives (`include::config/log.txt[]`). As text, an anchor before a section title
    ended the section before it, and git's user manual had 21 chunks of little else ("[[creating-tags]]"; "== Developing
    with Git" over only "[[telling-git-your-name]]"): without them, a title over an empty section goes with the
    section after it."""
    out: Headings = {}
    markup: set[int] = set()
    terms: dict[int, tuple[int, str]] = {}  # line index -> (level, term) of a labeled list's term, outside blocks
    block: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if block is not None:
            if line == block or block == "```" and line.startswith("```"):
                block = None
            i += 1
            continue
        nxt = lines[i + 1].rstrip() if i + 1 < len(lines) else ""
        if (
            _is_title(line) and nxt and nxt[0] in _ADOC_LEVELS and _UNDERLINE.fullmatch(nxt)
            and abs(len(nxt) - len(line)) <= 2 and len(nxt) >= 2 and not line.startswith((".", "[", "*", "-", "/"))
            and (i == 0 or not lines[i - 1].strip() or _ADOC_MARKERS.search(lines[i - 1]))
        ):  # fmt: skip
            out[i] = (_ADOC_LEVELS[nxt[0]] + 1, line.strip(), i, i + 1)
            i += 2
            continue
        if _ADOC_DELIMITER.match(line):
            block = "```" if line.startswith("```") else line
        elif m := _ADOC_TITLE.match(line):
            out[i] = (len(m.group(1)), m.group(2), i, i)
        elif _ADOC_MARKUP.fullmatch(line):
            markup.add(i)
        elif m := _ADOC_TERM.fullmatch(line):
            terms[i] = (_ADOC_TERM_LEVELS[m.group(2)], m.group(1).removeprefix("\\"))
        i += 1
    return out, markup, terms


def _asciidoc_entries(units: list[Unit], terms: dict[int, tuple[int, str]]) -> None:
    """AsciiDoc's labeled lists (`--cached::` over its description, as git's pages are written) are definition lists,
    as the same page's HTML renders them: each paragraph of a description stands under its term (`OPTIONS > -a,
    --all`: stacked terms together), a nested list's term (`:::`, `;;`) under its parent's, until the next term of
    its level or a section title; a unit of terms alone leads into its description. Nested to TERM_DEPTH. Before, the
    .txt page's passages stood under the section alone while its .html twin's stood under their option."""
    open_terms = _OpenTerms()  # by the list's nesting
    for unit in units:
        if unit.boundary:
            open_terms = _OpenTerms()
            continue
        texts = unit.text.split("\n")
        stacked = []
        for k in range(len(texts)):
            if (term := terms.get(unit.line_start - 1 + k)) is None or stacked and term[0] != stacked[0][0]:
                break
            stacked.append(term)
        if stacked:
            open_terms.open(stacked[0][0], ", ".join(term for _, term in stacked))
            unit.lead = len(stacked) == len(texts)
        unit.entry = open_terms.path


def _man_headings(lines: list[str], heads: set[int]) -> Headings:
    """A man page rendered to text: SECTION titles at the margin, subsection titles indented by a few spaces; the
    page's header and footer lines (`heads`) at the margin too are neither."""
    out: Headings = {}
    for i, line in enumerate(lines[1:], start=1):
        stripped = line.rstrip()
        if not stripped or i in heads or _man_header(stripped):
            continue
        if _MAN_SECTION.match(stripped) and len(stripped) < 60:
            out[i] = (1, stripped, i, i)
        elif (m := _MAN_SUBSECTION.match(stripped)) and out and (not lines[i - 1].strip() or i - 1 in out):
            following = next((x for x in lines[i + 1 : i + 3] if x.strip()), "")
            if len(following) - len(following.lstrip()) > len(stripped) - len(stripped.lstrip()):
                out[i] = (2, m.group(1).strip(), i, i)
    return out


def _man_page_heads(lines: list[str]) -> set[int]:
    """A rendered man page's running heads: the header (`TAR(1)  GNU TAR Manual  TAR(1)`, on every page where the
    text was paginated) and the footer that ends with the same name and section after a gap (`TAR  July 13, 2020
    TAR(1)`; the date and version of the page, not its text). As text, the header was a chunk of its own."""
    tag = next((tag for line in lines[:5] if (tag := _man_header(line))), None)
    if tag is None:
        return set()
    return {
        i
        for i, line in enumerate(lines)
        if _man_header(line) == tag or line.rstrip().endswith(tag) and (
            line.strip() == tag or line.rstrip()[: -len(tag)].endswith("   ")
        )
    }  # fmt: skip


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
