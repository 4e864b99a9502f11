"""Ask: retrieve → abstain or fall back → prompt → stream the model → verified citations, with timings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field

from deepkb.answer.citations import Citation, MarkerFilter, ThinkSplitter, resolve_citations, split_think
from deepkb.answer.grounding import Support, check_answer
from deepkb.answer.prompt import NOT_IN_DOCUMENTS, build_prompt, pack_excerpts, spread_documents
from deepkb.answer.repetition import LOOP_NOTICE, RepeatGuard
from deepkb.display import snippet
from deepkb.errors import LLMError, ModelLoadError, ModelNotFoundError
from deepkb.llm import LLM, Usage
from deepkb.retrieval.abstain import DEFAULT_MIN_RELEVANCE, OnTopic, on_topic, other_script
from deepkb.retrieval.excerpt import Embed, Scored, score_segments
from deepkb.retrieval.search import Hit
from deepkb.scope import Scope

# DeepSeek-R1 distills think inside <think>...</think>; an empty, closed block makes them answer directly.
SKIP_REASONING_PREFILL = "<think>\n\n</think>\n\n"

# Prompt tokens the sources may take when the model runs on a CPU, before deepkb has measured the machine: ~384 tokens
# of sources. Once a run has measured the prefill speed, the budget is what the machine prefills in the time left
# before CPU_FIRST_CHARACTER_S, counted from when the user started waiting (for `deepkb ask`, the process start:
# start-up, model loading and retrieval come first), within CPU_SOURCE_TOKENS_RANGE. A GPU gets all that fit the
# context. On a CPU the sources are excerpts: the sentences of each chunk that match the question (deepkb.retrieval.excerpt).
CPU_SOURCE_TOKENS = 384
CPU_FIRST_CHARACTER_S = 8.0
FIRST_TOKEN_S = 0.3  # after the prefill: the first token's decode and its printing
CPU_PROMPT_OVERHEAD_TOKENS = 48  # the question, source labels and template end, prefilled with the sources
CPU_SOURCE_TOKENS_RANGE = (192, 2048)


def cpu_source_tokens(prefill_tokens_per_s: float | None, waited_s: float = 0.0) -> int:
    """The sources' token budget on a CPU: what this machine prefills in the time left before the first answer
    character is due (CPU_FIRST_CHARACTER_S after the user started waiting, `waited_s` ago), within bounds."""
    if not prefill_tokens_per_s:
        return CPU_SOURCE_TOKENS
    left = CPU_FIRST_CHARACTER_S - waited_s - FIRST_TOKEN_S
    budget = prefill_tokens_per_s * left - CPU_PROMPT_OVERHEAD_TOKENS
    low, high = CPU_SOURCE_TOKENS_RANGE
    return int(min(max(budget, low), high))


GET_A_MODEL = "No answer model: run `deepkb models pull` or pass --model PATH to a .gguf file."
CANCELLED = "Cancelled; the answer so far is kept."

Retriever = Callable[[str, int], list[Hit]]
OnPiece = Callable[[str, str], None]  # kind ("reasoning", "answer", "notice"), text
History = Sequence[tuple[str, str]]  # earlier (question, answer) turns of a conversation, oldest first


@dataclass(frozen=True)
class AskOptions:
    """How one question is answered."""

    k: int = 6
    """Chunks to retrieve; as many as fit the context go into the prompt."""
    min_relevance: float = DEFAULT_MIN_RELEVANCE
    """Abstain when no passage is this similar to the question (dense cosine) and keyword search finds no
    passage with all of the question's specific words (deepkb.retrieval.abstain)."""
    answer_tokens: int = 1024
    """Room left in the context for the reply (reasoning included); at most half the context."""
    temperature: float = 0.6
    """DeepSeek recommends 0.5-0.7 for the R1 distills."""
    skip_reasoning: bool = False
    """Prefill an empty <think></think> so R1 models answer at once."""
    show_thinking: bool = False
    """Include the model's reasoning in to_json()."""
    fallback_passages: int = 3
    """Passages shown when no model can answer."""
    source_tokens: int | None = None
    """Prompt tokens the sources may take (the best always goes in); None: cpu_source_tokens() on a CPU, else all."""
    excerpts: bool = True
    """Under a source budget, send each chunk's sentences that match the question (with their own line spans)
    instead of whole chunks: more of the retrieved chunks fit the same tokens."""
    history_tokens: int | None = None
    """Prompt tokens earlier turns may take (newest first); None: as many as the sources on a CPU, else all that fit."""
    cross_language: bool = False
    """The embedding model reads many languages (abstain.reads_many_languages): a question written in another
    script than the passages is searched as usual. False (an English-only embedder): such a question is declined
    with a notice, since its search results are noise."""
    scope: Scope | None = None
    """Search only these folders, files and kinds of file (`--in`, `--type`, the chat's /in and /type)."""


