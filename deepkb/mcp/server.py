"""The MCP rendering of deepkb.mcp.tools: tools `search`, `fetch`, `ask`, `status` and the resource template
`deepkb://document/{id}`, built on the official SDK's MCPServer (mcp 2.x, which answers both the 2026-07-28
per-request protocol and the older initialize handshake that most desktop clients still speak).

`ask` runs the conversation core (ChatSession) on its own thread: its events come back to the event loop, become
progress notifications while the answer is generated, and a client's cancellation sets ChatSession.cancel(), which
stops the model within one token. Where the answer's model and its admission come from (a model loaded on first use
for `deepkb mcp`; the server's model host and generation queue inside `deepkb serve`) is the Host's business.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from deepkb import __version__
from deepkb.answer.stream import AskOptions
from deepkb.errors import DeepKBError
from deepkb.mcp import tools

if TYPE_CHECKING:
    from deepkb.kb import KnowledgeBase
    from deepkb.llm import LLM

log = logging.getLogger("deepkb.mcp")

INSTRUCTIONS = (
    "deepkb is the user's own document collection (notes, papers, manuals). Use `search` to find passages (each has "
    "an id, a file path, page and line span), `fetch` to read a passage whole and the passages around it, and `ask` "
    "to have deepkb's local model answer a question with citations. Cite the path and location of what you use. "
    "The tools only read: nothing here changes the user's files or the knowledge base."
)
PROGRESS_EVERY_S = 0.25  # at most this often while the answer streams
READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)

_END = object()


@dataclass
class Host:
    """What the MCP server runs against: a knowledge base, the answering model, and how an answer is admitted.

    `model()` gives ChatSession its llm (a model, a loader called once, or None for the best passages);
    `admit()` waits for the right to generate (the server's queue) and returns the release that the answer's thread
    calls once the model is free; `not_ready()` says why nothing can be answered yet (None: ready)."""

    kb: KnowledgeBase
    model: Callable[[], LLM | Callable[[], LLM] | None]
    describe: Callable[[], dict[str, Any]]
    admit: Callable[[], Awaitable[Callable[[], None]]] | None = None
    not_ready: Callable[[], str | None] = field(default=lambda: None)


# output schemas: what structuredContent holds (extra keys are allowed: the JSON contracts grow) ------------------
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Passage(_Open):
    id: str = Field(description="Passage id: give it to `fetch`.")
    title: str = Field(description="File name and location, e.g. `policy.md L3-10`.")
    url: str = Field(description="file:// URL of the document.")
    path: str = Field(description="Absolute path of the document.")
    page: int | None = Field(description="1-based PDF page, null for text formats.")
    line_start: int | None = Field(description="First line of the passage (1-based, inclusive).")
    line_end: int | None = Field(description="Last line of the passage (inclusive).")
    location: str = Field(description="`p.4 L3-10`, `L12-30`: how deepkb writes a place in a document.")
    heading: str | None = Field(description="Heading path above the passage, e.g. `Policy > Backups`.")
    text: str = Field(description="The passage's full text.")


class SearchHit(Passage):
    score: float = Field(description="The mode's own score (hybrid: fused; dense: cosine; keyword: BM25).")


class SearchOutput(_Open):
    query: str
    mode: str
    k: int
    hits: list[SearchHit]


class FetchOutput(Passage):
    document: dict[str, Any] = Field(description="The document: id, uri (deepkb://document/{id}), passages, position.")
    previous_id: str | None = Field(description="Id of the passage before this one in the document, if any.")
    next_id: str | None = Field(description="Id of the passage after this one in the document, if any.")
    before: list[Passage] = Field(description="The `before` passages preceding it, in document order.")
    after: list[Passage] = Field(description="The `after` passages following it, in document order.")


class AskOutput(_Open):
    answer: str = Field(description="The answer; [n] markers refer to `citations`.")
    citations: list[dict[str, Any]] = Field(description="Cited passages: n, id, path, page, line span, text, score.")
    abstained: bool = Field(description="True when the documents do not contain the answer.")
    fallback: bool = Field(description="True when no model answered and `answer` lists the best passages.")
    cancelled: bool
    notice: str | None
    support: list[dict[str, Any]] | None = Field(
        default=None,
        description="Grounding, where this deepkb checks it: each answer sentence, its citations, whether they "
        "back it (supported), a score and the reason when they do not.",
    )


def _error(exc: DeepKBError) -> ToolError:
    return ToolError(str(exc))


def _result(data: dict[str, Any], text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def _hits_text(data: dict[str, Any]) -> str:
    if not data["hits"]:
        return f"No passage found for {data['query']!r}."
    lines = []
    note = data.get("filter", {}).get("applied")
    if note:
        lines.append(f"(filter applied {note})")
    for h in data["hits"]:
        heading = f" — {h['heading']}" if h.get("heading") else ""
        lines.append(f"[id {h['id']}] {h['path']} {h['location']}{heading}\n{h['text']}\n")
    return "\n".join(lines)


def _described(fn: Callable[..., Any]) -> str:
    """A function's docstring as a tool description: one paragraph, without the source's indentation."""
    return " ".join(inspect.cleandoc(fn.__doc__ or "").split())


def _tool(server: MCPServer, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a tool, its docstring (cleaned) as its description."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        server.add_tool(fn, description=_described(fn), **kwargs)
        return fn

    return register


def build_server(host: Host) -> MCPServer:
    """The MCP server over one knowledge base: read-only tools and the document resources."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    mcp = MCPServer(
        "deepkb", title="deepkb: your documents", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING"
    )
    root.handlers[:], root.level = handlers, level  # the SDK's basicConfig: each shell sets up its own logging

    async def blocking(fn: Callable[[], Any]) -> Any:
        reason = host.not_ready()
        if reason:
            raise ToolError(reason)
        try:
            return await asyncio.to_thread(fn)
        except DeepKBError as exc:
            raise _error(exc) from None

    @_tool(mcp, name="search", title="Search the documents", annotations=READ_ONLY, structured_output=True)
    async def search(
        query: Annotated[str, Field(description="What to look for: a question, keywords or a phrase.")],
        k: Annotated[int, Field(description="How many passages to return.", ge=1, le=tools.SEARCH_K_MAX)] = 5,
        mode: Annotated[
            str, Field(description="hybrid (meaning + keywords, best), dense (meaning) or keyword (BM25).")
        ] = "hybrid",
        paths: Annotated[
            list[str] | None,
            Field(description="Only documents at or below these paths (absolute, or relative to an ingested folder)."),
        ] = None,
        types: Annotated[list[str] | None, Field(description='Only these file types, e.g. ["pdf", "md"].')] = None,
    ) -> Annotated[CallToolResult, SearchOutput]:
        """Search the user's documents. Returns passages, best first, each with an id (for `fetch`), the file path,
        page, line span, heading, the passage text and a score."""
        data = await blocking(lambda: tools.search(host.kb, query, k, mode, paths, types))
        return _result(data, _hits_text(data))

    @_tool(mcp, name="fetch", title="Read a passage", annotations=READ_ONLY, structured_output=True)
    async def fetch(
        id: Annotated[str, Field(description="A passage id from `search` (or previous_id / next_id from `fetch`).")],
        before: Annotated[
            int, Field(description="Also return this many passages before it.", ge=0, le=tools.NEIGHBOURS_MAX)
        ] = 0,
        after: Annotated[
            int, Field(description="Also return this many passages after it.", ge=0, le=tools.NEIGHBOURS_MAX)
        ] = 0,
    ) -> Annotated[CallToolResult, FetchOutput]:
        """Read one passage whole with its exact location, and optionally its neighbours in the same document.
        previous_id / next_id walk through the document; document.uri reads all of it as a resource."""
        data = await blocking(lambda: tools.fetch(host.kb, id, before, after))
        parts = [f"{p['path']} {p['location']} [id {p['id']}]\n{p['text']}" for p in [*data["before"], data]]
        parts += [f"{p['path']} {p['location']} [id {p['id']}]\n{p['text']}" for p in data["after"]]
        doc = data["document"]
        parts.append(f"(passage {doc['position']} of {doc['passages']}; whole document: {doc['uri']})")
        return _result(data, "\n\n".join(parts))

    @_tool(mcp, name="ask", title="Ask deepkb", annotations=READ_ONLY.model_copy(update={"idempotentHint": False}),
              structured_output=True)  # fmt: skip
    async def ask(
        question: Annotated[str, Field(description="The question, in plain words.")],
        ctx: Context,
        k: Annotated[int, Field(description="Passages to retrieve for the answer.", ge=1, le=20)] = AskOptions.k,
        no_think: Annotated[bool, Field(description="Skip the model's reasoning phase (faster).")] = False,
    ) -> Annotated[CallToolResult, AskOutput]:
        """Answer a question from the user's documents with deepkb's local model, citing each source by path, page
        and lines ([n] markers). Says so when the documents do not hold the answer. Sends progress while it
        generates; cancelling the request stops the model."""
        if not question.strip():
            raise ToolError("the question is empty.")
        reason = host.not_ready()
        if reason:
            raise ToolError(reason)
        result = await _answer(host, question, AskOptions(k=k, skip_reasoning=no_think), ctx)
        data = tools.answer_json(result)
        return _result(data, tools.answer_text(data))

    @_tool(mcp, name="status", title="Knowledge-base status", annotations=READ_ONLY, structured_output=False)
    async def status() -> CallToolResult:
        """What the knowledge base holds (documents, passages, folders, last ingest) and how questions are answered."""
        data = await blocking(lambda: tools.status(host.kb, host.describe()))
        lines = [
            f"{data['documents']} documents, {data['chunks']} passages in {data['home']}",
            f"folders: {', '.join(data['roots']) or 'none yet'}",
            f"answering: {data['answering'].get('mode')} ({data['answering'].get('model') or 'no model'})",
            "read-only: the tools never change files or the knowledge base",
        ]
        return _result(data, "\n".join(lines))

    @mcp.resource(tools.DOCUMENT_URI, name="document", title="A whole document", mime_type="text/markdown")
    async def document(id: str) -> str:
        """A document's indexed text, passage by passage with each passage's id and location."""
        if not id.isdigit():
            raise ResourceError(f"{id!r} is not a document id; use document.uri from `fetch`.")
        try:
            _, text = await asyncio.to_thread(tools.document_text, host.kb, int(id))
        except DeepKBError as exc:
            raise ResourceError(str(exc)) from None
        return text

    return mcp


