"""deepkb.paths: every folder deepkb uses comes from one module, with the documented variables and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepkb import paths
from deepkb.errors import UsageError


def test_kb_home_is_the_flag_else_deepkb_home_else_the_data_dir_and_is_created_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPKB_HOME", str(tmp_path / "env-home"))
    assert not (tmp_path / "env-home").exists()  # nothing is created until a home is asked for
    assert paths.kb_home() == (tmp_path / "env-home").resolve() and (tmp_path / "env-home").is_dir()
    assert paths.kb_home(tmp_path / "flag-home") == (tmp_path / "flag-home").resolve()
    monkeypatch.delenv("DEEPKB_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert paths.given_home() == tmp_path / "data" / "deepkb"
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is not a directory"):
        paths.kb_home(tmp_path / "file")


def test_the_cache_is_deepkb_cache_else_xdg_else_dot_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPKB_CACHE", str(tmp_path / "c"))
    assert paths.cache_root() == tmp_path / "c"
    monkeypatch.delenv("DEEPKB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_root() == tmp_path / "xdg" / "deepkb"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert paths.cache_root() == tmp_path / "user" / ".cache" / "deepkb"


def test_files_inside_the_home(tmp_path):
    from deepkb.conversation.store import ConversationStore

    assert ConversationStore(tmp_path).path == paths.conversations_db(tmp_path) == tmp_path / "conversations.sqlite"
    assert paths.prompt_cache(tmp_path) == tmp_path / "cache" / "prompts"


def test_models_dir_is_deepkb_models_first(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPKB_MODELS", str(tmp_path / "m"))
    assert paths.models_dir() == (tmp_path / "m").resolve()
    monkeypatch.delenv("DEEPKB_MODELS")
    checkout = Path(paths.__file__).resolve().parent.parent
    if not (checkout / ".git").exists():  # an installed deepkb: the models live in the KB home
        assert paths.models_dir(tmp_path) == tmp_path / "models"
    else:
        assert paths.models_dir(tmp_path) == checkout / "models"
