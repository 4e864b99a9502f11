"""How the server shows the passages an answer rests on: Open WebUI source events, the structured list, a footer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from deepkb.answer.stream import AskResult
from deepkb.display import display_path, location
from deepkb.retrieval.search import Hit

FOOTER_HEAD = "Sources:"
UNSUPPORTED_LINE = "⚠ {n} of {total} sentences not supported by the cited passages"
_FOOTER_RE = re.compile(rf"\n\n(?:{FOOTER_HEAD}\n(?:\[\d+\] [^\n]*\n?)+(?:⚠ [^\n]*\n?)?|⚠ [^\n]*\n?)\Z")


def source_name(hit: Hit) -> str:
    """`notes.md p.4 L3-10`: short enough for a citation chip."""
    where = location(hit.page, hit.line_start, hit.line_end)
    return f"{Path(hit.path).name} {where}".strip()


def source_data(n: int, hit: Hit) -> dict[str, Any]:
    """What Open WebUI lists as one citation: {source, document, metadata}; ids are unique per passage so that
    Open WebUI keeps one entry per [n] marker."""
    ident = f"{hit.path}#chunk-{hit.chunk_id}"
    name = source_name(hit)
    # Open WebUI reads metadata.page as a 0-based index (it shows "page {page + 1}"); page_number is 1-based,
    # as the name, the citations and every other deepkb output count pages.
    meta = {
        "source": ident, "name": name, "n": n, "path": hit.path,
        "page": hit.page - 1 if hit.page is not None else None, "page_number": hit.page,
        "line_start": hit.line_start, "line_end": hit.line_end, "heading": hit.heading, "chunk_id": hit.chunk_id,
    }  # fmt: skip
    return {"source": {"id": ident, "name": name}, "document": [hit.text], "metadata": [meta]}


def footer(citations: list[dict[str, Any]], unsupported: int = 0, sentences: int = 0) -> str:
    """A plain Sources list for clients that show only the text, and how many sentences lack support."""
    if not citations:
        return "\n\n" + UNSUPPORTED_LINE.format(n=unsupported, total=sentences) if unsupported else ""
    lines = []
    for c in citations:
        where = location(c["page"], c["line_start"], c["line_end"])
        lines.append(f"[{c['n']}] {display_path(c['path'])} {where}".rstrip())
    if unsupported:
        lines.append(UNSUPPORTED_LINE.format(n=unsupported, total=sentences))
    return f"\n\n{FOOTER_HEAD}\n" + "\n".join(lines)


def strip_footer(text: str) -> str:
    """An earlier answer as the model wrote it: a client sends the footer back with the history."""
    return _FOOTER_RE.sub("", text)


def numbered_sources(result: AskResult) -> list[tuple[int, Hit]]:
    """The passages as the answer's [n] markers number them: the cited ones at their numbers, the uncited prompt
    passages (first in also_retrieved, in prompt order) in the gaps, then the rest of what was retrieved."""
    if result.abstained:
        return []
    cited = {c.n: c.hit for c in result.citations}
    rest = iter(result.also_retrieved)
    numbered: list[tuple[int, Hit]] = []
    for n in range(1, max(cited, default=0) + 1):
        hit = cited.get(n) or next(rest, None)
        if hit is None:
            break
        numbered.append((n, hit))
    numbered += [(len(numbered) + i, hit) for i, hit in enumerate(rest, 1)]
    return numbered