async def _answer(host: Host, question: str, options: AskOptions, ctx: Context) -> Any:
    """Run ChatSession.send on a thread; progress while it streams; a cancelled request cancels the session."""
    from deepkb.conversation.session import ChatSession, Delta, Done, Notice, Retrieved

    release = await host.admit() if host.admit else (lambda: None)
    try:
        session = ChatSession(host.kb, host.model(), options=options, save=False)  # an agent's questions: not saved
    except BaseException:
        release()
        raise
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def put(item: object) -> None:
        try:
            loop.call_soon_threadsafe(events.put_nowait, item)
        except RuntimeError:  # the loop is gone (shutdown): stop generating
            session.cancel()

    def produce() -> None:
        try:
            for event in session.send(question, options=options):
                put(event)
        except BaseException as exc:  # noqa: BLE001 - handed to the loop, which raises it as a tool error
            put(exc)
        finally:
            put(_END)
            release()  # the model is free now, whatever happened

    worker = threading.Thread(target=produce, name="deepkb-mcp-ask", daemon=True)
    try:
        worker.start()
    except BaseException:
        release()
        raise
    progress, last, answered = 0, 0.0, 0
    result = None
    try:
        while (event := await events.get()) is not _END:
            if isinstance(event, BaseException):
                if isinstance(event, DeepKBError):
                    raise _error(event) from None
                raise event
            message = None
            if isinstance(event, Retrieved):
                message = f"retrieved {len(event.hits)} passages; answering"
            elif isinstance(event, Delta):
                answered += len(event.text) if event.kind == "answer" else 0
                if time.monotonic() - last >= PROGRESS_EVERY_S:
                    message = f"answering: {answered} characters" if answered else "reasoning"
            elif isinstance(event, Notice):
                message = event.text
            elif isinstance(event, Done):
                result = event.result
            if message is not None:
                progress += 1
                last = time.monotonic()
                await ctx.report_progress(progress, None, message)
    except BaseException:  # cancelled by the client (or it left): the model stops within one token
        session.cancel()
        raise
    if result is None:  # pragma: no cover - send() always ends with a Done
        raise ToolError("the answer ended without a result.")
    return result
