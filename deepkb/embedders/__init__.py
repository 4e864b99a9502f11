"""Embedders: text to normalized vectors, offline, chosen by name from one registry (as deepkb.llm chooses LLMs).

base.py holds the interface (Embedder) and how model files are found; sentence_transformers.py and openvino.py are
the two engines. "auto" picks OpenVINO where it is installed and no NVIDIA GPU is, sentence-transformers otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path

from deepkb.embedders.base import MODELS, Embedder, KnownModel, model_name, quiet_third_party, resolve_model
from deepkb.embedders.openvino import (
    PRECISIONS,
    ConversionRejected,
    OpenVINOEmbedder,
    native_bf16,
    remembered_rejection,
)
from deepkb.embedders.sentence_transformers import SentenceTransformerEmbedder
from deepkb.errors import EmbeddingModelError

__all__ = [
    "BACKENDS",
    "BACKEND_NAMES",
    "MODELS",
    "PRECISIONS",
    "Embedder",
    "KnownModel",
    "OpenVINOEmbedder",
    "SentenceTransformerEmbedder",
    "backend_class",
    "create_embedder",
    "default_precision",
    "gpu_present",
    "model_name",
    "openvino_rejection",
    "pick_backend",
    "quiet_third_party",
    "resolve_backend",
    "resolve_model",
    "torch_cuda",
]

BACKENDS: dict[str, type[Embedder]] = {
    "openvino": OpenVINOEmbedder,
    "sentence-transformers": SentenceTransformerEmbedder,
}
BACKEND_NAMES = ("auto", *BACKENDS)  # what `embedding_backend` may say


def resolve_backend(name: str, model: str | None = None) -> str:
    """A backend name with "auto" replaced by what this machine uses: pick_backend()'s choice, or
    sentence-transformers where an earlier process found that OpenVINO cannot take `model` (remembered)."""
    if name != "auto":
        return name
    picked = pick_backend()
    if picked == "openvino" and model is not None and openvino_rejection(model):
        return "sentence-transformers"
    return picked


def openvino_rejection(model: str) -> str | None:
    """Why OpenVINO was refused for `model` with the installed OpenVINO, if a process found out before."""
    return remembered_rejection(model)


def backend_class(name: str) -> type[Embedder]:
    """The class behind a backend name ("auto" included); an unknown name lists the valid ones."""
    name = resolve_backend(name)
    try:
        return BACKENDS[name]
    except KeyError:
        raise EmbeddingModelError(f"unknown embedding backend {name!r}; valid: {', '.join(BACKEND_NAMES)}.") from None


def pick_backend() -> str:
    """sentence-transformers on CUDA where an NVIDIA GPU is and torch was built for it (workstation GPU, Jetson);
    otherwise OpenVINO where it is installed (same vectors, no torch import, ~3x faster queries on a CPU)."""
    import importlib.util

    if gpu_present() and torch_cuda():
        return "sentence-transformers"
    return "openvino" if importlib.util.find_spec("openvino") else "sentence-transformers"


def default_precision(backend: str = "auto", model: str | None = None) -> str:
    """The precision a new knowledge base is built in (embedding_precision = "auto"; an existing one keeps its own):
    bf16 where OpenVINO embeds on a CPU with native bf16 (1.9x f32's speed, cosine to f32 above 0.9999, retrieval
    unchanged: BENCHMARKS.md), f32 everywhere else (sentence-transformers, on a GPU too)."""
    return "bf16" if resolve_backend(backend, model) == "openvino" and native_bf16() else "f32"


def gpu_present() -> bool:
    """An NVIDIA GPU's device node exists (a discrete/datacenter GPU, or a Jetson's integrated one)."""
    return any(Path(node).exists() for node in _NVIDIA_NODES)


def torch_cuda() -> str | None:
    """The CUDA version the installed torch was built with, read from its version.py without importing torch
    (about 9 s here); None for a CPU-only build or no torch."""
    import importlib.util
    import re

    try:
        spec = importlib.util.find_spec("torch")
        if spec is None or not spec.origin:
            return None
        text = (Path(spec.origin).parent / "version.py").read_text()
    except (ImportError, OSError, ValueError):
        return None
    found = re.search(r"^cuda\b[^=\n]*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    return found.group(1) if found else None


log = logging.getLogger(__name__)
_NVIDIA_NODES = ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu")  # a discrete/datacenter GPU; a Jetson's integrated one
_loaded: dict[tuple, Embedder] = {}


def create_embedder(name_or_path: str, backend: str = "auto", precision: str = "f32", **options: object) -> Embedder:
    """Pick a backend by name (an unknown name lists the valid ones); a model is loaded once per process.

    `precision` (f32 or bf16) is a knowledge base's: it is embedded and queried in it, by either engine.

    "auto" falls back to sentence-transformers when OpenVINO cannot take the model. That is a fact about the model
    and the OpenVINO version, remembered on disk (embedders.openvino.ConversionRejected), so it is announced once, by
    the process that found it, and later processes go straight to the fallback.
    """
    if precision not in PRECISIONS:
        raise EmbeddingModelError(f"unknown embedding precision {precision!r}; valid: {', '.join(PRECISIONS)}.")
    key = (backend, name_or_path, precision, tuple(sorted(options.items())))
    if key not in _loaded:
        cls = backend_class(backend)
        if precision != "f32":
            options = {**options, "precision": precision}
        try:
            _loaded[key] = cls(name_or_path, **options)
        except EmbeddingModelError as exc:
            # Only OpenVINO refusing the model falls back; a model that is missing or not the published one is
            # missing for torch too, and is said once, as it is.
            if backend != "auto" or cls is SentenceTransformerEmbedder or not isinstance(exc, ConversionRejected):
                raise
            if getattr(exc, "first_time", True):
                log.warning(
                    "%s deepkb embeds with sentence-transformers (torch) instead: the same vectors, slower to start. "
                    'This is remembered until OpenVINO is upgraded; `embedding_backend = "sentence-transformers"` '
                    "in config.toml makes it explicit.",
                    exc,
                )
            fallback = SentenceTransformerEmbedder(name_or_path, **options)
            fallback.fallback_reason = str(exc)
            _loaded[key] = fallback
    return _loaded[key]
