"""Settings and the knowledge-base home: one typed place, precedence CLI flag > environment > config file > default."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

from deepkb.errors import UsageError

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
FUSIONS = ("convex", "rrf")
CONFIG_FILE = "config.toml"


def default_home() -> Path:
    """The platform data dir (XDG on Linux), used when neither --kb nor DEEPKB_HOME is given."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif os.name == "nt":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "deepkb"


def kb_home(kb: str | os.PathLike | None = None) -> Path:
    """Resolve the KB home (--kb, else DEEPKB_HOME, else the platform data dir) and create it."""
    raw = kb or os.environ.get("DEEPKB_HOME") or default_home()
    home = Path(raw).expanduser().resolve()
    if home.exists() and not home.is_dir():
        raise UsageError(f"{home} is not a directory; point --kb or DEEPKB_HOME at a folder.")
    home.mkdir(parents=True, exist_ok=True)
    return home


@dataclass(frozen=True)
class Settings:
    """Everything that tunes a knowledge base. Field defaults are the tested defaults."""

    home: Path = field(default_factory=default_home)
    """Folder holding kb.sqlite, the HNSW index file and config.toml."""

    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    """Embedding model name (see deepkb.embedder.MODELS) or a local sentence-transformers folder."""

    embedding_backend: str = "auto"
    """openvino, sentence-transformers, or auto: OpenVINO on CPU-only machines where installed (the same vectors)."""

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

    @classmethod
    def load(cls, kb: str | os.PathLike | None = None, **overrides: object) -> Settings:
        """Build settings: explicit overrides (CLI flags) > DEEPKB_* environment > <home>/config.toml > defaults."""
        home = kb_home(kb)
        values: dict[str, object] = {}
        config_path = home / CONFIG_FILE
        if config_path.exists():
            try:
                values.update(tomllib.loads(config_path.read_text(encoding="utf-8")))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise UsageError(f"{config_path} is not valid TOML ({exc}); fix or delete it.") from exc
        known = {f.name: f for f in fields(cls) if f.name != "home"}
        for name in known:
            env = os.environ.get(f"DEEPKB_{name.upper()}")
            if env is not None:
                values[name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UsageError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}.")
        typed: dict[str, object] = {}
        for name, value in values.items():
            target = type(known[name].default)
            try:
                typed[name] = value if isinstance(value, target) else target(value)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"setting {name}={value!r} is not a valid {target.__name__}.") from exc
        if typed.get("fusion", "convex") not in FUSIONS:
            raise UsageError(f"setting fusion={typed['fusion']!r} is not valid; valid: {', '.join(FUSIONS)}.")
        if not 0.0 <= typed.get("dense_share", 0.5) <= 1.0:
            raise UsageError(f"setting dense_share={typed['dense_share']!r} must be between 0 and 1.")
        return cls(home=home, **typed)
