"""AnswerCache: finished answers keyed by conversation, knowledge-base version, model and parameters (LRU).

The key holds the KB's write epoch, so an ingest by any process (another `deepkb ingest`, the server's own
watcher) makes every older entry unreachable; the server also clears the cache on each watch batch so memory
is not held by answers nobody can get any more.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CachedAnswer:
    """What a finished answer needs to be sent again, streamed or not."""

    content: str
    reasoning: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    citations: list[dict[str, Any]] = field(default_factory=list)
    support: list[dict[str, Any]] = field(default_factory=list)  # deepkb.answer.grounding's check of each sentence
    notice: str | None = None  # how the answer ended, sent as a field (Outcome.notice)


def cache_key(messages: list[tuple[str, str]], model: str, kb_version: str, params: dict[str, Any]) -> str:
    """A digest of everything the answer depends on."""
    blob = json.dumps(
        {"messages": messages, "model": model, "kb": kb_version, "params": params}, sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class AnswerCache:
    """A bounded least-recently-used map; thread-safe (worker threads store, the event loop reads)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, CachedAnswer] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> CachedAnswer | None:
        with self._lock:
            answer = self._items.get(key)
            if answer is not None:
                self._items.move_to_end(key)
            return answer

    def put(self, key: str, answer: CachedAnswer) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = answer
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
