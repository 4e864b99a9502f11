"""create_app(settings): the FastAPI application of `deepkb serve`; all state lives on the app object."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deepkb.errors import DeepKBError, UsageError
from deepkb.scope import make_scope
from deepkb.server import guard
from deepkb.server.cache import AnswerCache
from deepkb.server.chat import Answerer, BadRequest
from deepkb.server.engine import ModelHost
from deepkb.server.guard import ApiError, error_response
from deepkb.server.metrics import Metrics
from deepkb.server.policy import Blocklist
from deepkb.server.queue import GenerationQueue, QueueFull
from deepkb.server.render import SSE_HEADERS, ChunkWriter, collect, completion
from deepkb.server.schema import MODELS, ChatCompletionRequest, SearchRequest
from deepkb.server.settings import ServerSettings

if TYPE_CHECKING:
    from deepkb.embedders import Embedder
    from deepkb.kb import KnowledgeBase
    from deepkb.watch import Watcher

log = logging.getLogger("deepkb.server")


def _busy(exc: QueueFull) -> ApiError:
    return ApiError(
        429, str(exc), "rate_limit_error", "rate_limit_exceeded", headers={"Retry-After": str(exc.retry_after)}
    )


class ServerState:
    """Everything one server holds: the knowledge base, the model host, queue, cache, metrics, watcher."""

    def __init__(self, settings: ServerSettings, embedder: Embedder | None = None) -> None:
        from deepkb.kb import KnowledgeBase

        self.settings = settings
        self.metrics = Metrics()
        self.blocklist = Blocklist.load(settings.blocklist)
        self.kb: KnowledgeBase = KnowledgeBase.open(settings.kb, embedder=embedder, **settings.llm_overrides())
        try:
            settings.check_model(self.kb.settings.llm_url)
        except UsageError:
            self.kb.close()
            raise
        self.cache = AnswerCache(settings.cache_size)
        self.host = ModelHost(settings, self.kb.settings, self.metrics)
        self.watcher: Watcher | None = None
        self.watch_error: str | None = None
        self.kb_ready = False
        self.answerer: Answerer | None = None
        self.queue: GenerationQueue | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def ready(self) -> bool:
        return self.kb_ready and self.host.loaded.is_set()

    # lifecycle ----------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def lifespan(self, app: FastAPI):
        s = self.settings
        slots = s.parallel if self.kb.settings.llm_url else 1
        self.queue = GenerationQueue(slots, s.queue_size, s.queue_wait, on_change=self._queue_changed)
        self.answerer = Answerer(s, self.kb, self.host, self.queue, self.cache, self.metrics, self.blocklist)
        task = asyncio.create_task(self._start())
        self._tasks.add(task)
        try:
            yield
        finally:
            task.cancel()
            for worker in list(self.answerer.workers):
                worker.cancel.set()
            await asyncio.to_thread(self._stop)

    async def _start(self) -> None:
        """Warm the knowledge base and load the model side by side; then start watching."""
        await asyncio.gather(asyncio.to_thread(self._warm_kb), asyncio.to_thread(self.host.load))
        self.kb_ready = True
        self.metrics.ready.set(1)
        log.info("ready: mode %s", self.host.mode)
        if self.settings.watch:
            await asyncio.to_thread(self._start_watch)

    def _warm_kb(self) -> None:
        """Load the embedding model and the vector index now, so the first question does not pay for them."""
        if self.kb.dim is not None:
            self.kb.search("warm up", k=1)
        else:
            self.kb.embedder.embed(["warm up"])

    def _start_watch(self) -> None:
        """The watcher writes through the server's own KnowledgeBase: one Storage and one HNSW graph per process,
        so searches see each commit without repairing the index from SQLite."""
        from deepkb.watch import Watcher

        watcher = Watcher(
            self.kb, self.settings.watch, holder="deepkb serve", on_batch=self._watch_batch,
            on_error=lambda message: log.warning("watch: %s", message),
        )  # fmt: skip
        try:
            watcher.start()
        except DeepKBError as exc:
            self.watch_error = str(exc)
            log.warning("not watching: %s", exc)
            return
        self.watcher = watcher

    def _watch_batch(self, report: Any) -> None:
        """Every synced change makes cached answers stale."""
        if report.changes:
            self.cache.clear()
            self.metrics.cache_entries.set(0)
        for change in report.changes:
            self.metrics.watch_events.labels(action=change.action).inc()

    def _stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.kb.close()  # waits for the searches in flight

    def _queue_changed(self, busy: int, waiting: int) -> None:
        self.metrics.queue_depth.set(waiting)

    def require_ready(self) -> None:
        if not self.ready:
            raise ApiError(503, "deepkb is starting (loading the knowledge base and the model); retry shortly.",
                           "server_error", "not_ready", headers={"Retry-After": "5"})  # fmt: skip

    def status(self) -> dict[str, Any]:
        """What /ready reports."""
        llm = self.host.llm
        return {
            "ready": self.ready, "knowledge_base": self.kb_ready, "mode": self.host.mode,
            "model": llm.name if llm is not None else None, "reason": self.host.reason,
            "watching": [str(r.path) for r in self.watcher.roots] if self.watcher else [],
            "watch_error": self.watch_error,
        }  # fmt: skip

    def counts(self) -> dict[str, int]:
        return self.kb.store.counts()


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "the request is not valid.", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON.", None
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    where = ".".join(loc) or None
    message = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        message = "required field is missing"
    if not loc and first.get("type") in ("model_attributes_type", "dict_type"):
        return "the request body must be a JSON object.", None
    return (f"{where}: {message}" if where else message), where


def create_app(settings: ServerSettings, *, embedder: Embedder | None = None) -> FastAPI:
    """The server for one knowledge base; refuses unsafe settings (a non-loopback address without a key)."""
    settings.check()
    state = ServerState(settings, embedder)
    app = FastAPI(title="deepkb", lifespan=state.lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.deepkb = state
    guard.install(app, state)  # Host and Origin checks, CORS, auth and limits around every route and mount

    @app.exception_handler(ApiError)
    async def _apierror_response(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(ApiError(400, message, param=param, code="invalid_request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code)
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404:
            detail = f"no route {request.method} {request.url.path}; see /v1/models, /v1/chat/completions, /v1/search."
        return error_response(ApiError(exc.status_code, detail, code=code))

    @app.exception_handler(UsageError)
    async def _usage(request: Request, exc: UsageError) -> JSONResponse:
        return error_response(ApiError(400, str(exc), code="invalid_request"))

    @app.exception_handler(DeepKBError)
    async def _deepkb(request: Request, exc: DeepKBError) -> JSONResponse:
        return error_response(ApiError(500, str(exc), "server_error", "internal_error"))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:  # logged by uvicorn; the server stays up
        return error_response(
            ApiError(500, f"internal error ({type(exc).__name__}).", "server_error", "internal_error")
        )

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        info = state.status()
        return JSONResponse(info, status_code=200 if info["ready"] else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        if state.kb_ready:
            counts = await asyncio.to_thread(state.counts)
            state.metrics.documents.set(counts["documents"])
            state.metrics.chunks.set(counts["chunks"])
        state.metrics.cache_entries.set(len(state.cache))
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [_model(m) for m in MODELS]}

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str) -> dict:
        if model_id not in MODELS:
            raise _unknown_model(model_id)
        return _model(model_id)

    @app.post("/v1/search")
    async def search(body: SearchRequest) -> dict:
        state.require_ready()

        scope = make_scope(body.in_, body.type) or None

        def run() -> list:
            return state.kb.search(body.query, k=body.k, mode=body.mode, scope=scope)

        hits = await asyncio.to_thread(run)
        return {
            "query": body.query,
            "mode": body.mode,
            "hits": [h.to_json() for h in hits],  # the one hit shape, as `deepkb search --json`
        }

    @app.get("/v1/documents")
    async def documents() -> dict:
        state.require_ready()

        def run() -> list[dict]:
            return state.kb.documents()

        return {"object": "list", "data": await asyncio.to_thread(run)}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        started = time.perf_counter()
        if body.model not in MODELS:
            raise _unknown_model(body.model)
        state.require_ready()
        answerer = state.answerer
        try:
            job = await answerer.prepare(body)
        except BadRequest as exc:
            raise ApiError(400, str(exc), param=exc.param, code="invalid_request") from None
        hit = job.key is not None and answerer.cache.get(job.key) is not None
        if not hit:
            try:
                state.queue.check()
            except QueueFull as exc:
                state.metrics.rejections.labels(reason=exc.reason).inc()
                raise _busy(exc) from None
        headers = {"X-DeepKB-Cache": "hit" if hit else "miss"}
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            writer = ChunkWriter(body.model, include_usage)
            items = answerer.items(job, started, settings.keepalive)
            return StreamingResponse(
                writer.stream(items), media_type="text/event-stream", headers={**SSE_HEADERS, **headers}
            )
        items = answerer.items(job, started, tick=1.0)
        try:
            outcome = await collect(_until_gone(items, request))
        except QueueFull as exc:
            raise _busy(exc) from None
        return JSONResponse(completion(body.model, outcome), headers=headers)

    from deepkb.server.mcp import mount_mcp

    mount_mcp(app, state)  # MCP at /mcp, behind the same middleware as the routes above
    return app


async def _until_gone(items: Any, request: Request) -> Any:
    """Pass items on until the client disconnects; then closing the generator cancels the generation."""
    try:
        async for item in items:
            if await request.is_disconnected():
                return
            yield item
    finally:
        await items.aclose()


def _model(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "deepkb"}


def _unknown_model(model_id: str) -> ApiError:
    return ApiError(404, f"the model {model_id!r} does not exist; use one of: {', '.join(MODELS)}.",
                    code="model_not_found", param="model")  # fmt: skip
