"""Chat completions: a request's conversation answered by the core, as items the routes render as JSON or SSE.

The item stream is the same for streamed and whole responses: Text items (answer or reasoning) as they come,
KEEPALIVE while nothing happens, then Source items (the passages, numbered exactly as the answer's [n] markers:
the core numbers them in prompt order, known once the answer is done) and one Outcome.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deepkb.answer.stream import ABOUT_THE_ANSWER, AskOptions, AskResult, Delta, Done, Notice, Retry, model_events
from deepkb.retrieval.abstain import reads_many_languages
from deepkb.server.cache import AnswerCache, CachedAnswer, cache_key
from deepkb.server.engine import ModelHost, Worker
from deepkb.server.metrics import Metrics
from deepkb.server.policy import WITHHELD, Blocklist, Screen, Withheld
from deepkb.server.queue import GenerationQueue, QueueFull, Slot
from deepkb.server.schema import MODEL_NORAG, ChatCompletionRequest, ChatMessage
from deepkb.server.settings import ServerSettings
from deepkb.server.sources import footer, numbered_sources, source_data, strip_footer
from deepkb.server.tasks import frontend_task, task_reply

if TYPE_CHECKING:
    from deepkb.kb import KnowledgeBase

KEEPALIVE = object()


class BadRequest(Exception):
    """The request is well-formed JSON but cannot be answered as asked (400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class SourceItem:
    n: int
    data: dict[str, Any]  # source_data(): Open WebUI's shape


@dataclass(frozen=True)
class TextItem:
    kind: str  # "content" or "reasoning"
    text: str


@dataclass
class Outcome:
    """How the answer ended: the full texts, the cited sources, token counts, and why it stopped."""

    content: str = ""
    reasoning: str = ""
    citations: list[dict[str, Any]] = field(default_factory=list)  # cited passages, each with its marker number
    sources: list[dict[str, Any]] = field(default_factory=list)  # every passage shown, as Open WebUI source data
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    cached: bool = False
    queue_wait_ms: float = 0.0  # time spent waiting for a generation slot
    support: list[dict[str, Any]] = field(default_factory=list)  # each answer sentence against what it cites
    notice: str | None = None  # how the answer ended (stopped repeating itself, cut at max tokens): not its text

    def info(self) -> dict[str, Any]:
        """deepkb's own figures, sent beside OpenAI's fields."""
        unsupported = sum(not s["supported"] for s in self.support)
        return {
            "cached": self.cached, "queue_wait_ms": self.queue_wait_ms, "support": self.support,
            "unsupported": unsupported, "notice": self.notice,
        }  # fmt: skip


@dataclass(frozen=True)
class Job:
    """One chat request, checked and ready to answer."""

    model: str
    question: str
    history: list[tuple[str, str]]
    messages: list[dict[str, str]]  # for deepkb-norag: the conversation as given
    options: AskOptions
    key: str | None  # answer-cache key (None: not cacheable)
    llm_name: str | None
    task: str | None = None  # a front-end's title/tags/follow-ups request to `deepkb` (deepkb.server.tasks)


def conversation(messages: list[ChatMessage]) -> tuple[str, list[tuple[str, str]]]:
    """(question, earlier (question, answer) turns) from OpenAI messages; system prompts are deepkb's own."""
    turns: list[tuple[str, str]] = []
    asked: list[str] = []
    for message in messages:
        text = message.text().strip()
        if message.role == "user":
            asked.append(text)
        elif message.role == "assistant":
            answer = strip_footer(text)
            if asked:
                turns.append(("\n\n".join(asked), answer))
                asked = []
            elif turns:
                turns[-1] = (turns[-1][0], f"{turns[-1][1]}\n\n{answer}")
    if messages[-1].role != "user":
        raise BadRequest('the last message must be the user\'s question (role "user").', "messages")
    question = "\n\n".join(q for q in asked if q)
    if not question:
        raise BadRequest("the user's last message is empty.", "messages")
    return question, turns


# the answerer -------------------------------------------------------------------------------------------------
class Answerer:
    """Turns chat requests into items: the cache first, else a queued generation on a worker thread."""

    def __init__(
        self,
        settings: ServerSettings,
        kb: KnowledgeBase,
        host: ModelHost,
        queue: GenerationQueue,
        cache: AnswerCache,
        metrics: Metrics,
        blocklist: Blocklist,
    ) -> None:
        self.settings, self.kb, self.host = settings, kb, host
        self.queue, self.cache, self.metrics, self.blocklist = queue, cache, metrics, blocklist
        self.workers: set[Worker] = set()  # running now; cancelled at shutdown

    def kb_version(self) -> str:
        return str(self.kb.store.epoch())

    async def prepare(self, body: ChatCompletionRequest) -> Job:
        """Check the request and work out its cache key."""
        if len(body.messages) > self.settings.max_messages:
            raise BadRequest(
                f"{len(body.messages)} messages is more than this server accepts ({self.settings.max_messages}).",
                "messages",
            )
        question, history = conversation(body.messages)
        s = self.settings
        if body.model != MODEL_NORAG and (task := frontend_task(question)):
            return Job(body.model, question, [], [], AskOptions(), None, None, task=task)
        max_tokens = body.max_completion_tokens or body.max_tokens or s.max_tokens
        temperature = AskOptions.temperature if body.temperature is None else body.temperature
        options = AskOptions(
            answer_tokens=max_tokens, temperature=temperature,
            cross_language=reads_many_languages(self.kb.settings.embedding_model),
        )  # fmt: skip
        llm = self.host.llm
        llm_name = llm.name if llm is not None else None
        messages = [
            {"role": "user" if m.role in ("tool", "function") else "system" if m.role == "developer" else m.role,
             "content": m.text()}
            for m in body.messages
        ]  # fmt: skip
        key = None
        if self.settings.cache_size > 0 and (llm is not None or body.model != MODEL_NORAG):
            version = await asyncio.to_thread(self.kb_version)
            params = {"max_tokens": max_tokens, "temperature": temperature, "footer": s.sources_footer}
            convo = messages if body.model == MODEL_NORAG else [*history, (question, "")]
            key = cache_key(convo, f"{body.model}:{llm_name}", version, params)
        return Job(body.model, question, history, messages, options, key, llm_name)

    async def items(self, job: Job, started: float, tick: float) -> AsyncIterator[object]:
        """The answer's items (KEEPALIVE after each `tick` seconds without one); raises QueueFull (before any
        other item) when no generation slot comes free in time."""
        if job.task:  # answered at once: it never waits behind a generation
            reply = task_reply(job.task, job.question)
            yield TextItem("content", reply)
            yield Outcome(content=reply)
            return
        cached = self.cache.get(job.key) if job.key else None
        if cached is not None:
            self.metrics.cache_hits.inc()
            for item in _replay(cached):
                yield item
            return
        if job.key:
            self.metrics.cache_misses.inc()
        slot: Slot | None = None
        acquire = asyncio.ensure_future(self.queue.acquire())
        try:
            while not acquire.done():
                await asyncio.wait({acquire}, timeout=tick)
                if not acquire.done():
                    yield KEEPALIVE
            slot = acquire.result()
        except QueueFull as exc:  # the wait ran out (or, rarely, the queue filled since the route checked it)
            self.metrics.rejections.labels(reason=exc.reason).inc()
            raise
        finally:
            if slot is None and not acquire.done():
                acquire.cancel()  # the client left while waiting
        self.metrics.queue_wait.observe(slot.waited)
        async for item in self._generate(job, slot, started, tick):
            yield item

    async def _generate(self, job: Job, slot: Slot, started: float, tick: float) -> AsyncIterator[object]:
        metrics, queue = self.metrics, self.queue
        metrics.in_flight.inc()
        began = time.perf_counter()

        def finished() -> None:  # on the worker thread, once the model is free
            queue.note_duration(time.perf_counter() - began)
            metrics.in_flight.dec()
            slot.release()

        used: dict[str, Any] = {}
        produce = self._norag if job.model == MODEL_NORAG else self._rag
        try:
            worker = Worker(lambda cancel: produce(job, cancel, used), finished).start()
        except BaseException:
            finished()
            raise
        self.workers.add(worker)
        screen = Screen(self.blocklist)
        out = Outcome(queue_wait_ms=round(slot.waited * 1000, 1))
        streamed_answer = False
        first_token = True
        complete = False

        def text(kind: str, piece: str) -> Iterator[TextItem]:
            if kind == "content" and not (out.content or screen.held(kind)):
                piece = piece.lstrip()  # the blank line after </think>
            released = screen.feed(kind, piece) if piece else ""
            if released:
                if kind == "content":
                    out.content += released
                else:
                    out.reasoning += released
                yield TextItem(kind, released)

        try:
            async for event in worker.events(tick):
                if event is None:
                    yield KEEPALIVE
                    continue
                if isinstance(event, Delta):
                    if first_token:
                        metrics.ttft.observe(time.perf_counter() - started)
                        first_token = False
                    is_answer = event.kind == "answer"
                    streamed_answer |= is_answer
                    for item in text("content" if is_answer else "reasoning", event.text):
                        yield item
                elif isinstance(event, Notice) and event.kind in ABOUT_THE_ANSWER:
                    out.notice = event.text  # a field, not content: it would come back as history next turn
                elif isinstance(event, Notice):
                    said = bool(out.content or screen.held("content"))
                    line = f"\n\n{event.text}" if said else event.text
                    for item in text("content", line if streamed_answer else f"{line}\n\n"):
                        yield item
                elif isinstance(event, Retry):
                    streamed_answer = False  # the next answer starts afresh
                    lead = "\n\n" if out.content or screen.held("content") else ""
                    for item in text("content", f"{lead}{event.text}\n\n"):
                        yield item
                elif isinstance(event, Done):
                    for item in self._finish(event.result, job, out, screen, streamed_answer, used):
                        yield item
            complete = True
        except Withheld:
            metrics.withheld.inc()
            worker.cancel.set()
            complete = True
            lead = "\n\n" if out.content else ""
            out.content += lead + WITHHELD
            out.finish_reason = "content_filter"
            out.citations = []
            yield TextItem("content", lead + WITHHELD)
        finally:
            self.workers.discard(worker)
            if not worker.finished.is_set():
                worker.cancel.set()
                if not complete:
                    metrics.cancelled.inc()
        yield out

    def _finish(
        self, result: AskResult, job: Job, out: Outcome, screen: Screen, streamed_answer: bool, used: dict[str, Any]
    ) -> Iterator[object]:
        """The end of an answer: its sources (numbered as its markers), the rest of the text, figures, caching."""
        texts: list[tuple[str, str]] = []
        if not streamed_answer and result.answer:
            texts.append(("content", result.answer))  # passages when no model answered
        out.citations = [c.to_json() for c in result.citations]
        out.support = [s.to_json() for s in result.support]
        if self.settings.sources_footer:
            texts.append(("content", footer(out.citations, result.unsupported, len(result.support))))
        for kind, piece in texts:
            released = screen.feed(kind, piece)
            if released:
                out.content += released
                yield TextItem(kind, released)
        for kind in ("reasoning", "content"):
            if rest := screen.flush(kind):
                out.content, out.reasoning = (out.content + rest, out.reasoning) if kind == "content" else (
                    out.content, out.reasoning + rest)  # fmt: skip
                yield TextItem(kind, rest)
        for n, hit in numbered_sources(result):
            out.sources.append(source_data(n, hit))
            yield SourceItem(n, out.sources[-1])
        t = result.timings
        out.prompt_tokens = t.prompt_tokens or 0
        out.completion_tokens = t.completion_tokens or 0
        if result.truncated or (out.completion_tokens and out.completion_tokens >= job.options.answer_tokens):
            out.finish_reason = "length"
        if t.tokens_per_s:
            self.metrics.tokens_per_s.observe(t.tokens_per_s)
        self.metrics.completion_tokens.inc(out.completion_tokens)
        failed = result.cancelled or result.fallback or result.error or result.retried
        if job.key and not failed and used.get("llm_name") == job.llm_name:
            self.cache.put(job.key, _to_cached(out))
            self.metrics.cache_entries.set(len(self.cache))

    # producers: run on the worker thread ---------------------------------------------------------------------
    def _rag(self, job: Job, cancel: threading.Event, used: dict[str, Any]) -> Iterator[object]:
        """The conversation core's events; a model failing mid-answer is replaced there (host.replace)."""
        from deepkb.conversation.session import ChatSession

        llm = self.host.llm
        used["llm_name"] = llm.name if llm is not None else None
        session = ChatSession(self.kb, llm, options=job.options, history=job.history, save=False)
        yield from session.send(job.question, options=job.options, cancel=cancel, replace_model=self.host.replace)

    def _norag(self, job: Job, cancel: threading.Event, used: dict[str, Any]) -> Iterator[object]:
        """deepkb-norag: the conversation as given, straight to the model (front-ends' title and tag tasks)."""
        llm = self.host.llm
        used["llm_name"] = llm.name if llm is not None else None
        return model_events(llm, job.question, job.messages, job.options, cancel, self.host.mode)


def _to_cached(out: Outcome) -> CachedAnswer:
    return CachedAnswer(
        out.content, out.reasoning, out.sources, out.prompt_tokens, out.completion_tokens, out.finish_reason,
        citations=out.citations, support=out.support, notice=out.notice,
    )  # fmt: skip


def _replay(cached: CachedAnswer) -> Iterator[object]:
    for data in cached.sources:
        meta = data["metadata"][0]
        yield SourceItem(meta["n"], data)
    if cached.reasoning:
        yield TextItem("reasoning", cached.reasoning)
    if cached.content:
        yield TextItem("content", cached.content)
    yield Outcome(
        cached.content, cached.reasoning, list(cached.citations), list(cached.sources), cached.prompt_tokens,
        cached.completion_tokens, cached.finish_reason, cached=True, support=list(cached.support),
        notice=cached.notice,
    )  # fmt: skip
