"""What an agent may do with a knowledge base, as plain functions of the core: search, fetch a passage with its
neighbours, read a document, status, and the JSON an answer is handed back as. deepkb.mcp.server renders them as
MCP tools and resources; nothing here imports the MCP SDK, and nothing here writes to the knowledge base."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepkb.display import location
from deepkb.errors import UsageError
from deepkb.retrieval.passages import JOIN_CHUNKS, from_rows
from deepkb.retrieval.search import MODES, Hit
from deepkb.scope import make_scope
from deepkb.storage.errors import translated

if TYPE_CHECKING:
    from deepkb.answer.stream import AskResult
    from deepkb.kb import KnowledgeBase
    from deepkb.storage.catalog import ChunkRow

SEARCH_K_MAX = 50  # hits one search may return
NEIGHBOURS_MAX = 10  # passages fetch may add on either side
DOCUMENT_URI = "deepkb://document/{id}"


def passage_id(chunk_id: int, last: int | None = None) -> str:
    """A passage's id as agents see it (a string: ChatGPT-style connectors expect strings): its chunk id, or for
    consecutive chunks joined into one passage the first and the last one's, "FIRST-LAST"."""
    return str(chunk_id) if last is None or last == chunk_id else f"{chunk_id}-{last}"


def parse_passage_id(value: str | int) -> tuple[int, int]:
    """The first and last chunk ids in a passage id from search; one clear sentence when it is not one."""
    first, _, last = str(value).strip().partition("-")
    if not first.isdigit() or not (last or first).isdigit():
        raise UsageError(f"{value!r} is not a passage id; use an `id` from the search tool's results.")
    return int(first), int(last or first)


def _passage(chunk_id: int, path: str, page: int | None, line_start: int | None, line_end: int | None,
             heading: str | None, text: str, last: int | None = None) -> dict[str, Any]:  # fmt: skip
    where = location(page, line_start, line_end)
    return {
        "id": passage_id(chunk_id, last),
        "title": f"{Path(path).name} {where}".strip(),
        "url": Path(path).as_uri(),
        "path": path,
        "page": page,
        "line_start": line_start,
        "line_end": line_end,
        "location": where,
        "heading": heading,
        "text": text,
    }


def hit_json(hit: Hit) -> dict[str, Any]:
    """A search hit for an agent: the one hit shape (`deepkb search --json`) plus an id, a title and a file URL."""
    first, last = (hit.chunk_ids[0], hit.chunk_ids[-1]) if hit.chunk_ids else (hit.chunk_id, None)
    return {**_passage(first, hit.path, hit.page, hit.line_start, hit.line_end, hit.heading, hit.text, last),
            **hit.to_json()}  # fmt: skip


def _row_json(row: ChunkRow) -> dict[str, Any]:
    return _passage(row.id, row.path, row.page, row.line_start, row.line_end, row.heading, row.text)


# search ---------------------------------------------------------------------------------------------------------
def _scope_paths(kb: KnowledgeBase, paths: list[str]) -> list[str]:
    """Absolute, resolved paths: a relative one is taken below each folder the knowledge base was built from."""
    roots = kb.store.roots()
    found: list[str] = []
    for raw in paths:
        p = Path(raw).expanduser()
        candidates = [p] if p.is_absolute() else [Path(root) / p for root in roots]
        for c in candidates:
            text = str(c.resolve())
            if text not in found:
                found.append(text)
    return found


