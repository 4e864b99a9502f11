"""`deepkb chat` as a new user found it: new answers in sight after a long conversation, Markdown that keeps
`<placeholders>`, the help table, the whole source passage, typing after Shift+Tab, copying under tmux, and the
notices that belong under an answer. Pilot over a real knowledge base and a stand-in answer server."""

# ruff: noqa: F811  (docs_kb, kb_template: test_tui's fixtures, used here by name)
from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import ExitStack

import pytest

pytest.importorskip("textual", reason="the chat needs the [tui] extra (textual)")

from test_tui import SIZE, _app, ask, chat, docs_kb, items, kb_template, notices, run, until  # noqa: E402,F401
from textual.widgets import Input, Markdown  # noqa: E402

from deepkb.llm import OpenAICompatLLM  # noqa: E402
from deepkb.tui.screens.dialogs import HelpScreen  # noqa: E402
from deepkb.tui.screens.source import SourceScreen  # noqa: E402
from deepkb.tui.widgets.conversation import UserMessage  # noqa: E402

from server_harness import Upstream  # noqa: E402


@pytest.fixture
def scripted():
    """Start stand-in answer servers that stream their reply word by word; all stopped after the test."""
    with ExitStack() as stack:
        yield lambda reply: stack.enter_context(Upstream(reply, pieces=None, finish_reason="stop"))


LONG = "\n\n".join(f"Paragraph {i}: backups are kept for thirty-five days [1]." for i in range(60))


def _top_gap(view) -> int:
    """Blank rows between the top of the conversation view and the first widget drawn in it."""
    tops = [w.region.y for w in view.query(UserMessage) if w.region.height]
    return min(tops) - view.region.y if tops else view.region.height


def test_a_new_conversation_after_a_long_one_is_in_sight(docs_kb, scripted):
    server = scripted(LONG)
    app = _app(docs_kb, lambda: OpenAICompatLLM(server.url))

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await ask(pilot)
            view = chat(pilot).conversation
            assert view.max_scroll_y > 20  # taller than the screen
            await pilot.press("ctrl+n")
            await until(pilot, lambda: not chat(pilot).conversation.children, what="the new conversation")
            server.reply = "Legal holds suspend the expiry [1]."
            await ask(pilot, "and the legal hold?")
            await pilot.pause(0.5)
            assert _top_gap(view) <= 2, f"{_top_gap(view)} blank rows above the question"

    run(scenario)


def _shown(markdown: Markdown) -> str:
    from textual.widgets._markdown import MarkdownBlock

    return "\n".join(str(getattr(b, "_content", "")) for b in markdown.query(MarkdownBlock))


def test_placeholders_stay_the_help_table_holds_and_a_loop_is_marked_under_the_answer(docs_kb, scripted):
    looping = "It keeps the stash as it was. " * 6
    server = scripted(f"Use git stash branch <branchname> [<stash>] for that [1]. {looping}")
    app = _app(docs_kb, lambda: OpenAICompatLLM(server.url))

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await ask(pilot)
            answer = chat(pilot).last_answer
            assert "git stash branch <branchname> [<stash>]" in _shown(answer.answer_markdown)
            meta = str(answer.query_one(".meta").render())
            assert "repeating itself" in meta
            assert not any("repeating itself" in n for n in notices(pilot))  # under the answer, not a toast

            await pilot.press("f1")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help")
            await pilot.pause(0.3)
            from textual.widgets._markdown import MarkdownTableCellContents

            cells = [str(c.render()) for c in app.screen.query(MarkdownTableCellContents)]
            assert "/think on|off" in cells and "/copy [code|N]" in cells

    run(scenario)


def test_typing_after_shift_tab_and_after_an_unknown_command(docs_kb):
    app = _app(docs_kb)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await ask(pilot)
            box = app.query_one("#question", Input)
            for _ in range(2):  # into the sources list, then into the conversation
                await pilot.press("shift+tab")
                assert app.focused is not box
                await pilot.press(*"why")
                assert box.value == "why" and app.focused is box
                box.value = ""
            await pilot.press(*"/nope", "enter")
            assert any("unknown command /nope" in n for n in notices(pilot))
            assert box.value == ""
            await pilot.press(*"/k 3", "enter")
            assert app.k == 3 and box.value == ""
            await pilot.press("up", "up")
            assert box.value == "/nope"  # still there to correct

    run(scenario)


