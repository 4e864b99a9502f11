"""Ask: retrieve → abstain or fall back → prompt → stream the model → verified citations, with timings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from deepkb.citations import Citation, MarkerFilter, ThinkSplitter, resolve_citations, split_think
from deepkb.errors import LLMError, ModelLoadError, ModelNotFoundError
from deepkb.llm import LLM
from deepkb.prompt import NOT_IN_DOCUMENTS, build_prompt, spread_documents
from deepkb.search import Hit, snippet

# Below this best dense cosine similarity (all-MiniLM-L6-v2, query vs chunk) nothing retrieved is about the
# question, so we abstain without calling the model. Calibrated on data/: 12 in-domain questions scored
# 0.33-0.74, 10 off-topic ones (capitals, recipes, physics) 0.08-0.23.
DEFAULT_MIN_RELEVANCE = 0.28

# DeepSeek-R1 distills think inside <think>...</think>; an empty, closed block makes them answer directly.
SKIP_REASONING_PREFILL = "<think>\n\n</think>\n\n"

# Prompt tokens the sources may take when the model runs on a CPU, before deepkb has measured the machine: a 2-core
# CPU prefills the 1.5B Q4_K_M model at 35-48 tokens/s (bench/llm_speed.py), so ~384 tokens of sources (2-3 chunks)
# plus the question put the first answer token near 7-10 s. Once a run has measured the prefill speed, the budget
# is what it prefills in CPU_TTFT_TARGET_S (cpu_source_tokens). A GPU gets all that fit the context.
CPU_SOURCE_TOKENS = 384
CPU_TTFT_TARGET_S = 9.0
CPU_PROMPT_OVERHEAD_TOKENS = 48  # the question, source labels and template end, prefilled with the sources
CPU_SOURCE_TOKENS_RANGE = (192, 2048)


def cpu_source_tokens(prefill_tokens_per_s: float | None) -> int:
    """The sources' token budget on a CPU: what this machine prefills in CPU_TTFT_TARGET_S, within bounds."""
    if not prefill_tokens_per_s:
        return CPU_SOURCE_TOKENS
    budget = prefill_tokens_per_s * CPU_TTFT_TARGET_S - CPU_PROMPT_OVERHEAD_TOKENS
    low, high = CPU_SOURCE_TOKENS_RANGE
    return int(min(max(budget, low), high))


GET_A_MODEL = "No answer model: run `deepkb models pull` or pass --model PATH to a .gguf file."

Retriever = Callable[[str, int], list[Hit]]
Relevance = Callable[[str, list[Hit]], float | None]
OnPiece = Callable[[str, str], None]  # kind ("think", "answer", "notice"), text


@dataclass(frozen=True)
class AskOptions:
    """How one question is answered."""

    k: int = 6
    """Chunks to retrieve; as many as fit the context go into the prompt."""
    min_relevance: float = DEFAULT_MIN_RELEVANCE
    """Abstain when the best dense cosine similarity is below this."""
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


@dataclass
class Timings:
    """Where the time went."""

    retrieve_ms: float | None = None
    load_ms: float | None = None  # getting the model ready (loading a GGUF happens once per process)
    prompt_tokens: int | None = None
    cached_prompt_tokens: int | None = None  # KV state reused (previous question or the on-disk prompt cache)
    prefill_ms: float | None = None  # prefill of the remaining prompt tokens, part of ttft_ms
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    completion_tokens: int | None = None
    generate_ms: float | None = None
    source_token_budget: int | None = None  # what the sources could take (None: all that fit the context)

    def to_json(self) -> dict:
        return {
            "retrieve_ms": self.retrieve_ms,
            "load_ms": self.load_ms,
            "prompt_tokens": self.prompt_tokens,
            "cached_prompt_tokens": self.cached_prompt_tokens,
            "prefill_ms": self.prefill_ms,
            "ttft_ms": self.ttft_ms,
            "tokens_per_s": self.tokens_per_s,
            "completion_tokens": self.completion_tokens,
            "generate_ms": self.generate_ms,
            "source_token_budget": self.source_token_budget,
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
        }
        if self.show_thinking:
            data["thinking"] = self.thinking
        return data


def best_dense_score(question: str, hits: list[Hit]) -> float | None:
    """The best cosine similarity among the hits (None when no dense score is known)."""
    scores = [h.dense_score for h in hits if getattr(h, "dense_score", None) is not None]
    return max(scores) if scores else None


