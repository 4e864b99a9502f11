"""How deepkb writes a passage and its place for people (deepkb.display), and the Chunk type every stage shares."""

from __future__ import annotations

from pathlib import Path

from deepkb.display import display_path, location, snippet
from deepkb.types import Chunk


def test_places_are_written_as_page_and_lines():
    assert location(4, 3, 10) == "p.4 L3-10"
    assert location(None, 12, 30) == "L12-30"
    assert location(None, 7, 7) == "L7"
    assert location(2, None, None) == "p.2"


def test_a_snippet_is_one_line_cut_at_a_word():
    text = "Backups are kept\nfor thirty days " + "and then expire " * 40
    shown = snippet(text, limit=60)
    assert "\n" not in shown and len(shown) <= 62 and shown.endswith(" …")
    assert not shown[:-2].endswith("expi")  # never half a word
    assert snippet("short text") == "short text"


def test_paths_are_shown_as_the_user_knows_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert display_path(str(tmp_path / "notes" / "a.md")) == "notes/a.md"
    home = Path.home()
    if home != Path("/") and not tmp_path.is_relative_to(home):
        assert display_path(str(home / "x" / "b.md")) == "~/x/b.md"


def test_equal_chunk_texts_share_one_embedding_and_the_heading_counts():
    a = Chunk("Keys rotate yearly.", None, 1, 1, "Policy > Keys", 4)
    b = Chunk("Keys rotate yearly.", 3, 40, 40, "Policy > Keys", 4)  # the same text elsewhere
    c = Chunk("Keys rotate yearly.", None, 1, 1, "Runbook", 4)
    assert a.hash == b.hash and a.hash != c.hash
    assert a.embed_text == "Policy > Keys\nKeys rotate yearly."