def test_the_source_view_reads_the_whole_passage_with_the_cited_lines_marked(docs_kb, scripted):
    from deepkb.answer.stream import AskOptions

    server = scripted("Production keys need the security lead's approval [1].")
    app = _app(docs_kb, lambda: OpenAICompatLLM(server.url), options=AskOptions(source_tokens=200))

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await ask(pilot, "Who has to approve rotating a production API key?")
            cited = [i.source for i in items(pilot) if i.source.n is not None]
            excerpt = next(
                s for s in cited
                if s.n == 1 and (c := docs_kb.store.chunks_by_ids([s.hit.chunk_id])[s.hit.chunk_id])
                and (c.line_end - c.line_start) > (s.hit.line_end - s.hit.line_start)
            )  # fmt: skip
            chunk = docs_kb.store.chunks_by_ids([excerpt.hit.chunk_id])[excerpt.hit.chunk_id]
            await pilot.press("tab", "1")  # into the sources pane, then source [1]
            await until(pilot, lambda: isinstance(app.screen, SourceScreen), what="the source")
            shown = str(app.screen.query_one("#source-text").render())
            first_line = chunk.text.strip().split("\n")[0].strip()
            assert first_line in shown and f"{chunk.line_start} " in shown  # the whole chunk, numbered
            assert len(shown.splitlines()) > excerpt.hit.line_end - excerpt.hit.line_start + 1
            marked = [n for n, _, cited_line in app.screen.lines if cited_line]
            assert marked and min(marked) >= excerpt.hit.line_start and max(marked) <= excerpt.hit.line_end

    run(scenario)


def test_copy_under_tmux_that_drops_osc52_says_where_the_text_went(docs_kb, tmp_path, monkeypatch):
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed (.ci/run installs it)")
    socket = tmp_path / "tmux.sock"
    subprocess.run(["tmux", "-S", str(socket), "new-session", "-d", "-x", "80", "-y", "20"], check=True)
    try:
        subprocess.run(["tmux", "-S", str(socket), "set", "-g", "set-clipboard", "external"], check=True)
        monkeypatch.setenv("TMUX", f"{socket},{os.getpid()},0")
        monkeypatch.delenv("DEEPKB_CLIPBOARD", raising=False)
        monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # no xclip/wl-copy: the file fallback
        monkeypatch.setenv("DEEPKB_CLIPBOARD_DIR", str(tmp_path / "clip"))
        tmux = shutil.which("tmux", path=os.defpath)
        (tmp_path / "no-tools").mkdir()
        (tmp_path / "no-tools" / "tmux").symlink_to(tmux)
        app = _app(docs_kb)

        async def scenario():
            async with app.run_test(size=SIZE) as pilot:
                await ask(pilot)
                await pilot.press("ctrl+y")
                said = notices(pilot)[-1]
                assert "set-clipboard is external" in said and "set-clipboard on" in said
                copied = next((tmp_path / "clip").iterdir())
                assert said.count(str(copied)) == 1 and copied.read_text() == chat(pilot).last_answer.text

        run(scenario)
    finally:
        subprocess.run(["tmux", "-S", str(socket), "kill-server"], check=False)


CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_the_status_line_says_think_only_for_models_that_reason(docs_kb, tiny_model, tmp_path):
    from deepkb.llm import LlamaCppLLM

    from tiny_gguf import build_tiny_gguf

    plain = build_tiny_gguf(tmp_path / "tiny-chatml.gguf", chat_template=CHATML)
    for path, thinks in ((plain, False), (tiny_model, True)):
        app = _app(docs_kb, lambda path=path: LlamaCppLLM(path, context_size=1024, gpu_layers=0))

        async def scenario(app=app, thinks=thinks):
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: app.model_ready, what="the model")
                await pilot.pause()
                line = str(chat(pilot).status.render())
                assert ("think on" in line) is thinks, line

        run(scenario)