def ask(
    question: str,
    retrieve: Retriever,
    load_llm: Callable[[], LLM] | None,
    options: AskOptions | None = None,
    relevance: Relevance = best_dense_score,
    on_piece: OnPiece | None = None,
) -> AskResult:
    """Answer `question` from the retrieved chunks, streaming pieces to `on_piece` as they come."""
    opts = options or AskOptions()
    emit = on_piece if on_piece is not None else (lambda kind, text: None)
    started = time.perf_counter()
    hits = retrieve(question, opts.k)
    timings = Timings(retrieve_ms=_ms(started))
    result = AskResult(question, "", timings=timings, show_thinking=opts.show_thinking)

    best = relevance(question, hits) if hits else None
    if not hits or (best is not None and best < opts.min_relevance):
        result.answer, result.abstained, result.also_retrieved = NOT_IN_DOCUMENTS, True, hits
        emit("answer", NOT_IN_DOCUMENTS)
        return result

    if load_llm is None:
        return _fallback(result, hits, opts, GET_A_MODEL, emit)
    loading = time.perf_counter()
    try:
        llm = load_llm()
        timings.load_ms = _ms(loading)
    except (ModelNotFoundError, ModelLoadError) as exc:
        return _fallback(result, hits, opts, f"{exc} Showing the best passages instead.", emit)

    room = min(opts.answer_tokens, llm.context_size // 2)
    source_tokens = opts.source_tokens
    if source_tokens is None and llm.runs_on_cpu:
        source_tokens = cpu_source_tokens(llm.prefill_tokens_per_s)
    timings.source_token_budget = source_tokens
    prefill = SKIP_REASONING_PREFILL if opts.skip_reasoning else None
    # Under a source budget only 2-3 chunks fit: spend them on different documents first (on SciFact this puts a
    # relevant abstract in the prompt for 69% of questions instead of 65%; bench/context_recall.py).
    candidates = spread_documents(hits) if source_tokens is not None else hits
    prompt = build_prompt(question, candidates, llm, room, prefill, source_tokens)
    result.model = llm.name
    timings.prompt_tokens = prompt.prompt_tokens
    try:
        raw = _stream(llm, prompt.messages, prompt.sources, room, opts.temperature, timings, emit)
    except _NoFirstToken as exc:  # e.g. the LLM server is down
        result.model = None
        return _fallback(result, hits, opts, f"{exc} Showing the best passages instead.", emit)

    thinking, answer = split_think(raw)
    cited = resolve_citations(answer, prompt.sources)
    result.answer, result.thinking = cited.text, thinking
    in_prompt = {h.chunk_id for h in prompt.sources}
    result.citations = cited.citations
    result.also_retrieved = cited.also_retrieved + [h for h in hits if h.chunk_id not in in_prompt]
    result.dropped_markers = cited.dropped_markers
    result.abstained = not cited.citations and cited.text.strip(" .\"'").lower().startswith(NOT_IN_DOCUMENTS)
    timings.prompt_tokens = llm.last_prompt_tokens or prompt.prompt_tokens
    timings.cached_prompt_tokens, timings.prefill_ms = llm.last_cached_tokens, llm.last_prefill_ms
    if not answer and thinking:
        result.notice = f"The model spent all {room} answer tokens reasoning; raise --max-tokens or try --no-think."
        emit("notice", result.notice)
    return result


class _NoFirstToken(Exception):
    """The backend failed before it produced anything, so the passages can still be shown."""


def _stream(
    llm: LLM, messages: list, sources: list[Hit], max_tokens: int, temperature: float, timings: Timings, emit: OnPiece
) -> str:
    """Run the model, passing classified pieces on as they arrive; returns the raw reply."""
    started = time.perf_counter()
    first: float | None = None
    pieces: list[str] = []
    splitter: ThinkSplitter | None = None
    markers = MarkerFilter(len(sources))

    def forward(kind: str, text: str) -> None:
        text = markers.feed(text) if kind == "answer" else text
        if text:
            emit(kind, text)

    try:
        for piece in llm.stream_chat(messages, max_tokens=max_tokens, temperature=temperature):
            if first is None:
                first = time.perf_counter()
                timings.ttft_ms = _ms(started)
                splitter = ThinkSplitter(starts_in_think=llm.opens_thinking)
            pieces.append(piece)
            for kind, text in splitter.feed(piece):
                forward(kind, text)
    except LLMError as exc:
        if first is not None:
            raise
        raise _NoFirstToken(str(exc)) from exc
    for kind, text in splitter.flush() if splitter else []:
        forward(kind, text)
    if tail := markers.flush():
        emit("answer", tail)
    ended = time.perf_counter()
    raw = "".join(pieces)
    counted = llm.last_completion_tokens
    timings.completion_tokens = counted if counted is not None else (llm.count_tokens(raw) if raw else 0)
    timings.generate_ms = _ms(started, ended)
    if first is not None and timings.completion_tokens > 1 and ended > first:
        timings.tokens_per_s = round((timings.completion_tokens - 1) / (ended - first), 2)
    return raw


def _fallback(result: AskResult, hits: list[Hit], opts: AskOptions, notice: str, emit: OnPiece) -> AskResult:
    """No model: the best passages, each with its citation, and one line on how to get a model."""
    shown = hits[: opts.fallback_passages]
    result.answer = "\n\n".join(f"[{n}] {snippet(h.text)}" for n, h in enumerate(shown, 1))
    result.citations = [Citation(n, h) for n, h in enumerate(shown, 1)]
    result.also_retrieved = hits[len(shown) :]
    result.fallback, result.notice = True, notice
    emit("notice", notice)  # the passages themselves are in result.citations, listed by the caller
    return result


def _ms(start: float, end: float | None = None) -> float:
    return round(((end or time.perf_counter()) - start) * 1000, 1)
