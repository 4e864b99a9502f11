"""The answer model's interface: a chat model that streams text, its per-answer Usage, and its lock."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}

DEFAULT_CONTEXT_SIZE = 4096


@dataclass
class Usage:
    """The figures of one stream_chat call, filled in by the backend as it streams: they belong to that answer,
    never to the backend object, which several conversations may share."""

    prompt_tokens: int | None = None
    cached_tokens: int = 0  # of the prompt, tokens whose KV state was reused instead of prefilled
    prefill_ms: float | None = None  # time spent prefilling the rest, when the backend can tell
    completion_tokens: int | None = None  # tokens generated, when the backend can tell
    opens_thinking: bool = False  # the prompt left a <think> block open (R1 templates do); set before the 1st piece
    finish_reason: str | None = None  # "stop", or "length" when the reply was cut at max_tokens (when told)


class LLM(ABC):
    """A chat model that streams text; a final assistant message is a prefill the reply continues.

    `lock` guards the model's state. With `exclusive` (a local llama.cpp context: one KV cache), whoever
    generates holds it from building the prompt (tokenizing) to the last token: deepkb.answer.stream does, for every
    ChatSession and ask() call. A remote backend is not exclusive: its server runs several requests at once.
    """

    name: str = "llm"
    context_size: int = DEFAULT_CONTEXT_SIZE
    exclusive: bool = True  # one generation at a time, under `lock`
    runs_on_cpu: bool = False  # prefill is slow: keep prompts compact
    prefill_tokens_per_s: float | None = None  # this model's prefill speed on this machine, when measured
    repeat_penalty: float = 1.0  # sampling default for this model family (repeat_penalty_for)
    thinks: bool | None = None  # reasons in <think> before answering (R1); None: cannot tell (a remote server)
    trained_context: int | None = None  # the context length the model was trained on, when known

    def __init__(self) -> None:
        self.lock = threading.Lock()

    @abstractmethod
    def stream_chat(
        self,
        messages: list[Message],
        max_tokens: int,
        temperature: float = 0.6,
        stop: list[str] | None = None,
        usage: Usage | None = None,
    ) -> Iterator[str]:
        """Yield the reply's text pieces as the model produces them, filling `usage` as it goes.

        Closing the iterator early stops generation (cancel); the model stays usable.
        """

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's vocabulary."""

    def count_messages(self, messages: list[Message]) -> int:
        """Tokens the whole chat prompt takes (template included)."""
        return sum(self.count_tokens(m["content"]) + 8 for m in messages) + 8


def context_advice(llm: LLM, otherwise: str = "shorten the question") -> str:
    """What to do about a prompt that does not fit: a larger --ctx only while the model was trained for it."""
    trained = llm.trained_context
    if trained and llm.context_size >= trained:
        return f"{otherwise}: the model was trained on {trained:,} tokens, so a larger --ctx would not help."
    up_to = f" (up to {trained:,}, what the model was trained on)" if trained else ""
    return f"raise --ctx{up_to} or {otherwise}."
