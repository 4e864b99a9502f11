"""Settings and the knowledge-base home: one typed place, precedence CLI flag > environment > config file > default."""

from __future__ import annotations

import functools
import os
import sys
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

from deepkb.errors import UsageError
from deepkb.paths import default_home, kb_home

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
FUSIONS = ("convex", "rrf")
CONFIG_FILE = "config.toml"
# Settings that send data off the machine (the question, passages, an API key): never taken silently from a
# config.toml that came from someone else (`deepkb restore` leaves them out unless --trust-config).
REMOTE_SETTINGS = ("llm_url", "llm_api_key_env")


@dataclass(frozen=True)
class Settings:
    """Everything that tunes a knowledge base. Field defaults are the tested defaults."""

    home: Path = field(default_factory=default_home)
    """Folder holding kb.sqlite, the HNSW index file and config.toml."""

    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    """Embedding model name (see deepkb.embedders.MODELS) or a local sentence-transformers folder."""

    embedding_backend: str = "auto"
    """openvino, sentence-transformers, or auto: OpenVINO on CPU-only machines where installed (the same vectors)."""

    embedding_precision: str = "auto"
    """f32 or bf16: what the embedding engine computes in. auto: the knowledge base's own (recorded when it was first
    built; f32 for one built before deepkb recorded it), and for a new one bf16 where OpenVINO runs on a CPU with
    native bf16, else f32. A knowledge base is only ever queried and extended in its own; `reindex --reembed` changes
    it."""

    chunk_tokens: int = 200
    """Target chunk size in embedding-model tokens; chunks never exceed the model's own limit."""

    overlap_tokens: int = 32
    """At most this many tokens of the previous chunk's last lines repeat at the start of the next chunk."""

    embed_batch_size: int = 32
    """Texts per embedding batch."""

    chunks_per_commit: int = 256
    """Chunks gathered from several files before one embedding pass and one SQLite transaction."""

    hnsw_m: int = 16
    """HNSW graph degree."""

    hnsw_ef_construction: int = 200
    """HNSW build-time beam width."""

    hnsw_ef_search: int = 96
    """HNSW query-time beam width (raised to k when k is larger)."""

    fusion: str = "convex"
    """How hybrid search merges its two lists: convex (normalized scores, weighted by dense_share) or rrf (ranks)."""

    dense_share: float = 0.5
    """Convex fusion: the dense side's weight, the keyword side gets the rest (0.5 is best on SciFact, held out too)."""

    rrf_k: int = 20
    """Reciprocal-rank-fusion constant (fusion = "rrf"; bench/fusion_sweep.py: 20 beat the usual 60 on SciFact)."""

    candidates: int = 100
    """How many hits each side (dense, keyword) contributes to hybrid fusion."""

    rerank: int = 0
    """Hybrid search: rank the first this many passages again by their best sentences (0: off; 10 costs 0.3 s)."""

    model: str = ""
    """Answer model: a GGUF file or a catalog name (see `deepkb models list`); empty: the pulled default model."""

    llm_url: str = ""
    """An OpenAI-compatible server (llama-server, vLLM, Ollama) to answer with instead of a local model."""

    llm_api_key_env: str = ""
    """Name of the environment variable whose API key is sent to llm_url; empty: no key is sent."""

    llm_context: int = 4096
    """The answer model's context size in tokens (prompt and reply)."""

    gpu_layers: int = -1
    """Answer-model layers put on the GPU: -1 all (when llama.cpp was built with a GPU backend), 0 none."""

    llm_threads: int = 0
    """CPU threads for the answer model; 0: the physical cores this process may use."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name in LIMITS:
                check(f.name, getattr(self, f.name))

    @classmethod
    def load(cls, kb: str | os.PathLike | None = None, **overrides: object) -> Settings:
        """Build settings: explicit overrides (CLI flags) > DEEPKB_* environment > <home>/config.toml > defaults."""
        home = kb_home(kb)
        values: dict[str, object] = {}
        sources: dict[str, str] = {}
        config_path = home / CONFIG_FILE
        if config_path.exists():
            try:
                values.update(tomllib.loads(config_path.read_text(encoding="utf-8")))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise UsageError(f"{config_path} is not valid TOML ({exc}); fix or delete it.") from exc
            except OSError as exc:
                raise UsageError(f"cannot read {config_path} ({exc.strerror}); check its permissions.") from exc
            sources.update((name, f"in {config_path}") for name in values)
        known = {f.name: f for f in fields(cls) if f.name != "home"}
        for name in known:
            env = os.environ.get(f"DEEPKB_{name.upper()}")
            if env is not None:
                values[name], sources[name] = env, f"from DEEPKB_{name.upper()}"
        for name, value in overrides.items():
            if value is not None:
                values[name], sources[name] = value, "given on the command line"
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UsageError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}.")
        typed = {name: check(name, value, sources.get(name)) for name, value in values.items()}
        if "overlap_tokens" in typed or "chunk_tokens" in typed:
            overlap = typed.get("overlap_tokens", cls.overlap_tokens)
            chunk = typed.get("chunk_tokens", cls.chunk_tokens)
            if overlap >= chunk:
                raise UsageError(
                    f"setting overlap_tokens = {overlap} must be smaller than chunk_tokens = {chunk} "
                    f"({sources.get('overlap_tokens') or sources.get('chunk_tokens')})."
                )
        return cls(home=home, **typed)


# Each setting's valid values: (lowest, highest) for numbers, a tuple of names for choices, None for any text.
# Every field of Settings has an entry (tests/test_config.py checks): a new setting says its range here.
LIMITS: dict[str, tuple | None] = {
    "embedding_model": None,
    "embedding_backend": ("auto", "openvino", "sentence-transformers"),
    "embedding_precision": ("auto", "f32", "bf16"),
    "chunk_tokens": (16, 1024),  # and at most what the embedding model reads (checked when it is loaded)
    "overlap_tokens": (0, 1024),
    "embed_batch_size": (1, 4096),
    "chunks_per_commit": (1, 1_000_000),
    "hnsw_m": (2, 100),
    "hnsw_ef_construction": (8, 4096),
    "hnsw_ef_search": (1, 4096),
    "fusion": FUSIONS,
    "dense_share": (0.0, 1.0),
    "rrf_k": (0, 10_000),
    "candidates": (1, 100_000),
    "rerank": (0, 100),
    "model": None,
    "llm_url": None,
    "llm_api_key_env": None,
    "llm_context": (256, 1_048_576),
    "gpu_layers": (-1, 100_000),
    "llm_threads": (0, 4096),
}

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def check(name: str, value: object, source: str | None = None) -> object:
    """The value converted to the setting's type, or a UsageError naming the setting, the value and what is valid."""
    target = _types()[name]
    where = f" ({source})" if source else ""
    options = [t for t in typing.get_args(target) if t is not type(None)] or [target]
    kind = options[0]
    if value is None and type(None) in typing.get_args(target):
        return None
    try:
        if kind is bool and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            converted: object = value.strip().lower() in _TRUE
        elif kind is bool and not isinstance(value, bool):
            raise ValueError
        elif kind is int and (isinstance(value, bool) or isinstance(value, float) and not value.is_integer()):
            raise ValueError
        else:
            converted = value if isinstance(value, kind) else kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"setting {name} = {value!r}{where} is not a valid {kind.__name__}{_valid(name)}.") from None
    limits = LIMITS.get(name)
    if limits and isinstance(limits[0], str):
        if converted not in limits:
            raise UsageError(f"setting {name} = {value!r}{where} is not valid; valid: {', '.join(limits)}.")
    elif limits and not limits[0] <= converted <= limits[1]:
        raise UsageError(f"setting {name} = {value!r}{where} is out of range{_valid(name)}.")
    return converted


@functools.cache
def _types() -> dict[str, object]:
    return typing.get_type_hints(Settings)


def _valid(name: str) -> str:
    limits = LIMITS.get(name)
    if not limits:
        return ""
    if isinstance(limits[0], str):
        return f"; valid: {', '.join(limits)}"
    return f"; valid: {limits[0]} to {limits[1]}"
