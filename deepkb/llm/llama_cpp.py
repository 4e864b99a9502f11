"""Local backend: a GGUF model run in-process by llama.cpp, its KV state reused between questions."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from deepkb.errors import LLMError, ModelLoadError, ModelNotFoundError
from deepkb.llm.base import DEFAULT_CONTEXT_SIZE, LLM, Message, Usage, context_advice
from deepkb.llm.prompt_cache import MIN_TOKENS as MIN_CACHED_TOKENS
from deepkb.llm.prompt_cache import PrefillSpeeds, PromptCache, common_prefix

MIN_SPEED_TOKENS = 32  # a shorter prefill says little about the machine's prefill speed

# Used only when a GGUF carries no chat template: plain ChatML.
_CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# Repeat penalty per model family, matched in order on the GGUF's general.name and file name (llama.cpp applies
# none, 1.0, unless asked). DeepSeek's R1 distills and Llama 3 are tuned to run without one; Qwen2.5 Instruct
# ships 1.05 in its generation_config.json; SmolLM2-135M repeats a sentence until max_tokens on data/ questions
# without one (tests/test_loop_guard.py). deepkb.answer.repetition stops what a penalty does not prevent.
REPEAT_PENALTIES = (("-r1", 1.0), ("deepseek", 1.0), ("smollm", 1.3), ("qwen", 1.05), ("llama", 1.0))
DEFAULT_REPEAT_PENALTY = 1.1  # a model of no known family: a mild one


def repeat_penalty_for(*names: str) -> float:
    """The repeat penalty for a model known by these names (GGUF general.name, file stem)."""
    lowered = [n.lower() for n in names if n]
    for key, penalty in REPEAT_PENALTIES:
        if any(key in name for name in lowered):
            return penalty
    return DEFAULT_REPEAT_PENALTY


def physical_cores(cpuinfo: str | None = None, allowed: set[int] | None = None) -> int:
    """Physical cores this process may run on (hyperthreads share one core's arithmetic units).

    `cpuinfo` and `allowed` default to /proc/cpuinfo and this process's CPU affinity (given in tests)."""
    if allowed is None:
        allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    try:
        text = Path("/proc/cpuinfo").read_text() if cpuinfo is None else cpuinfo
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
        template = meta.get("tokenizer.chat_template") or _CHATML_TEMPLATE
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=self._bos)
        self.thinks = "<think>" in template
        arch = meta.get("general.architecture", "")
        trained = meta.get(f"{arch}.context_length")
        self.trained_context = int(trained) if str(trained or "").isdigit() else None

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
                + context_advice(self, "lower -k")
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
                usage.finish_reason = choice.get("finish_reason") or usage.finish_reason
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
