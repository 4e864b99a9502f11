"""LLM backends, chosen from one registry: local llama.cpp on a GGUF file, or any OpenAI-compatible server.

base.py holds the interface (LLM, Usage), llama_cpp.py and remote.py the two backends.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from deepkb.errors import UsageError
from deepkb.llm.base import DEFAULT_CONTEXT_SIZE, LLM, Message, Usage
from deepkb.llm.llama_cpp import LlamaCppLLM, default_gpu_layers, physical_cores, repeat_penalty_for
from deepkb.llm.remote import OpenAICompatLLM
from deepkb.paths import prompt_cache

if TYPE_CHECKING:
    from deepkb.config import Settings

__all__ = [
    "BACKENDS",
    "DEFAULT_CONTEXT_SIZE",
    "LLM",
    "LlamaCppLLM",
    "Message",
    "OpenAICompatLLM",
    "Usage",
    "default_gpu_layers",
    "get_backend",
    "open_configured_llm",
    "open_llm",
    "physical_cores",
    "repeat_penalty_for",
]

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
    from deepkb.llm.catalog import resolve_model

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
        cache_dir=prompt_cache(settings.home),
        api_key_env=settings.llm_api_key_env or None,
    )
