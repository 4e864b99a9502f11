"""ModelHost (which model answers now, degrading instead of dying) and Worker (a blocking answer on its own thread).

The conversation core is synchronous: an answer is an iterator of events that blocks while the model computes.
A Worker runs one such iterator on a thread and hands its events to the event loop through an asyncio.Queue,
so the loop keeps serving /health, /v1/search and keep-alives; setting Worker.cancel stops the model within
one token (the core checks it between tokens) and the thread then ends, releasing the model.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator

from deepkb.config import Settings
from deepkb.errors import DeepKBError
from deepkb.llm import LLM, open_configured_llm, open_llm
from deepkb.paths import prompt_cache
from deepkb.server.metrics import Metrics
from deepkb.server.settings import ServerSettings

log = logging.getLogger("deepkb.server")

_END = object()


class ModelHost:
    """Holds the answering model: the configured one, else the fallback model, else none (retrieval-only).

    mode is one of loading, model, fallback-model, retrieval-only; `reason` says why the server degraded.
    """

    def __init__(self, settings: ServerSettings, llm_settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.llm_settings = llm_settings  # the knowledge base's settings: model, llm_url, context, GPU layers
        self.metrics = metrics
        self.mode = "loading"
        self.reason: str | None = None
        self.llm: LLM | None = None
        self._lock = threading.Lock()  # guards switching models; generations never wait on it
        self.loaded = threading.Event()

    def load(self) -> None:
        """Load the configured model (blocking; the server runs this on a thread at startup)."""
        s = self.settings
        try:
            if s.retrieval_only:
                self._set(None, "retrieval-only", "retrieval-only mode was asked for (--retrieval-only)")
                return
            try:
                llm = open_configured_llm(self.llm_settings)
            except DeepKBError as exc:
                self.failed(None, f"the model could not be loaded: {exc}")
                return
            self._set(llm, "model", None)
        finally:
            self.loaded.set()

    def failed(self, llm: LLM | None, reason: str) -> None:
        """The current model failed (to load, or mid-answer): switch to the fallback model, else retrieval-only.

        An upstream server (--llm-url) without a fallback model stays in use: each failing answer degrades to the
        best passages on its own, and the next one tries the upstream again.
        """
        with self._lock:
            if llm is not None and llm is not self.llm:
                return  # another answer already switched away from it
            self.metrics.model_errors.inc()
            log.warning("model failure: %s", reason)
            s = self.settings
            if self.mode in ("loading", "model") and s.fallback_model:
                try:
                    fallback = self._open_fallback()
                except DeepKBError as exc:
                    reason = f"{reason}; the fallback model failed too: {exc}"
                else:
                    self._set(fallback, "fallback-model", reason)
                    return
            if self.mode == "model" and self.llm_settings.llm_url and llm is not None:
                return
            self._set(None, "retrieval-only", reason)

    def replace(self, llm: LLM, reason: str) -> LLM | None:
        """answer_events' ReplaceModel: the model to answer with after `llm` failed mid-answer."""
        self.failed(llm, reason)
        return self.llm

    def _open_fallback(self) -> LLM:
        """The fallback GGUF, run locally with the knowledge base's context, GPU and thread settings."""
        s = self.llm_settings
        return open_llm(
            self.settings.fallback_model, context_size=s.llm_context, gpu_layers=s.gpu_layers,
            threads=s.llm_threads or None, cache_dir=prompt_cache(s.home),
        )  # fmt: skip

    def _set(self, llm: LLM | None, mode: str, reason: str | None) -> None:
        self.llm, self.mode, self.reason = llm, mode, reason
        self.metrics.set_mode(mode)
        if reason:
            log.warning("answering mode: %s (%s)", mode, reason)


class Worker:
    """Runs `produce(cancel)` on its own thread; iterate events() on the event loop to receive what it yields.

    `on_exit` runs on the thread once the producer has finished (the model is free again), whatever happened.
    """

    def __init__(
        self, produce: Callable[[threading.Event], Iterator[object]], on_exit: Callable[[], None] | None = None
    ) -> None:
        self.cancel = threading.Event()
        self._produce = produce
        self._on_exit = on_exit
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deepkb-answer", daemon=True)

    def start(self) -> Worker:
        self._thread.start()
        return self

    def _put(self, item: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the server is shutting down
            self.cancel.set()

    def _run(self) -> None:
        try:
            for event in self._produce(self.cancel):
                self._put(event)
        except BaseException as exc:  # noqa: BLE001 - handed to the loop, which decides
            self._put(exc)
        finally:
            self.finished.set()
            self._put(_END)
            if self._on_exit:
                self._on_exit()

    async def events(self, timeout: float) -> AsyncIterator[object | None]:
        """The producer's events; None whenever `timeout` seconds pass without one (time for a keep-alive).

        An exception raised by the producer is re-raised here.
        """
        getter: asyncio.Future | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(self._queue.get())
                done, _ = await asyncio.wait({getter}, timeout=timeout)  # the getter survives a timeout
                if not done:
                    yield None
                    continue
                item, getter = getter.result(), None
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if getter is not None:
                getter.cancel()