@dataclass
class Timings:
    """Where the time went."""

    retrieve_ms: float | None = None
    load_ms: float | None = None  # getting the model ready (loading a GGUF happens once per process)
    model_wait_ms: float | None = None  # of load_ms, what this answer waited (`deepkb ask` loads while it searches)
    prompt_tokens: int | None = None
    cached_prompt_tokens: int | None = None  # KV state reused (previous question or the on-disk prompt cache)
    prefill_ms: float | None = None  # prefill of the remaining prompt tokens, part of ttft_ms
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    completion_tokens: int | None = None
    generate_ms: float | None = None
    source_token_budget: int | None = None  # what the sources could take (None: all that fit the context)
    excerpt_ms: float | None = None  # splitting the chunks into sentences and scoring them (a CPU budget only)
    grounding_ms: float | None = None  # checking each answer sentence against its cited passages (grounding.py)

    def to_json(self) -> dict:
        return {
            "retrieve_ms": self.retrieve_ms,
            "load_ms": self.load_ms,
            "model_wait_ms": self.model_wait_ms,
            "prompt_tokens": self.prompt_tokens,
            "cached_prompt_tokens": self.cached_prompt_tokens,
            "prefill_ms": self.prefill_ms,
            "ttft_ms": self.ttft_ms,
            "tokens_per_s": self.tokens_per_s,
            "completion_tokens": self.completion_tokens,
            "generate_ms": self.generate_ms,
            "source_token_budget": self.source_token_budget,
            "excerpt_ms": self.excerpt_ms,
            "grounding_ms": self.grounding_ms,
        }


@dataclass
class AskResult:
    """An answer with the sources it cites, or an abstention, or the best passages when no model could run."""

    question: str
    answer: str
    citations: list[Citation] = field(default_factory=list)
    also_retrieved: list[Hit] = field(default_factory=list)
    model: str | None = None
    abstained: bool = False
    timings: Timings = field(default_factory=Timings)
    thinking: str = ""
    dropped_markers: int = 0
    fallback: bool = False  # no model answered; `answer` lists the best passages
    notice: str | None = None  # one line for the user (how to get a model, why the answer is empty)
    show_thinking: bool = False
    cancelled: bool = False  # stopped by a cancel: `answer` and `citations` are what came before it
    looped: bool = False  # stopped because the reply repeated itself (deepkb.answer.repetition)
    truncated: bool = False  # cut at the answer-token limit (--max-tokens), not ended by the model
    error: str | None = None  # the model failed mid-answer (the partial answer is kept); None when it did not
    retried: bool = False  # a new answer after the model failed and was replaced (answer_events' replace_model)
    conversation_id: str | None = None  # set by ChatSession when the turn is saved
    turn: int | None = None  # the turn's number in that conversation, from 1
    retrieval: dict | None = (
        None  # how ChatSession searched: first question, new topic or follow-up (deepkb.conversation.follow_up)
    )
    support: list[Support] = field(default_factory=list)  # each answer sentence checked against what it cites

    @property
    def unsupported(self) -> int:
        """How many answer sentences their cited passages do not back."""
        return sum(not s.supported for s in self.support)

    def to_json(self) -> dict:
        """The `deepkb ask --json` object."""
        data = {
            "answer": self.answer,
            "citations": [c.to_json() for c in self.citations],
            "model": self.model,
            "abstained": self.abstained,
            "timings": self.timings.to_json(),
            "question": self.question,
            "also_retrieved": [h.to_json() for h in self.also_retrieved],
            "dropped_markers": self.dropped_markers,
            "fallback": self.fallback,
            "notice": self.notice,
            "cancelled": self.cancelled,
            "truncated": self.truncated,
            "conversation_id": self.conversation_id,
            "turn": self.turn,
            "retrieval": self.retrieval,
            "support": [s.to_json() for s in self.support],
        }
        if self.show_thinking:
            data["thinking"] = self.thinking
        return data


