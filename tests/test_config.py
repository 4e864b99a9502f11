"""Settings precedence: CLI flag > environment > the KB's config.toml > default."""

from __future__ import annotations

import pytest

from deepkb.config import Settings
from deepkb.errors import UsageError


def test_precedence(kb_home, monkeypatch):
    kb_home.mkdir(parents=True)
    (kb_home / "config.toml").write_text("chunk_tokens = 150\nrrf_k = 30\ncandidates = 40\n")
    monkeypatch.setenv("DEEPKB_RRF_K", "45")
    monkeypatch.setenv("DEEPKB_CANDIDATES", "20")
    settings = Settings.load(candidates=10)
    assert settings.home == kb_home.resolve()
    assert settings.chunk_tokens == 150  # config file beats the default
    assert settings.rrf_k == 45  # environment beats the config file
    assert settings.candidates == 10  # the flag beats the environment
    assert settings.overlap_tokens == Settings().overlap_tokens


def test_bad_settings_are_named(kb_home):
    kb_home.mkdir(parents=True)
    (kb_home / "config.toml").write_text("chunk_size = 10\n")
    with pytest.raises(UsageError, match="unknown setting.*chunk_size"):
        Settings.load()
    (kb_home / "config.toml").write_text("chunk_tokens = 'big'\n")
    with pytest.raises(UsageError, match="chunk_tokens"):
        Settings.load()


def test_home_is_created_on_demand_not_at_import(tmp_path, monkeypatch):
    target = tmp_path / "later"
    monkeypatch.setenv("DEEPKB_HOME", str(target))
    assert not target.exists()
    assert Settings.load().home == target and target.is_dir()


def test_every_setting_has_a_type_and_a_range():
    from dataclasses import fields

    from deepkb.config import LIMITS
    from deepkb.embedders import BACKEND_NAMES

    names = {f.name for f in fields(Settings)} - {"home"}
    assert names == set(LIMITS), "a setting without an entry in config.LIMITS, or a stale entry"
    assert set(LIMITS["embedding_backend"]) == set(BACKEND_NAMES)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("chunk_tokens = 5000", "chunk_tokens = 5000 .*out of range; valid: 16 to 1024"),
        ("chunk_tokens = 0", "chunk_tokens = 0 .*valid: 16 to 1024"),
        ("dense_share = 1.5", "dense_share = 1.5 .*valid: 0.0 to 1.0"),
        ("fusion = 'max'", "fusion = 'max' .*valid: convex, rrf"),
        ("embedding_backend = 'cuda'", "embedding_backend = 'cuda' .*valid: auto, openvino, sentence-transformers"),
        ("hnsw_m = 1", "hnsw_m = 1 .*valid: 2 to 100"),
        ("candidates = 2.5", "candidates = 2.5 .*not a valid int; valid: 1 to 100000"),
        ("overlap_tokens = 300\nchunk_tokens = 200", "overlap_tokens = 300 must be smaller than chunk_tokens = 200"),
    ],
)
def test_a_bad_value_names_the_setting_the_value_and_the_range(kb_home, line, expected):
    kb_home.mkdir(parents=True)
    (kb_home / "config.toml").write_text(line + "\n")
    with pytest.raises(UsageError, match=expected) as caught:
        Settings.load()
    assert "config.toml" in str(caught.value)  # and where the value came from


def test_environment_and_flags_are_checked_too(kb_home, monkeypatch):
    monkeypatch.setenv("DEEPKB_EMBED_BATCH_SIZE", "0")
    with pytest.raises(UsageError, match="embed_batch_size = '0' .from DEEPKB_EMBED_BATCH_SIZE. is out of range"):
        Settings.load()
    monkeypatch.delenv("DEEPKB_EMBED_BATCH_SIZE")
    with pytest.raises(UsageError, match="candidates = -1 .given on the command line."):
        Settings.load(candidates=-1)
    assert Settings.load(dense_share="0.25").dense_share == 0.25
    with pytest.raises(UsageError, match="rrf_k"):
        Settings(rrf_k=-5)


def test_chunks_longer_than_the_model_reads_are_refused_at_ingest(kb_home, embedder, tmp_path):
    from deepkb.kb import KnowledgeBase

    from conftest import write

    write(tmp_path / "docs" / "a.md", "# A\n\nsome text\n")
    with KnowledgeBase.open(kb_home, embedder=embedder, chunk_tokens=400) as kb:
        with pytest.raises(
            UsageError, match=f"chunk_tokens = 400 is out of range.*reads at most {embedder.max_tokens}"
        ):
            kb.ingest([tmp_path / "docs"])
        assert kb.status()["documents"] == 0
