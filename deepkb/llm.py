"""LLM backends: local llama.cpp on a GGUF file, or any OpenAI-compatible chat server."""

from __future__ import annotations

import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from deepkb.errors import LLMError, ModelLoadError, ModelNotFoundError, UsageError

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}

DEFAULT_CONTEXT_SIZE = 4096

# Used only when a GGUF carries no chat template: plain ChatML.
_CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class LLM(ABC):
    """A chat model that streams text; a final assistant message is a prefill the reply continues."""

    name: str = "llm"
    context_size: int = DEFAULT_CONTEXT_SIZE
    last_prompt_tokens: int | None = None  # prompt size of the latest stream_chat call
    opens_thinking: bool = False  # the latest prompt left a <think> block open (R1 templates do)

    @abstractmethod
    def stream_chat(
        self, messages: list[Message], max_tokens: int, temperature: float = 0.6, stop: list[str] | None = None
    ) -> Iterator[str]:
        """Yield the reply's text pieces as the model produces them."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's vocabulary."""

    def count_messages(self, messages: list[Message]) -> int:
        """Tokens the whole chat prompt takes (template included)."""
        return sum(self.count_tokens(m["content"]) + 8 for m in messages) + 8


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
    ) -> None:
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
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=context_size,
                n_gpu_layers=default_gpu_layers() if gpu_layers is None else gpu_layers,
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
        meta = self._llama.metadata
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
        self, messages: list[Message], max_tokens: int, temperature: float = 0.6, stop: list[str] | None = None
    ) -> Iterator[str]:
        """Stream the reply; the fixed system prompt comes first so llama.cpp reuses its cached prefix."""
        prompt = self.render(messages)
        tokens = self._tokenize(prompt)
        self.last_prompt_tokens = len(tokens)
        self.opens_thinking = prompt.rfind("<think>") > prompt.rfind("</think>")
        if len(tokens) >= self.context_size:
            raise LLMError(
                f"The prompt takes {len(tokens)} tokens but the context holds {self.context_size}; "
                "raise --ctx or lower -k."
            )
        max_tokens = min(max_tokens, self.context_size - len(tokens))
        stream = self._llama.create_completion(
            tokens, max_tokens=max_tokens, temperature=temperature, stop=stop or [], stream=True
        )
        for chunk in stream:
            text = chunk["choices"][0]["text"]
            if text:
                yield text


class OpenAICompatLLM(LLM):
    """Any server speaking the OpenAI chat API (llama-server, vLLM, Ollama, LM Studio), streamed over SSE."""

    def __init__(
        self, url: str, model: str | None = None, context_size: int = DEFAULT_CONTEXT_SIZE, timeout: float = 300.0
    ) -> None:
        base = url.rstrip("/")
        self.url = (base[: -len("/v1")] if base.endswith("/v1") else base) + "/v1/chat/completions"
        self.model = model
        self.name = model or f"openai:{base}"
        self.context_size = context_size
        self.timeout = timeout
        self.api_key = os.environ.get("OPENAI_API_KEY")

    def count_tokens(self, text: str) -> int:
        """Approximate: the server's tokenizer is not at hand; ~3 characters a token errs on the safe side."""
        return math.ceil(len(text) / 3)

    def stream_chat(
        self, messages: list[Message], max_tokens: int, temperature: float = 0.6, stop: list[str] | None = None
    ) -> Iterator[str]:
        """Stream the reply; reasoning sent as `reasoning_content` is wrapped in <think> tags."""
        import urllib.error
        import urllib.request

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
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        self.last_prompt_tokens = self.count_messages(messages)
        self.opens_thinking = False
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:200]
            raise LLMError(
                f"The LLM server at {self.url} answered HTTP {exc.code} ({detail}); check --llm-url."
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LLMError(f"Cannot reach the LLM server at {self.url} ({reason}); start it or fix --llm-url.") from exc
        thinking = False
        with response:
            for raw in response:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if event.get("usage"):
                    self.last_prompt_tokens = event["usage"].get("prompt_tokens", self.last_prompt_tokens)
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    reasoning, content = delta.get("reasoning_content"), delta.get("content")
                    if reasoning:
                        yield reasoning if thinking else "<think>" + reasoning
                        thinking = True
                    if content:
                        yield "</think>" + content if thinking else content
                        thinking = False
        if thinking:
            yield "</think>"


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
) -> LLM:
    """The LLM to answer with: the server at `url` if given, else the resolved local GGUF."""
    ctx = context_size or DEFAULT_CONTEXT_SIZE
    if url:  # `model` is then the server's model name; a local GGUF path (say from DEEPKB_MODEL) is not one
        name = str(model) if model and not str(model).endswith(".gguf") else None
        return get_backend("openai")(url, model=name, context_size=ctx)
    from deepkb.models import resolve_model

    return get_backend("llama.cpp")(resolve_model(model), context_size=ctx, gpu_layers=gpu_layers)