@dataclass(frozen=True)
class Retrieved:
    """The retrieved passages, before any model token: a shell can show the sources now."""

    hits: list[Hit]


@dataclass(frozen=True)
class Delta:
    """A piece of the streamed reply; kind is "answer" (its [n] markers already checked) or "reasoning"."""

    kind: str
    text: str


@dataclass(frozen=True)
class Notice:
    """One line for the user: no model, fallback, loop stopped, cut at max tokens, cancelled, a failure mid-answer.

    `kind` says which. "loop" and "length" say how a real answer ended: a shell shows them beside the answer, never
    inside its text (the server sends them as a field, so they do not come back as history on the next turn)."""

    text: str
    kind: str = "info"  # "fallback", "cancelled", "loop", "length", "error", "info"


ABOUT_THE_ANSWER = ("loop", "length")  # notices about how an answer ended, kept out of its text


@dataclass(frozen=True)
class Retry:
    """The model failed mid-answer and was replaced: what follows is a new answer to the same retrieved passages
    (from the fallback model, or the passages themselves). A shell shows `text`; it is not part of any answer."""

    text: str


@dataclass(frozen=True)
class Done:
    """The final result: verified citations, timings, flags. Every answer ends with exactly one."""

    result: AskResult


Event = Retrieved | Delta | Notice | Retry | Done
# Given the model that failed and why, the model to answer with instead (the same one when there is none).
ReplaceModel = Callable[[LLM, str], "LLM | None"]


def answer_events(
    question: str,
    retrieve: Retriever,
    llm: LLM | Callable[[], LLM] | None,
    options: AskOptions | None = None,
    *,
    history: History = (),
    relevance: OnTopic = on_topic,
    cancel: threading.Event | None = None,
    embed: Embed | None = None,
    waiting_since: float | None = None,
    replace_model: ReplaceModel | None = None,
) -> Iterator[Event]:
    """Answer `question` from the retrieved chunks as a stream of events that always ends with one Done.

    `llm` may be a zero-argument loader (called once, here); None answers with the best passages. A local
    model's lock is held from the prompt's build to its last token; `cancel` stops the reply within one token.
    Consumers iterate to the Done (or close the iterator), which releases the lock. `embed` (the knowledge base's
    embedder) scores the excerpts' sentences; `waiting_since` (a time.perf_counter() reading, default now) is when
    the user started waiting, which a CPU source budget counts from. `replace_model`: a model failing mid-answer is
    replaced once (a Retry event, then a new answer to the same passages: no second retrieval), see ReplaceModel.
    """
    opts = options or AskOptions()
    stop = cancel or threading.Event()
    started = time.perf_counter()
    since = started if waiting_since is None else waiting_since
    hits = retrieve(question, opts.k)
    timings = Timings(retrieve_ms=_ms(started))
    result = AskResult(question, "", timings=timings, show_thinking=opts.show_thinking)
    yield Retrieved(hits)

    if not opts.cross_language and (scripts := other_script(question, hits)):
        asked, found = (s.title() if s != "CJK" else s for s in scripts)
        result.answer, result.abstained, result.also_retrieved = NOT_IN_DOCUMENTS, True, hits
        result.notice = (
            f"The question is written in {asked} script and the documents in {found}; the embedding model matches "
            "one language only, so what it found is not about the question. Ask in the documents' language, or "
            "reindex with a multilingual embedding model (README: Questions in other languages)."
        )
        yield Delta("answer", NOT_IN_DOCUMENTS)
        yield Notice(result.notice, "language")
        yield Done(result)
        return

    if not relevance(question, hits, opts.min_relevance):
        result.answer, result.abstained, result.also_retrieved = NOT_IN_DOCUMENTS, True, hits
        yield Delta("answer", NOT_IN_DOCUMENTS)
        yield Done(result)
        return

    if llm is None:
        yield from _fallback(result, hits, opts, GET_A_MODEL)
        return
    # Under a source budget few chunks fit: spend them on different documents first (bench/context_recall.py).
    spread = spread_documents(hits)
    scored: Scored | None = None
    if opts.excerpts and (not isinstance(llm, LLM) or opts.source_tokens is not None or llm.runs_on_cpu):
        # Before the model is asked for: `deepkb ask` loads it on another thread meanwhile. Whether it runs on a CPU
        # (and needs excerpts) is known once it is loaded; on a GPU the scores are not used.
        scoring = time.perf_counter()
        scored = score_segments(question, spread, embed)
        timings.excerpt_ms = _ms(scoring)
    if not isinstance(llm, LLM):
        loading = time.perf_counter()
        try:
            llm = llm()
            timings.load_ms = _ms(loading)
        except (ModelNotFoundError, ModelLoadError) as exc:
            yield from _fallback(result, hits, opts, f"{exc} Showing the best passages instead.")
            return
    if stop.is_set():
        yield from _cancelled(result, hits)
        return
    for attempt in (1, 2):
        closing: list[Event] = []
        given: list[Hit] = []
        with _Holding(llm, stop) as held:
            if held:
                try:
                    closing = yield from _generate(
                        question, hits, spread, llm, opts, history, result, stop, scored, since, given
                    )
                except Exception as exc:  # noqa: BLE001 - a backend failing is replaced below, when it can be
                    if replace_model is None or attempt == 2:
                        raise
                    result.error = f"{type(exc).__name__}: {exc}"
        if not held:  # cancelled while another answer had the model
            closing = list(_cancelled(result, hits))
            break
        if not (result.error and replace_model is not None and attempt == 1 and not stop.is_set()):
            break
        failure, after = result.error, replace_model(llm, result.error)
        then = "answering again with the fallback model" if after not in (None, llm) else "the best passages follow"
        yield Retry(f"The model failed ({failure}); {then}.")  # the failed answer's closing events are dropped
        timings = Timings(retrieve_ms=timings.retrieve_ms, excerpt_ms=timings.excerpt_ms)
        result = AskResult(question, "", timings=timings, show_thinking=opts.show_thinking, retried=True)
        if after in (None, llm):  # no other model: this answer gets the passages
            closing = list(_fallback(result, hits, opts, GET_A_MODEL))
            break
        llm = after
    if result.answer and given and not result.abstained and not result.fallback:  # after the lock: on the CPU alone
        grounding = time.perf_counter()
        result.support = check_answer(result.answer, given, embed)
        timings.grounding_ms = _ms(grounding)
    yield from closing  # the Done comes after the lock is released: a consumer may stop reading there


