"""Every folder deepkb uses, resolved in one place: the KB home, the cache of derived model files, the models folder.

DEEPKB_HOME names the KB home, DEEPKB_CACHE the cache, DEEPKB_MODELS the answer models' folder; otherwise the
platform's data and cache folders (XDG on Linux). Nothing is created at import time: kb_home() creates the home
when it is called.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from deepkb.errors import UsageError

CONVERSATIONS_FILE = "conversations.sqlite"  # in the KB home


def default_home() -> Path:
    """The platform data dir (XDG on Linux), used when neither --kb nor DEEPKB_HOME is given."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif os.name == "nt":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "deepkb"


def given_home(kb: str | os.PathLike | None = None) -> Path:
    """The KB home as given (--kb, else DEEPKB_HOME, else the platform data dir), neither resolved nor created."""
    return Path(kb or os.environ.get("DEEPKB_HOME") or default_home()).expanduser()


def kb_home(kb: str | os.PathLike | None = None) -> Path:
    """Resolve the KB home (--kb, else DEEPKB_HOME, else the platform data dir) and create it."""
    home = given_home(kb).resolve()
    if home.exists() and not home.is_dir():
        raise UsageError(f"{home} is not a directory; point --kb or DEEPKB_HOME at a folder.")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create the knowledge-base folder {home} ({exc.strerror}); point --kb or DEEPKB_HOME at a "
            "folder you can write."
        ) from exc
    return home


def conversations_db(home: Path) -> Path:
    """The saved conversations of a knowledge base."""
    return Path(home) / CONVERSATIONS_FILE


def prompt_cache(home: Path) -> Path:
    """Where a local model keeps the KV state of the fixed prompt start between runs."""
    return Path(home) / "cache" / "prompts"


def cache_root() -> Path:
    """Where derived model files live: DEEPKB_CACHE, else $XDG_CACHE_HOME/deepkb, else ~/.cache/deepkb."""
    given = os.environ.get("DEEPKB_CACHE")
    if given:
        return Path(given).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "deepkb"


def models_dir(home: Path | None = None) -> Path:
    """DEEPKB_MODELS, else <checkout>/models when run from a source checkout, else <KB home>/models."""
    if os.environ.get("DEEPKB_MODELS"):
        return Path(os.environ["DEEPKB_MODELS"]).expanduser().resolve()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / ".git").exists():
        return checkout / "models"
    return (home or kb_home()) / "models"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache (HF_HUB_CACHE, else $HF_HOME/hub), where a downloaded embedding model may be."""
    return Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
