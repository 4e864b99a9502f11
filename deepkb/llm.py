"""LLM backends: local llama.cpp on a GGUF file, or any OpenAI-compatible chat server."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deepkb.errors import LLMError, ModelLoadError, ModelNotFoundError, UsageError
from deepkb.prompt_cache import MIN_TOKENS as MIN_CACHED_TOKENS
from deepkb.prompt_cache import PrefillSpeeds, PromptCache, common_prefix

if TYPE_CHECKING:
    from deepkb.config import Settings

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}

DEFAULT_CONTEXT_SIZE = 4096
MIN_SPEED_TOKENS = 32  # a shorter prefill says little about the machine's prefill speed

# Used only when a GGUF carries no chat template: plain ChatML.
_CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class Usage:
    """The figures of one stream_chat call, filled in by the backend as it streams: they belong to that answer,
    never to the backend object, which several conversations may share."""

    prompt_tokens: int | None = None
    cached_tokens: int = 0  # of the prompt, tokens whose KV state was reused instead of prefilled
    prefill_ms: float | None = None  # time spent prefilling the rest, when the backend can tell
    completion_tokens: int | None = None  # tokens generated, when the backend can tell
    opens_thinking: bool = False  # the prompt left a <think> block open (R1 templates do); set before the 1st piece


class LLM(ABC):
    """A chat model that streams text; a final assistant message is a prefill the reply continues.

    `lock` guards the model's state. With `exclusive` (a local llama.cpp context: one KV cache), whoever
    generates holds it from building the prompt (tokenizing) to the last token: deepkb.answer does, for every
    ChatSession and ask() call. A remote backend is not exclusive: its server runs several requests at once.
    """

    name: str = "llm"
    context_size: int = DEFAULT_CONTEXT_SIZE
    exclusive: bool = True  # one generation at a time, under `lock`
    runs_on_cpu: bool = False  # prefill is slow: keep prompts compact
    prefill_tokens_per_s: float | None = None  # this model's prefill speed on this machine, when measured
    repeat_penalty: float = 1.0  # sampling default for this model family (repeat_penalty_for)

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


# Repeat penalty per model family, matched in order on the GGUF's general.name and file name (llama.cpp applies
# none, 1.0, unless asked). DeepSeek's R1 distills and Llama 3 are tuned to run without one; Qwen2.5 Instruct
# ships 1.05 in its generation_config.json; SmolLM2-135M repeats a sentence until max_tokens on data/ questions
# without one (tests/test_loop_guard.py). deepkb.repetition stops what a penalty does not prevent.
REPEAT_PENALTIES = (("-r1", 1.0), ("deepseek", 1.0), ("smollm", 1.3), ("qwen", 1.05), ("llama", 1.0))
DEFAULT_REPEAT_PENALTY = 1.1  # a model of no known family: a mild one


def repeat_penalty_for(*names: str) -> float:
    """The repeat penalty for a model known by these names (GGUF general.name, file stem)."""
    lowered = [n.lower() for n in names if n]
    for key, penalty in REPEAT_PENALTIES:
        if any(key in name for name in lowered):
            return penalty
    return DEFAULT_REPEAT_PENALTY


def physical_cores() -> int:
    """Physical cores this process may run on (hyperthreads share one core's arithmetic units)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return max(1, len(allowed))
    cores: set[tuple[str, str]] = set()
    for block in text.strip().split("\n\n"):
        info = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        if "processor" in info and int(info["processor"]) in allowed and "core id" in info:
            cores.add((info.get("physical id", "0"), info["core id"]))
    return len(cores) or max(1, len(allowed))


def default_gpu_layers() -> int:
    """-1 (offload every layer) when llama.cpp was built with a GPU backend, else 0."""
    import llama_cpp

    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


class LlamaCppLLM(LLM):
    """A GGUF model run in-process by llama.cpp; keeps the model loaded between questions."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        context_size: int = DEFAULT_CONTEXT_SIZE,
        gpu_layers: int | None = None,
        threads: int | None = None,
        seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
        repeat_penalty: float | None = None,
    ) -> None:
        super().__init__()
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"Model file {path} does not exist; pass an existing .gguf file.")
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:
            raise ModelLoadError(
                f"llama-cpp-python is not installed ({exc}); run `pip install llama-cpp-python`."
            ) from exc
        n_threads = threads or physical_cores()
        gpu_layers = default_gpu_layers() if gpu_layers is None else gpu_layers
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=context_size,
                n_gpu_layers=gpu_layers,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                use_mmap=True,
                seed=seed,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"llama.cpp could not load {path} ({exc}); re-download it or pick another GGUF."
            ) from exc
        self.name = path.stem
        self.path = path
        self.context_size = self._llama.n_ctx()
        self.runs_on_cpu = gpu_layers == 0 or not llama_cpp.llama_supports_gpu_offload()
        self._prompt_cache = None
        self._speeds = None
        if cache_dir is not None:
            stat = path.stat()
            identity = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.context_size}|{gpu_layers}|"
            self._prompt_cache = PromptCache(Path(cache_dir), self._llama, identity + llama_cpp.__version__)
            self._speeds = PrefillSpeeds(Path(cache_dir) / "prefill-speed.json", identity + f"{n_threads}")
            self.prefill_tokens_per_s = self._speeds.median()
        self._fixed_tokens: dict[str, list[int]] = {}
        meta = self._llama.metadata
        self.repeat_penalty = repeat_penalty or repeat_penalty_for(meta.get("general.name", ""), path.stem)
        vocab = self._llama._model
        self._bos = vocab.token_get_text(self._llama.token_bos()) if self._llama.token_bos() != -1 else ""
        eos = vocab.token_get_text(self._llama.token_eos()) if self._llama.token_eos() != -1 else ""
        self._add_bos = vocab.add_bos_token()
        self._formatter = Jinja2ChatFormatter(
            template=meta.get("tokenizer.chat_template") or _CHATML_TEMPLATE, eos_token=eos, bos_token=self._bos
        )

    def render(self, messages: list[Message]) -> str:
        """The exact prompt text: chat template applied, a trailing assistant message appended as prefill."""
        prefill = ""
        if messages and messages[-1]["role"] == "assistant":
            prefill, messages = messages[-1]["content"], messages[:-1]
        prompt = self._formatter(messages=messages).prompt
        # Templates such as DeepSeek-R1's already end with "<think>\n": do not repeat what the prefill restates.
        overlap = next((n for n in range(min(len(prompt), len(prefill)), 0, -1) if prompt.endswith(prefill[:n])), 0)
        return prompt + prefill[overlap:]

    def _tokenize(self, prompt: str) -> list[int]:
        add_bos = self._add_bos and not (self._bos and prompt.startswith(self._bos))
        return self._llama.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in the GGUF's own vocabulary."""
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def count_messages(self, messages: list[Message]) -> int:
        """Exact prompt length: the rendered template tokenized like stream_chat does."""
        return len(self._tokenize(self.render(messages)))

    def stream_chat(
        self,
        messages: list[Message],
        max_tokens: int,
        temperature: float = 0.6,
        stop: list[str] | None = None,
        usage: Usage | None = None,
    ) -> Iterator[str]:
        """Stream the reply; the fixed system prompt comes first so llama.cpp reuses its cached prefix.

        The caller holds `self.lock` (one KV cache: one generation at a time).
        """
        usage = usage if usage is not None else Usage()
        prompt = self.render(messages)
        tokens = self._tokenize(prompt)
        usage.prompt_tokens = len(tokens)
        usage.opens_thinking = prompt.rfind("<think>") > prompt.rfind("</think>")
        if len(tokens) >= self.context_size:
            raise LLMError(
                f"The prompt takes {len(tokens)} tokens but the context holds {self.context_size}; "
                "raise --ctx or lower -k."
            )
        max_tokens = min(max_tokens, self.context_size - len(tokens))
        started = time.perf_counter()
        ready, reused = self._reuse_prefix(tokens, messages)
        self._llama.n_tokens = ready
        prefill_started = time.perf_counter()
        self._llama.eval(tokens[ready:-1])  # the prefill, timed on its own; generate() then reuses it all
        prefilled, seconds = len(tokens) - 1 - ready, time.perf_counter() - prefill_started
        if self._speeds is not None and prefilled >= MIN_SPEED_TOKENS and seconds > 0:
            self._speeds.add(prefilled / seconds)
            self.prefill_tokens_per_s = self._speeds.median()
        usage.cached_tokens = reused
        usage.prefill_ms = round((time.perf_counter() - started) * 1000, 1)
        stream = self._llama.create_completion(
            tokens,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop or [],
            stream=True,
            repeat_penalty=self.repeat_penalty,
        )
        usage.completion_tokens = 0
        try:
            for chunk in stream:
                choice = chunk["choices"][0]
                # Each sampled token is evaluated when the next is asked for; a reply cut at max_tokens ends on one
                # that never was, a reply ended by the model ends on its end token, which is evaluated nowhere.
                unevaluated = 1 if choice.get("finish_reason") != "stop" else 0
                usage.completion_tokens = self._llama.n_tokens - len(tokens) + unevaluated
                if choice["text"]:
                    yield choice["text"]
        finally:
            stream.close()  # a cancelled reply: llama.cpp's generator stops; the KV cache keeps what was evaluated

    def _fixed_prefix(self, tokens: list[int], messages: list[Message]) -> int:
        """Length of the prompt's start that depends only on the system message (0 when there is none)."""
        if not messages or messages[0]["role"] != "system":
            return 0
        system = messages[0]["content"]
        if system not in self._fixed_tokens:
            probe = self._tokenize(self.render([messages[0], {"role": "user", "content": ""}]))
            self._fixed_tokens = {system: probe}  # one system prompt at a time is all deepkb uses
        return min(common_prefix(self._fixed_tokens[system], tokens), len(tokens) - 1)

    def _reuse_prefix(self, tokens: list[int], messages: list[Message]) -> tuple[int, int]:
        """(tokens of `tokens` now in the KV cache, of those the ones reused: kept from the last call or restored
        from disk rather than prefilled by this call)."""
        llama = self._llama
        in_context = common_prefix(llama.input_ids[: llama.n_tokens].tolist(), tokens[:-1])
        fixed = self._fixed_prefix(tokens, messages)
        if self._prompt_cache is None or in_context >= fixed or fixed < MIN_CACHED_TOKENS:
            return in_context, in_context
        llama.reset()
        if self._prompt_cache.restore(tokens[:fixed]):
            return fixed, fixed
        llama.eval(tokens[:fixed])  # prefilled now, once, and saved for the runs to come
        self._prompt_cache.save(tokens[:fixed])
        return fixed, 0


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


BACKENDS: dict[str, type[LLM]] = {"llama.cpp": LlamaCppLLM, "openai": OpenAICompatLLM}


def get_backend(name: str) -> type[LLM]:
    """The backend class registered under `name`."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise UsageError(f"unknown LLM backend {name!r}; valid: {', '.join(sorted(BACKENDS))}.") from None


def open_llm(
    model: str | os.PathLike | None = None,
    url: str | None = None,
    context_size: int | None = None,
    gpu_layers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    api_key_env: str | None = None,
    threads: int | None = None,
) -> LLM:
    """The LLM to answer with: the server at `url` if given, else the resolved local GGUF.

    `cache_dir` keeps the KV state of the fixed prompt start between runs (local models only).
    """
    ctx = context_size or DEFAULT_CONTEXT_SIZE
    if url:  # `model` is then the server's model name; a local GGUF path (say from DEEPKB_MODEL) is not one
        name = str(model) if model and not str(model).endswith(".gguf") else None
        return get_backend("openai")(url, model=name, context_size=ctx, api_key_env=api_key_env)
    from deepkb.models import resolve_model

    return get_backend("llama.cpp")(
        resolve_model(model), context_size=ctx, gpu_layers=gpu_layers, threads=threads, cache_dir=cache_dir
    )


def open_configured_llm(settings: Settings) -> LLM:
    """The answer model the settings name (model, llm_url, llm_context, gpu_layers, llm_threads, llm_api_key_env),
    with the KV state of the fixed prompt start kept under the KB home: what every shell opens."""
    return open_llm(
        settings.model or None,
        url=settings.llm_url or None,
        context_size=settings.llm_context,
        gpu_layers=settings.gpu_layers,
        threads=settings.llm_threads or None,
        cache_dir=settings.home / "cache" / "prompts",
        api_key_env=settings.llm_api_key_env or None,
    )