def _generate(
    question: str,
    hits: list[Hit],
    spread: list[Hit],
    llm: LLM,
    opts: AskOptions,
    history: History,
    result: AskResult,
    stop: threading.Event,
    scored: Scored | None,
    since: float,
    given: list[Hit],
) -> Generator[Event, None, list[Event]]:
    """Prompt, stream and check citations, with the model's lock held; yields the deltas and returns the closing
    events (a Notice or none, then the Done). `given` receives the passages the prompt held, numbered as the
    markers."""
    timings = result.timings
    room = min(opts.answer_tokens, llm.context_size // 2)
    source_tokens = opts.source_tokens
    budgeted = source_tokens is not None or llm.runs_on_cpu
    candidates = spread if budgeted else hits  # `spread`: each document's best chunk before any second one
    if source_tokens is None and llm.runs_on_cpu:
        source_tokens = cpu_source_tokens(llm.prefill_tokens_per_s, time.perf_counter() - since)
    timings.source_token_budget = source_tokens
    prefill = SKIP_REASONING_PREFILL if opts.skip_reasoning else None
    if budgeted and scored is not None:
        candidates = pack_excerpts(candidates, scored, llm, source_tokens)
    history_tokens = opts.history_tokens
    if history_tokens is None and llm.runs_on_cpu:  # a new process prefills the history again: it costs time
        history_tokens = source_tokens
    try:
        prompt = build_prompt(
            question, candidates, llm, room, prefill, source_tokens, history=history, history_tokens=history_tokens
        )
    except LLMError as exc:
        return list(_fallback(result, hits, opts, f"{exc} Showing the best passages instead."))
    result.model = llm.name
    timings.prompt_tokens = prompt.prompt_tokens
    usage = Usage()
    stream = _Stream(llm, prompt.sources, timings, stop)
    try:
        yield from stream.run(prompt.messages, room, opts.temperature, usage)
    except _NoFirstToken as exc:  # e.g. the LLM server is down
        result.model = None
        return list(_fallback(result, hits, opts, f"{exc} Showing the best passages instead."))
    except LLMError as exc:  # failed mid-answer: keep what came
        result.error = str(exc)
    thinking, answer = split_think(stream.raw)
    cited = resolve_citations(answer, prompt.sources)
    given.extend(prompt.sources)
    result.answer, result.thinking = cited.text, thinking
    in_prompt = {h.chunk_id for h in prompt.sources}
    result.citations = cited.citations
    result.also_retrieved = cited.also_retrieved + [h for h in hits if h.chunk_id not in in_prompt]
    result.dropped_markers = cited.dropped_markers
    result.abstained = not cited.citations and cited.text.strip(" .\"'").lower().startswith(NOT_IN_DOCUMENTS)
    timings.prompt_tokens = usage.prompt_tokens or prompt.prompt_tokens
    timings.cached_prompt_tokens, timings.prefill_ms = usage.cached_tokens, usage.prefill_ms
    reasoned_only = (
        f"The model spent all {room} answer tokens reasoning; raise --max-tokens or try --no-think."
        if not answer and thinking
        else None
    )
    cut = f"The answer was cut at {room} tokens (--max-tokens); ask for more to get the rest."
    return _ending(result, stream, usage, cut, reasoned_only) + [Done(result)]


def _ending(result: AskResult, stream: _Stream, usage: Usage, cut: str, reasoned_only: str | None = None) -> list:
    """How an answer ended, set on the result and said as its notice: an error, a cancel, a loop, an answer that
    was all reasoning (`reasoned_only`, when the caller checks for it), or a cut at the token budget (`cut`)."""
    result.cancelled, result.looped = stream.cancelled, stream.looped
    result.truncated = not (stream.cancelled or stream.looped or result.error) and usage.finish_reason == "length"
    kind = "info"
    if result.error:
        result.notice, kind = result.error, "error"
    elif stream.cancelled:
        result.notice, kind = CANCELLED, "cancelled"
    elif stream.looped:
        result.notice, kind = LOOP_NOTICE, "loop"
    elif reasoned_only:
        result.notice = reasoned_only
    elif result.truncated:
        result.notice, kind = cut, "length"
    return [Notice(result.notice, kind)] if result.notice else []


class _Holding:
    """Hold an exclusive model's lock, giving up when `stop` is set while another answer has it."""

    def __init__(self, llm: LLM, stop: threading.Event) -> None:
        self.lock = llm.lock if llm.exclusive else None
        self.stop = stop
        self.held = False

    def __enter__(self) -> bool:
        if self.lock is None:
            return True
        while not self.lock.acquire(timeout=0.05):
            if self.stop.is_set():
                return False
        self.held = True
        return True

    def __exit__(self, *exc: object) -> None:
        if self.held:
            self.lock.release()


def ask(
    question: str,
    retrieve: Retriever,
    load_llm: LLM | Callable[[], LLM] | None,
    options: AskOptions | None = None,
    relevance: OnTopic = on_topic,
    on_piece: OnPiece | None = None,
    *,
    history: History = (),
    cancel: threading.Event | None = None,
    embed: Embed | None = None,
) -> AskResult:
    """Answer `question`: the events of answer_events() collected, pieces passed to `on_piece` as they come."""
    emit = on_piece if on_piece is not None else (lambda kind, text: None)
    for event in answer_events(
        question, retrieve, load_llm, options, history=history, relevance=relevance, cancel=cancel, embed=embed
    ):
        if isinstance(event, Delta):
            emit(event.kind, event.text)
        elif isinstance(event, Notice):
            emit("notice", event.text)
        elif isinstance(event, Done):
            return event.result
    raise AssertionError("answer_events ends with a Done")  # pragma: no cover


def model_events(
    llm: LLM | None, question: str, messages: list[dict[str, str]], options: AskOptions, cancel: threading.Event,
    unavailable: str = "no model is loaded",
) -> Iterator[Event]:  # fmt: skip
    """The conversation as given, straight to the model, as the same events as an answer (no retrieval, no
    sources): the same stream, repetition guard, cancellable hold on the model and notices as answer_events."""
    result = AskResult(question, "", model=llm.name if llm is not None else None)
    if llm is None:
        result.fallback, result.notice = True, f"No model is loaded ({unavailable}); it cannot answer."
        yield Notice(result.notice, "fallback")
        yield Done(result)
        return
    room = min(options.answer_tokens, llm.context_size // 2)
    usage = Usage()
    stream = _Stream(llm, None, result.timings, cancel)
    with _Holding(llm, cancel) as held:
        if not held:
            yield from _cancelled(result, [])
            return
        try:
            yield from stream.run(messages, room, options.temperature, usage)
        except (_NoFirstToken, LLMError) as exc:
            result.fallback, result.error = True, str(exc)  # not cached
    result.thinking, result.answer = split_think(stream.raw)
    result.timings.prompt_tokens = usage.prompt_tokens
    yield from _ending(result, stream, usage, f"The answer was cut at {room} tokens (--max-tokens).")
    yield Done(result)


class _NoFirstToken(Exception):
    """The backend failed before it produced anything, so the passages can still be shown."""


class _Stream:
    """Runs the model, turning its pieces into Delta events; keeps the raw reply and whether it was cut short."""

    def __init__(
        self, llm: LLM, sources: list[Hit] | None, timings: Timings, stop: threading.Event
    ) -> None:  # fmt: skip
        """`sources` None: a reply that cites nothing (the model alone), so `[n]` is left as the model wrote it."""
        self.llm, self.sources, self.timings, self.stop = llm, sources, timings, stop
        self.raw = ""
        self.cancelled = False
        self.looped = False

    def run(self, messages: list, max_tokens: int, temperature: float, usage: Usage) -> Iterator[Event]:
        timings = self.timings
        started = time.perf_counter()
        first: float | None = None
        pieces: list[str] = []
        splitter: ThinkSplitter | None = None
        markers = MarkerFilter(len(self.sources)) if self.sources is not None else None
        guard = RepeatGuard()
        stream = self.llm.stream_chat(messages, max_tokens=max_tokens, temperature=temperature, usage=usage)
        try:
            for piece in stream:
                if first is None:
                    first = time.perf_counter()
                    timings.ttft_ms = _ms(started)
                    splitter = ThinkSplitter(starts_in_think=usage.opens_thinking)
                pieces.append(piece)
                for kind, text in splitter.feed(piece):
                    text = markers.feed(text) if kind == "answer" and markers else text
                    if text:
                        yield Delta("answer" if kind == "answer" else "reasoning", text)
                if self.stop.is_set():
                    self.cancelled = True
                    break
                if guard.feed(piece):
                    self.looped = True
                    break
        except LLMError as exc:
            if first is None:
                raise _NoFirstToken(str(exc)) from exc
            raise
        finally:
            stream.close()
            self.raw = "".join(pieces)
            ended = time.perf_counter()
            counted = usage.completion_tokens
            raw = self.raw
            timings.completion_tokens = counted if counted is not None else (self.llm.count_tokens(raw) if raw else 0)
            timings.generate_ms = _ms(started, ended)
            if first is not None and timings.completion_tokens > 1 and ended > first:
                timings.tokens_per_s = round((timings.completion_tokens - 1) / (ended - first), 2)
        for kind, text in splitter.flush() if splitter else []:
            text = markers.feed(text) if kind == "answer" and markers else text
            if text:
                yield Delta("answer" if kind == "answer" else "reasoning", text)
        if markers and (tail := markers.flush()):
            yield Delta("answer", tail)


def _fallback(result: AskResult, hits: list[Hit], opts: AskOptions, notice: str) -> Iterator[Event]:
    """No model: the best passages, each with its citation, and one line on how to get a model."""
    shown = hits[: opts.fallback_passages]
    result.answer = "\n\n".join(f"[{n}] {snippet(h.text)}" for n, h in enumerate(shown, 1))
    result.citations = [Citation(n, h) for n, h in enumerate(shown, 1)]
    result.also_retrieved = hits[len(shown) :]
    result.fallback, result.notice = True, notice
    yield Notice(notice, "fallback")  # the passages themselves are in result.citations, listed by the caller
    yield Done(result)


def _cancelled(result: AskResult, hits: list[Hit]) -> Iterator[Event]:
    """Cancelled before the model started: no answer, the retrieved passages listed."""
    result.cancelled, result.also_retrieved, result.notice = True, hits, CANCELLED
    yield Notice(CANCELLED, "cancelled")
    yield Done(result)


def _ms(start: float, end: float | None = None) -> float:
    return round(((end or time.perf_counter()) - start) * 1000, 1)
