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