def search(
    kb: KnowledgeBase, query: str, k: int = 5, mode: str = "hybrid", paths: list[str] | None = None,
    types: list[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The top-k passages for a query, optionally only in some folders/files (`paths`) or of some file types."""
    if not 1 <= k <= SEARCH_K_MAX:
        raise UsageError(f"k must be between 1 and {SEARCH_K_MAX}.")
    if mode not in MODES:
        raise UsageError(f"unknown search mode {mode!r}; valid: {', '.join(MODES)}.")
    wanted_types = [t.strip().lower().lstrip(".") for t in types or [] if t.strip()]
    out: dict[str, Any] = {"query": query, "mode": mode, "k": k}
    with translated(kb.home):
        wanted_paths = _scope_paths(kb, [p for p in paths or [] if p.strip()])
    if paths and not wanted_paths:
        raise UsageError("the knowledge base has no folders yet, so a relative path filter matches nothing.")
    if not (wanted_paths or wanted_types):
        hits = kb.search(query, k=k, mode=mode)
    else:  # applied inside retrieval (deepkb.scope): the best matches in scope, not the global top k filtered
        hits = kb.search(query, k=k, mode=mode, scope=make_scope(wanted_paths, wanted_types))
        out["filter"] = {"paths": wanted_paths, "types": wanted_types, "applied": "during retrieval"}
    out["hits"] = [hit_json(h) for h in hits]
    return out


# fetch and documents -------------------------------------------------------------------------------------------
def fetch(kb: KnowledgeBase, id: str | int, before: int = 0, after: int = 0) -> dict[str, Any]:
    """A passage whole with its location, its document's URI and place, and `before`/`after` neighbours."""
    first, last = parse_passage_id(id)
    if not (0 <= before <= NEIGHBOURS_MAX and 0 <= after <= NEIGHBOURS_MAX):
        raise UsageError(f"before and after must be between 0 and {NEIGHBOURS_MAX}.")
    with translated(kb.home):
        window = kb.store.chunk_window(first, max(before, 1), max(after, 1) + JOIN_CHUNKS - 1)
    ids = [row.id for row in window.chunks] if window is not None else []
    at, end = (ids.index(first), ids.index(last)) if first in ids and last in ids else (0, -1)
    if window is None or not 0 <= end - at < JOIN_CHUNKS:
        raise UsageError(f"no passage {id} in the knowledge base (its document may have changed since the search; "
                         "search again).")  # fmt: skip
    rows = window.chunks
    whole = from_rows(rows[at : end + 1])
    data = _passage(first, whole.path, whole.page, whole.line_start, whole.line_end, whole.heading, whole.text, last)
    data["document"] = {
        "id": window.doc_id,
        "uri": DOCUMENT_URI.format(id=window.doc_id),
        "passages": window.total,
        "position": window.position + 1,
    }
    data["previous_id"] = passage_id(rows[at - 1].id) if at > 0 else None
    data["next_id"] = passage_id(rows[end + 1].id) if end + 1 < len(rows) else None
    data["before"] = [_row_json(r) for r in rows[max(at - before, 0) : at]] if before else []
    data["after"] = [_row_json(r) for r in rows[end + 1 : end + 1 + after]] if after else []
    return data


def document_text(kb: KnowledgeBase, doc_id: int) -> tuple[str, str]:
    """(path, the document's indexed text): its passages in order, each under its location line."""
    with translated(kb.home):
        rows = kb.store.document_chunks(doc_id)
    if not rows:
        raise UsageError(f"no document {doc_id} in the knowledge base.")
    parts = [f"# {rows[0].path}", "(the indexed text, passage by passage; neighbouring passages overlap a little)"]
    for row in rows:
        heading = f" ({row.heading})" if row.heading else ""
        parts.append(
            f"\n## [{passage_id(row.id)}] {location(row.page, row.line_start, row.line_end)}{heading}\n{row.text}"
        )
    return rows[0].path, "\n".join(parts)


# status and answers --------------------------------------------------------------------------------------------
def status(kb: KnowledgeBase, answering: dict[str, Any]) -> dict[str, Any]:
    """`deepkb status --json` plus how questions are answered here and what an agent may do."""
    return {**kb.status(), "answering": answering, "read_only": True}


def answer_json(result: AskResult) -> dict[str, Any]:
    """The `deepkb ask --json` object (grounding marks included when the result carries them), each citation also
    with a passage id for fetch."""
    data = result.to_json()
    for citation in data.get("citations", []):
        ids = citation.get("chunk_ids") or [citation["chunk_id"]]
        citation["id"] = passage_id(ids[0], ids[-1])
        citation["location"] = location(citation.get("page"), citation.get("line_start"), citation.get("line_end"))
    return data


def answer_text(data: dict[str, Any]) -> str:
    """An answer as text for clients that show only text: the answer, a notice, then its numbered sources."""
    lines = [data.get("answer") or ""]
    if data.get("notice"):
        lines.append(f"\n({data['notice']})")
    citations = data.get("citations") or []
    if citations:
        lines.append("\nSources:")
        for c in citations:
            lines.append(f"[{c['n']}] {c['path']} {c['location']} (passage id {c['id']})".rstrip())
    support = data.get("support") or []  # grounding: each sentence checked against the passages it cites
    unsupported = [s for s in support if not s.get("supported")]
    if unsupported:
        lines.append(f"\nNot backed by the cited passages ({len(unsupported)} of {len(support)} sentences):")
        for s in unsupported:
            reason = f" ({s['reason']})" if s.get("reason") else ""
            lines.append(f"- {s['sentence']}{reason}")
    return "\n".join(lines)
