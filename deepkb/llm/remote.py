"""Remote backend: any OpenAI-compatible chat server, streamed over SSE with httpx."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator

from deepkb.errors import LLMError, UsageError
from deepkb.llm.base import DEFAULT_CONTEXT_SIZE, LLM, Message, Usage


class OpenAICompatLLM(LLM):
    """Any server speaking the OpenAI chat API (llama-server, vLLM, Ollama, LM Studio), streamed over SSE by httpx.

    Whatever goes wrong (unreachable, an HTTP error, no data within `timeout` seconds, a malformed event, an
    `{"error": ...}` event, an empty reply) becomes one LLMError naming the URL. An API key is sent only when
    `api_key_env` names the environment variable that holds it: never a key meant for another server.
    """

    exclusive = False  # the server schedules concurrent requests itself

    def __init__(
        self,
        url: str,
        model: str | None = None,
        context_size: int = DEFAULT_CONTEXT_SIZE,
        timeout: float = 120.0,
        api_key_env: str | None = None,
    ) -> None:
        super().__init__()
        base = url.rstrip("/")
        self.url = (base[: -len("/v1")] if base.endswith("/v1") else base) + "/v1/chat/completions"
        self.model = model
        self.name = model or f"openai:{base}"
        self.context_size = context_size
        self.timeout = timeout
        self.api_key = None
        if api_key_env:
            self.api_key = os.environ.get(api_key_env)
            if not self.api_key:
                raise UsageError(f"the environment variable {api_key_env} (--llm-api-key-env) is not set.")

    def count_tokens(self, text: str) -> int:
        """Approximate: the server's tokenizer is not at hand; ~3 characters a token errs on the safe side."""
        return math.ceil(len(text) / 3)

    def stream_chat(
        self,
        messages: list[Message],
        max_tokens: int,
        temperature: float = 0.6,
        stop: list[str] | None = None,
        usage: Usage | None = None,
    ) -> Iterator[str]:
        """Stream the reply; reasoning sent as `reasoning_content` is wrapped in <think> tags."""
        import httpx

        usage = usage if usage is not None else Usage()
        usage.prompt_tokens = self.count_messages(messages)
        body = {
            "model": self.model or "default",
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if stop:
            body["stop"] = stop
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        try:
            with (
                httpx.Client(timeout=timeout) as client,
                client.stream("POST", self.url, json=body, headers=headers) as response,
            ):
                if response.status_code >= 400:
                    detail = response.read().decode("utf-8", "replace")
                    raise LLMError(
                        f"The LLM server at {self.url} answered HTTP {response.status_code} "
                        f"({_error_text(detail)}); check --llm-url and --model."
                    )
                yield from self._events(response, usage)
        except httpx.TimeoutException as exc:
            raise LLMError(
                f"The LLM server at {self.url} sent nothing for {self.timeout:g} s ({type(exc).__name__}); "
                "check that it is running and not overloaded."
            ) from exc
        except httpx.HTTPError as exc:
            raise LLMError(f"Cannot reach the LLM server at {self.url} ({exc}); start it or fix --llm-url.") from exc

    def _events(self, response, usage: Usage) -> Iterator[str]:
        """The text pieces of an SSE stream (or of one JSON reply, from a server that does not stream)."""
        if "json" in response.headers.get("content-type", ""):
            data = self._parse(response.read().decode("utf-8", "replace"))
            choice = (data.get("choices") or [{}])[0]
            usage.finish_reason = choice.get("finish_reason")
            text = (choice.get("message") or {}).get("content")
            if not text:
                raise LLMError(f"The LLM server at {self.url} sent an empty reply; check --model.")
            yield text
            return
        thinking = sent = False
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # comments, event names, keep-alives
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                break
            event = self._parse(data)
            if reported := event.get("usage"):
                usage.prompt_tokens = reported.get("prompt_tokens", usage.prompt_tokens)
                usage.completion_tokens = reported.get("completion_tokens", usage.completion_tokens)
                details = reported.get("prompt_tokens_details") or {}
                usage.cached_tokens = details.get("cached_tokens") or 0
            for choice in event.get("choices") or []:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(choice, dict) and choice.get("finish_reason"):
                    usage.finish_reason = choice["finish_reason"]
                if not isinstance(delta, dict):
                    raise LLMError(f"The LLM server at {self.url} sent a malformed event ({data[:120]}).")
                reasoning, content = delta.get("reasoning_content"), delta.get("content")
                if reasoning:
                    yield reasoning if thinking else "<think>" + reasoning
                    thinking = sent = True
                if content:
                    yield "</think>" + content if thinking else content
                    thinking, sent = False, True
        if thinking:
            yield "</think>"
        if not sent:
            raise LLMError(f"The LLM server at {self.url} ended the stream without an answer; check --model.")

    def _parse(self, data: str) -> dict:
        """One JSON event; an error event or anything that is not a JSON object is an LLMError."""
        try:
            event = json.loads(data)
        except ValueError:
            raise LLMError(f"The LLM server at {self.url} sent a malformed event ({data[:120]!r}).") from None
        if not isinstance(event, dict):
            raise LLMError(f"The LLM server at {self.url} sent a malformed event ({data[:120]!r}).")
        if "error" in event:
            raise LLMError(f"The LLM server at {self.url} reported an error: {_error_text(event['error'])}.")
        return event


def _error_text(error: object) -> str:
    """The message of an OpenAI-style error (a string, {"message": ...} or {"error": {"message": ...}}), short."""
    if isinstance(error, str):
        try:
            error = json.loads(error)
        except ValueError:
            return " ".join(error.split())[:200] or "no details"
    if isinstance(error, dict):
        inner = error.get("error", error)
        if isinstance(inner, dict):
            return " ".join(str(inner.get("message") or inner).split())[:200]
        return " ".join(str(inner).split())[:200]
    return " ".join(str(error).split())[:200]
