"""How `deepkb chat` looks: the main screen with an answer and its sources, at a fixed terminal size.

Deterministic by construction: retrieval only (no model, so no timings), a knowledge base of data/ copied to a
folder named `docs` under the working directory (paths show as docs/...). Update after a deliberate change with
`pytest tests/test_tui_snapshots.py --snapshot-update` and look at the SVG.
"""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("textual", reason="the chat needs the [tui] extra (textual)")
pytest.importorskip("pytest_textual_snapshot", reason="snapshot tests need pytest-textual-snapshot")

from deepkb.tui.app import ChatApp, ChatConfig  # noqa: E402

from conftest import SAMPLE_DATA  # noqa: E402


def test_main_screen_with_an_answer_and_its_sources(snap_compare, kb, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(SAMPLE_DATA, tmp_path / "docs")
    kb.ingest([tmp_path / "docs"])
    app = ChatApp(ChatConfig(kb))

    async def ask(pilot) -> None:
        await pilot.press(*"What does the retention policy say about backups?", "enter")
        while app.chat.answering:
            await pilot.pause(0.05)
        await pilot.pause()
        app.clear_notifications()  # toasts fade on a timer; the answer itself says it is retrieval only
        app.query_one("#question").cursor_blink = False  # a blinking cursor is caught on or off

    assert snap_compare(app, terminal_size=(110, 34), run_before=ask)
