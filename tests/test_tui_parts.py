"""The chat's parts a user meets directly: slash commands, $EDITOR / PDF viewer commands, the copy fallback,
citation links, input history and the status line (the whole app is tested in test_tui.py)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("textual")
from textual.app import App, ComposeResult  # noqa: E402

from deepkb.tui.commands import SlashError, help_markdown, parse_k, parse_on_off, parse_slash  # noqa: E402
from deepkb.tui.system import clipboard_file, clipboard_mode, editor_command, pdf_command  # noqa: E402
from deepkb.tui.widgets.chat_input import ChatInput  # noqa: E402
from deepkb.tui.widgets.conversation import citation_number, link_markers  # noqa: E402
from deepkb.tui.widgets.status import StatusLine  # noqa: E402


def test_slash_commands_parse_and_refuse_with_a_reason():
    assert parse_slash("What is /k?") is None and parse_slash("//k 3") is None  # questions, not commands
    k = parse_slash("  /K 8 ")
    assert (k.name, k.arg) == ("k", "8") and parse_k(k.arg) == 8
    with pytest.raises(SlashError, match="unknown command /frobnicate; type /help"):
        parse_slash("/frobnicate")
    with pytest.raises(SlashError, match="1 to 50"):
        parse_k("99")
    with pytest.raises(SlashError, match="number of passages"):
        parse_k("many")
    assert parse_on_off("off", True) is False and parse_on_off("", True) is False and parse_on_off("on", False)
    with pytest.raises(SlashError, match="on or off"):
        parse_on_off("maybe", True)
    text = help_markdown()
    for name in ("/help", "/new", "/clear", "/sources", "/k", "/model", "/think", "/export"):
        assert f"`{name}" in text, name


def test_editor_and_pdf_viewer_commands_open_the_cited_place(monkeypatch):
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", "code --wait")
    assert editor_command("/docs/a.md", 42) == ["code", "--wait", "+42", "/docs/a.md"]
    assert editor_command("/docs/a.md", None) == ["code", "--wait", "/docs/a.md"]
    monkeypatch.setenv("DEEPKB_PDF_VIEWER", "zathura")
    assert pdf_command("/docs/p.pdf", 3) == ["zathura", "--page=3", "/docs/p.pdf"]  # a known viewer: at the page
    monkeypatch.setenv("DEEPKB_PDF_VIEWER", "/opt/bin/okular")
    assert pdf_command("/docs/p.pdf", 3) == ["/opt/bin/okular", "-p", "3", "/docs/p.pdf"]
    monkeypatch.setenv("DEEPKB_PDF_VIEWER", "someviewer --fast")
    assert pdf_command("/docs/p.pdf", 3) == ["someviewer", "--fast", "/docs/p.pdf"]  # unknown: just the file


def test_copy_falls_back_to_a_file_the_user_can_open(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPKB_CLIPBOARD_DIR", str(tmp_path))
    monkeypatch.setenv("TERM_PROGRAM", "Apple_Terminal")  # no OSC 52 there
    monkeypatch.delenv("DEEPKB_CLIPBOARD", raising=False)
    assert clipboard_mode() == "tool"
    path = clipboard_file("Backups are kept for 35 days [1]")
    assert path.parent == tmp_path and path.read_text() == "Backups are kept for 35 days [1]"
    monkeypatch.setenv("DEEPKB_CLIPBOARD", "file")
    assert clipboard_mode() == "file"


def test_citation_markers_become_links_to_their_source():
    linked = link_markers("Kept 35 days [1], then deleted [12].")
    assert "(cite:1)" in linked and "(cite:12)" in linked and "Kept 35 days" in linked
    assert citation_number("cite:12") == 12
    assert citation_number("https://example.org") is None and citation_number("cite:x") is None


class _Parts(App):
    def compose(self) -> ComposeResult:
        yield ChatInput()
        yield StatusLine()


def test_input_history_walks_back_and_keeps_the_draft():
    async def scenario():
        app = _Parts()
        async with app.run_test() as pilot:
            box = app.query_one(ChatInput)
            for question in ("first question", "second question", "second question"):
                box.remember(question)
            assert box.history == ["first question", "second question"]  # not twice in a row
            box.focus()
            box.value = "a draft"
            await pilot.press("up")
            assert box.value == "second question"
            await pilot.press("up", "up")
            assert box.value == "first question"
            await pilot.press("down", "down")
            assert box.value == "a draft"

            status = app.query_one(StatusLine)
            status.model, status.kb, status.watch, status.speed = (
                "model: tiny (CPU)",
                "10 docs",
                "watch: idle",
                "9 tok/s",
            )
            status.think = False
            await pilot.pause()
            shown = str(status.render())
            assert shown == "model: tiny (CPU) · 10 docs · watch: idle · think off · 9 tok/s"

    asyncio.run(scenario())


def test_the_source_screen_shows_a_joined_passage_and_a_saved_citation_whole(kb, tmp_path):
    """A passage that joins consecutive chunks is read whole, and so is a saved chat's citation of one, which knows
    only its best chunk (chunk_ids are not saved) but cites lines of the next chunk too."""
    from types import SimpleNamespace

    from deepkb.retrieval.search import Hit
    from deepkb.tui.screens.source import SourceScreen

    from conftest import write

    steps = [
        f"Step {n}. Rotate key number {n} of the vault and write the time it took into the log." for n in range(60)
    ]
    write(tmp_path / "docs" / "vault.md", "# Vault\n\n" + "\n\n".join(steps) + "\n")
    kb.ingest([tmp_path / "docs"])
    first, second = kb.store.document_chunks(
        next(iter(kb.store.documents_under([str(tmp_path.resolve())]).values())).id
    )[:2]
    screen = SimpleNamespace(app=SimpleNamespace(kb=kb))
    saved = Hit(first.id, first.path, None, first.line_end, second.line_end, None, 1.0, "…")
    for hit in (saved, Hit(first.id, first.path, None, first.line_start, second.line_end, None, 1.0, "…",
                           chunk_ids=(first.id, second.id))):  # fmt: skip
        whole = SourceScreen._chunk(screen, hit)
        assert (whole.line_start, whole.line_end) == (first.line_start, second.line_end)
