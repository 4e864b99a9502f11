"""Prompt: pack the best chunks, numbered, into the model's token budget, under a fixed citing instruction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deepkb.answer.citations import MARKER_RE
from deepkb.display import display_path, location
from deepkb.errors import LLMError
from deepkb.llm import LLM, Message
from deepkb.llm.base import context_advice
from deepkb.retrieval.excerpt import Segment, window
from deepkb.retrieval.search import Hit

NOT_IN_DOCUMENTS = "not in the documents"

# Fixed and first in every prompt, so llama.cpp reuses its KV cache from one question to the next.
SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources you are given. "
    "After every statement, cite the sources that support it with their numbers in square brackets, "
    "like [1] or [2][3]. Do not cite a number that is not in the list. "
    f'If the sources do not contain the answer, reply exactly: "{NOT_IN_DOCUMENTS}".'
)
SAFETY_TOKENS = 16  # tokenizing sources one by one can differ from the whole prompt by a few merges


@dataclass(frozen=True)
class Prompt:
    """The chat messages and the sources they number [1]..[n], in that order."""

    messages: list[Message]
    sources: list[Hit]
    prompt_tokens: int
    history_turns: int = 0  # earlier turns that fit in


def cite_label(hit: Hit) -> str:
    """Where a chunk sits, as the prompt and the Sources list name it: "policies/retention.pdf p.4 L3-10"."""
    return f"{display_path(hit.path)} {location(hit.page, hit.line_start, hit.line_end)}".strip()


def _source_block(n: int, hit: Hit, text: str | None = None) -> str:
    heading = f" ({hit.heading})" if hit.heading else ""
    return f"[{n}] {cite_label(hit)}{heading}\n{(text if text is not None else hit.text).strip()}\n\n"


def _user_message(blocks: list[str], question: str) -> str:
    return "Sources:\n\n" + "".join(blocks) + f"Question: {question.strip()}"


def history_messages(history: Sequence[tuple[str, str]]) -> list[Message]:
    """Earlier turns as plain chat: the questions, and the answers without their [n] markers (those numbered
    other sources)."""
    messages: list[Message] = []
    for question, answer in history:
        messages.append({"role": "user", "content": question.strip()})
        messages.append({"role": "assistant", "content": MARKER_RE.sub("", answer).strip() or NOT_IN_DOCUMENTS})
    return messages


def _messages(
    blocks: list[str], question: str, prefill: str | None, history: Sequence[tuple[str, str]] = ()
) -> list[Message]:
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        *history_messages(history),
        {"role": "user", "content": _user_message(blocks, question)},
    ]
    if prefill:
        messages.append({"role": "assistant", "content": prefill})
    return messages


def _truncate(text: str, budget: int, llm: LLM) -> str:
    """The longest prefix of `text` (cut at a word) that fits in `budget` tokens."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if llm.count_tokens(text[:mid]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    cut = text[:lo]
    return (cut.rsplit(None, 1)[0] if " " in cut and lo < len(text) else cut) + (" …" if lo < len(text) else "")


def spread_documents(hits: list[Hit]) -> list[Hit]:
    """Each document's best chunk before any document's second: a small prompt then covers more documents."""
    seen: set[str] = set()
    firsts: list[Hit] = []
    seconds: list[Hit] = []
    for hit in hits:
        (seconds if hit.path in seen else firsts).append(hit)
        seen.add(hit.path)
    return firsts + seconds


# pack_excerpts' greedy order: a new source's best sentence comes before growing the sources already in (ANCHOR_BONUS
# outweighs any score gap), and a lower-ranked chunk's sentences pay RANK_PENALTY per rank. Chosen on the tune halves
# of SciFact and the manuals questions (bench/context_recall.py --sweep: bonus 0 or 1, penalty 0-0.1).
ANCHOR_BONUS = 1.0
RANK_PENALTY = 0.1


