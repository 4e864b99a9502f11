"""OpenAI wire formats: a finished answer as a chat.completion object, a running one as SSE chunks."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from deepkb.server.chat import KEEPALIVE, Outcome, SourceItem, TextItem
from deepkb.server.queue import QueueFull

log = logging.getLogger("deepkb.server")

KEEPALIVE_BYTES = b": keep-alive\n\n"
DONE_BYTES = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def usage(out: Outcome) -> dict[str, int]:
    return {
        "prompt_tokens": out.prompt_tokens,
        "completion_tokens": out.completion_tokens,
        "total_tokens": out.prompt_tokens + out.completion_tokens,
    }


async def collect(items: AsyncIterator[object]) -> Outcome:
    """Run an answer to its end (the Outcome holds the whole text)."""
    outcome = Outcome()
    async for item in items:
        if isinstance(item, Outcome):
            outcome = item
    return outcome


def completion(model: str, out: Outcome) -> dict[str, Any]:
    """The chat.completion object of a finished answer."""
    message: dict[str, Any] = {"role": "assistant", "content": out.content}
    if out.reasoning:
        message["reasoning_content"] = out.reasoning
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": out.finish_reason, "sources": out.citations}],
        "usage": usage(out),
        "sources": out.sources,
        "deepkb": out.info(),
    }


class ChunkWriter:
    """Builds the chat.completion.chunk frames of one stream (same id and created time on every chunk)."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.id, self.created, self.model = completion_id(), int(time.time()), model
        self.include_usage = include_usage

    def frame(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                 "choices": choices, **extra}  # fmt: skip
        return b"data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"

    @property
    def empty(self) -> list[dict[str, Any]]:
        """The choice of a chunk that carries no text (naive clients read choices[0] of every chunk)."""
        return [{"index": 0, "delta": {}, "finish_reason": None}]

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None, **choice: Any) -> bytes:
        return self.frame([{"index": 0, "delta": delta, "finish_reason": finish_reason, **choice}])

    async def stream(self, items: AsyncIterator[object]) -> AsyncIterator[bytes]:
        """SSE bytes: a role chunk, source events, content and reasoning deltas, a finish chunk with usage, [DONE]."""
        yield self.delta({"role": "assistant", "content": ""})
        try:
            async for item in items:
                if item is KEEPALIVE:
                    yield KEEPALIVE_BYTES
                elif isinstance(item, SourceItem):
                    yield self.frame(self.empty, event={"type": "source", "data": item.data})
                elif isinstance(item, TextItem):
                    key = "content" if item.kind == "content" else "reasoning_content"
                    yield self.delta({key: item.text})
                elif isinstance(item, Outcome):
                    extra = (
                        {"deepkb": item.info()} if self.include_usage else {"usage": usage(item), "deepkb": item.info()}
                    )
                    yield self.frame(
                        [{"index": 0, "delta": {}, "finish_reason": item.finish_reason, "sources": item.citations}],
                        **extra,
                    )
                    if self.include_usage:
                        yield self.frame([], usage=usage(item))
        except QueueFull as exc:  # waited too long for a slot: the stream had already begun
            body = error_body(str(exc), "rate_limit_error", "rate_limit_exceeded")
            yield b"data: " + json.dumps(body).encode() + b"\n\n"
        except Exception as exc:  # a failure nothing degraded: the client gets an error, not a cut-off stream
            log.exception("answer failed")
            body = error_body(f"the answer failed ({type(exc).__name__}: {exc}).", "server_error", "internal_error")
            yield b"data: " + json.dumps(body).encode() + b"\n\n"
        yield DONE_BYTES
