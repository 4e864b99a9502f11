"""Shared fixtures: every test gets its own DEEPKB_HOME; the real embedding model is loaded once per session."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

from deepkb.config import Settings
from deepkb.embedders import create_embedder
from deepkb.kb import KnowledgeBase

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "data"


@pytest.fixture(scope="session", autouse=True)
def deepkb_cache(tmp_path_factory) -> Path:
    """Derived model files (the OpenVINO IR) go to a per-session folder: converted once, never the user's cache.

    DEEPKB_TEST_CACHE names a folder that already holds the converted IR instead (`make test-py310`: that venv has
    no torch to convert with)."""
    given = os.environ.get("DEEPKB_TEST_CACHE")
    folder = Path(given) if given else tmp_path_factory.mktemp("deepkb-cache")
    os.environ["DEEPKB_CACHE"] = str(folder)
    return folder


@pytest.fixture(autouse=True)
def kb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches the user's knowledge base or model settings."""
    home = tmp_path / "kb"
    monkeypatch.setenv("DEEPKB_HOME", str(home))
    monkeypatch.setenv("DEEPKB_MODELS", str(tmp_path / "models"))  # a model pulled into ./models must not leak in
    for var in ("DEEPKB_MODEL", "DEEPKB_EMBEDDING_MODEL", "DEEPKB_FAULT", "DEEPKB_CHUNKS_PER_COMMIT"):
        monkeypatch.delenv(var, raising=False)
    # Knowledge bases the tests build (in-process or by a CLI subprocess) are f32, the precision of the shared
    # `embedder` they are opened with afterwards; a KB is never opened in another precision than its own. The
    # default (bf16 on CPUs with native bf16) is tested where a test asks for it (test_fresh_machine,
    # test_ingest_pipeline).
    monkeypatch.setenv("DEEPKB_EMBEDDING_PRECISION", "f32")
    return home


@pytest.fixture(scope="session")
def embedder():
    """The real all-MiniLM-L6-v2, resolved offline; the same instance the CLI gets in-process (loaded once)."""
    defaults = Settings()
    return create_embedder(defaults.embedding_model, batch_size=defaults.embed_batch_size)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny qwen2 GGUF with the real Qwen2 vocabulary that llama.cpp really runs (built once per session)."""
    from tiny_gguf import tiny_model_path

    return tiny_model_path(tmp_path_factory)


class Spy:
    """Records every text handed to the real embedder, so tests can count what was re-embedded."""

    def __init__(self, embedder) -> None:
        self.embedder, self.texts = embedder, []
        self._embed = embedder.embed

    def __call__(self, texts):
        self.texts.extend(texts)
        return self._embed(texts)


@pytest.fixture
def embedded(embedder, monkeypatch: pytest.MonkeyPatch) -> Spy:
    spy = Spy(embedder)
    monkeypatch.setattr(embedder, "embed", spy)
    return spy


@pytest.fixture
def kb(kb_home: Path, embedder) -> KnowledgeBase:
    base = KnowledgeBase.open(kb_home, embedder=embedder)
    yield base
    base.close()


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    """A private copy of data/ that a test may edit."""
    target = tmp_path / "docs"
    shutil.copytree(SAMPLE_DATA, target)
    return target


def write(path: Path, text: str) -> Path:
    """Write dedented text, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path