def pack_excerpts(hits: list[Hit], scored: dict[int, list[Segment]], llm: LLM, source_tokens: int) -> list[Hit]:
    """The hits narrowed to the sentences that fit `source_tokens`: each hit's best sentence in rank order, then the
    best neighbouring sentence of any hit (so each hit's kept text stays one window of lines), while the numbered
    blocks fit. A hit without segments (its lines could not be matched again) goes in whole or not at all. The
    first hit always goes in. Returns the kept hits in rank order, each with its excerpt's text and line span."""
    taken: dict[int, tuple[int, int]] = {}  # hit index -> its window of segments (lo, hi); (-1, -1): whole
    costs: dict[int, int] = {}
    refused: set[tuple[int, int, int]] = set()

    def block(i: int, lo: int, hi: int) -> Hit:
        segs = scored.get(hits[i].chunk_id)
        return hits[i] if lo < 0 or not segs else window(hits[i], segs, lo, hi)

    def candidates() -> list[tuple[float, int, int, int]]:
        out = []
        for i, hit in enumerate(hits):
            segs = scored.get(hit.chunk_id)
            penalty = RANK_PENALTY * i
            if i not in taken:
                if not segs:
                    out.append((ANCHOR_BONUS - penalty, i, -1, -1))
                else:
                    best = max(range(len(segs)), key=lambda k: (segs[k].score, -k))
                    out.append((ANCHOR_BONUS + segs[best].score - penalty, i, best, best))
            elif segs and taken[i][0] >= 0:
                lo, hi = taken[i]
                if lo > 0:
                    out.append((segs[lo - 1].score - penalty, i, lo - 1, hi))
                if hi < len(segs) - 1:
                    out.append((segs[hi + 1].score - penalty, i, lo, hi + 1))
        out = [c for c in out if c[1:] not in refused and (taken or c[1] == 0)]  # the first hit goes in first
        return sorted(out, key=lambda c: (-c[0], c[1], c[2]))

    used = 0
    while True:
        for _, i, lo, hi in candidates():
            cost = llm.count_tokens(_source_block(i + 1, block(i, lo, hi)))
            if taken and used - costs.get(i, 0) + cost > source_tokens:
                refused.add((i, lo, hi))
                continue
            used += cost - costs.get(i, 0)
            taken[i], costs[i] = (lo, hi), cost
            break
        else:
            break
    return [block(i, *taken[i]) for i in sorted(taken)]


def build_prompt(
    question: str,
    hits: list[Hit],
    llm: LLM,
    answer_tokens: int,
    prefill: str | None = None,
    source_tokens: int | None = None,
    history: Sequence[tuple[str, str]] = (),
    history_tokens: int | None = None,
) -> Prompt:
    """Number the best hits [1].. and add them while the prompt plus `answer_tokens` fit the context.

    `source_tokens` caps what the sources may take (the first always goes in, whole if it fits the context):
    on a CPU every prompt token costs prefill time before the first answer token. `history`, earlier
    (question, answer) turns oldest first, goes between the system prompt and the question with what room the
    sources leave (and at most `history_tokens`): the newest turns first, the oldest dropped. The turns come before this turn's sources so the
    next question's prompt starts like this one (llama.cpp reuses that KV state).
    """
    budget = llm.context_size - answer_tokens - SAFETY_TOKENS
    used = llm.count_messages(_messages([], question, prefill))
    if used > budget:
        raise LLMError(
            f"The context of {llm.context_size} tokens cannot hold the question ({used} tokens) and an answer "
            f"({answer_tokens} tokens); {context_advice(llm)}"
        )
    blocks: list[str] = []
    sources: list[Hit] = []
    source_used = 0
    for hit in hits:
        block = _source_block(len(sources) + 1, hit)
        cost = llm.count_tokens(block)
        if sources and source_tokens is not None and source_used + cost > source_tokens:
            continue  # over the source budget; a shorter, lower-ranked chunk may still fit
        if used + cost > budget:
            if sources:
                continue  # a shorter, lower-ranked chunk may still fit
            header = _source_block(1, hit, "")
            room = budget - used - llm.count_tokens(header) - 4
            if room <= 16:
                break
            block = _source_block(1, hit, _truncate(hit.text, room, llm))
            cost = llm.count_tokens(block)
        blocks.append(block)
        sources.append(hit)
        used += cost
        source_used += cost
    turns: list[tuple[str, str]] = []
    history_used = 0
    for turn in reversed(history):  # the newest first; the first that does not fit ends the history
        cost = sum(llm.count_tokens(m["content"]) + 8 for m in history_messages([turn]))
        if used + cost > budget or (history_tokens is not None and history_used + cost > history_tokens):
            break
        turns.insert(0, turn)
        used += cost
        history_used += cost
    messages = _messages(blocks, question, prefill, turns)
    total = llm.count_messages(messages)
    while total > budget + SAFETY_TOKENS and (turns or len(blocks) > 1):  # the estimate was off
        if turns:
            turns.pop(0)  # the oldest turn goes before any source
        else:
            blocks.pop()  # then the weakest source
            sources.pop()
        messages = _messages(blocks, question, prefill, turns)
        total = llm.count_messages(messages)
    return Prompt(messages, sources, total, len(turns))
