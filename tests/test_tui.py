"""`deepkb chat`: the Textual app driven by Pilot over a real knowledge base, the tiny GGUF, and a real terminal."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("textual", reason="the chat needs the [tui] extra (textual)")

from textual.widgets import Input, ListView  # noqa: E402

from deepkb.cli import main  # noqa: E402
from deepkb.conversation.session import ConversationStore  # noqa: E402
from deepkb.kb import KnowledgeBase  # noqa: E402
from deepkb.llm import LlamaCppLLM, OpenAICompatLLM  # noqa: E402
from deepkb.tui.app import ChatApp, ChatConfig  # noqa: E402
from deepkb.tui.screens.chat import ChatScreen  # noqa: E402
from deepkb.tui.screens.dialogs import ConfirmScreen, HelpScreen  # noqa: E402
from deepkb.tui.screens.history import HistoryScreen  # noqa: E402
from deepkb.tui.screens.source import SourceScreen  # noqa: E402
from deepkb.tui.widgets.sources import SourceItem  # noqa: E402

from conftest import REPO, SAMPLE_DATA, write  # noqa: E402
from server_harness import Upstream  # noqa: E402

QUESTION = "What does the retention policy say about backups?"
SIZE = (120, 40)


# fixtures and helpers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kb_template(tmp_path_factory, embedder) -> Path:
    """data/ ingested once per module; each test gets its own copy of the knowledge-base folder."""
    docs = tmp_path_factory.mktemp("tui-docs") / "docs"
    shutil.copytree(SAMPLE_DATA, docs)
    home = tmp_path_factory.mktemp("tui-kb") / "kb"
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        kb.ingest([docs])
    return home


@pytest.fixture
def docs_kb(kb_template, kb_home, embedder):
    shutil.copytree(kb_template, kb_home, dirs_exist_ok=True)
    kb = KnowledgeBase.open(kb_home, embedder=embedder)
    yield kb
    kb.close()


@pytest.fixture(scope="module")
def tiny_llm(tiny_model):
    return LlamaCppLLM(tiny_model, context_size=1024, gpu_layers=0)


def _app(kb, load_llm=None, **config) -> ChatApp:
    return ChatApp(ChatConfig(kb, load_llm, model_label="test model", **config))


def run(test) -> None:
    """Run an async Pilot scenario (no asyncio plugin needed)."""
    asyncio.run(test())


async def until(pilot, condition, timeout: float = 60.0, what: str = "condition") -> None:
    """Let the app run until `condition()` holds; workers run in threads, so poll rather than sleep blindly."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def ask(pilot, question: str = QUESTION, wait: bool = True) -> None:
    await pilot.press(*question, "enter")
    if wait:
        await until(pilot, lambda: not chat(pilot).answering, what="the answer")
        await pilot.pause()


def chat(pilot) -> ChatScreen:
    return pilot.app.chat


def items(pilot) -> list[SourceItem]:
    return list(chat(pilot).query(SourceItem))


def notices(pilot) -> list[str]:
    return [str(n.message) for n in pilot.app._notifications]


@pytest.fixture
def slow_server():
    """A long reply streamed one word at a time, after a little reasoning."""
    reply = " ".join(f"word{i}" for i in range(2000))
    with Upstream(reply, pieces=None, delay=0.05, reasoning="Reading the sources. ") as server:
        yield server


# asking -----------------------------------------------------------------------------------------------------
def test_answer_streams_with_its_sources_and_a_follow_up_continues(docs_kb, tiny_llm):
    app = _app(docs_kb, lambda: tiny_llm)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.model_ready, what="the model")
            assert "CPU" in chat(pilot).status.model and "tiny" in chat(pilot).status.model
            await ask(pilot)
            answer = chat(pilot).last_answer
            assert answer.text.strip() and not answer.stopped
            assert answer.reasoning.strip() and answer.reasoning_box.collapsed  # reasoning is there, folded away
            listed = items(pilot)
            assert listed and all(Path(i.source.hit.path).exists() for i in listed)
            cited = [i.source for i in listed if i.source.n is not None]
            assert [s.n for s in cited] == list(range(1, len(cited) + 1))  # numbered as the answer's markers
            assert answer.sources == cited
            assert "tok/s" in chat(pilot).status.speed and "first token" in chat(pilot).status.speed
            assert "documents" in chat(pilot).status.kb and "chunks" in chat(pilot).status.kb

            await pilot.press("ctrl+r")  # the reasoning expands on request
            assert not answer.reasoning_box.collapsed

            await ask(pilot, "and the legal hold?")
            assert len(chat(pilot).conversation.answers) == 2
            assert [t.question for t in app.session.turns] == [QUESTION, "and the legal hold?"]
            saved = ConversationStore(docs_kb.home).list()
            assert [c.id for c in saved] == [app.session.id]

    run(scenario)


def test_the_screen_opens_while_the_model_is_still_loading(docs_kb, tiny_llm):
    release = threading.Event()

    def slow_load():
        release.wait(30)
        return tiny_llm

    app = _app(docs_kb, slow_load)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            assert isinstance(app.focused, Input)
            assert "loading" in chat(pilot).status.model
            await pilot.press(*"typed early")
            assert app.focused.value == "typed early"
            release.set()
            await until(pilot, lambda: "CPU" in chat(pilot).status.model, what="the loaded model")

    run(scenario)


def test_the_answer_is_followed_until_the_user_scrolls_up_and_esc_stops_it(docs_kb, slow_server):
    app = _app(docs_kb, lambda: OpenAICompatLLM(slow_server.url))

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await ask(pilot, wait=False)
            view = chat(pilot).conversation
            await until(pilot, lambda: view.max_scroll_y > 5, what="an answer taller than the view")
            await pilot.pause(0.3)
            assert view.scroll_y == view.max_scroll_y  # following the stream
            view.scroll_home(animate=False)  # the user scrolls up to read: the view stays there
            grown = view.max_scroll_y
            await until(pilot, lambda: view.max_scroll_y > grown + 3, what="more words")
            assert view.scroll_y == 0
            view.scroll_end(animate=False)  # back at the bottom: following again
            grown = view.max_scroll_y
            await until(pilot, lambda: view.max_scroll_y > grown + 3, what="more words")
            await pilot.pause(0.3)
            assert view.scroll_y == view.max_scroll_y
            await pilot.press("escape")
            await until(pilot, lambda: not chat(pilot).answering, what="the stop")
            await pilot.pause()
            answer = chat(pilot).last_answer
            assert answer.stopped and "word3" in answer.text and "word1999" not in answer.text
            assert "stopped" in str(answer.query_one(".meta").render())
            assert app.session.turns[-1].cancelled

    run(scenario)


def test_typing_while_an_answer_streams_and_ctrl_c_asks_first(docs_kb, slow_server):
    app = _app(docs_kb, lambda: OpenAICompatLLM(slow_server.url))

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await ask(pilot, wait=False)
            await until(pilot, lambda: "word2" in chat(pilot).last_answer.text, what="streaming")
            await pilot.press(*"next one")
            box = app.query_one("#question", Input)
            assert box.value == "next one" and chat(pilot).answering
            await pilot.press("enter")  # refused while answering; the text stays
            assert box.value == "next one"
            assert any("still being written" in n for n in notices(pilot))

            await pilot.press("ctrl+c")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the quit question")
            await pilot.press("n")
            assert isinstance(app.screen, ChatScreen) and app.is_running and chat(pilot).answering
            await pilot.press("escape")
            await until(pilot, lambda: not chat(pilot).answering, what="the stop")

    run(scenario)


# sources ----------------------------------------------------------------------------------------------------
def test_selecting_a_source_shows_the_whole_passage_and_opens_it_in_the_editor(docs_kb, tmp_path, monkeypatch):
    log = tmp_path / "editor-args.json"
    editor = write(
        tmp_path / "editor.py",
        f"""
        import json, sys
        open({str(log)!r}, "w").write(json.dumps(sys.argv[1:]))
        """,
    )
    monkeypatch.setenv("EDITOR", f"{sys.executable} {editor}")
    monkeypatch.delenv("VISUAL", raising=False)
    app = _app(docs_kb)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await ask(pilot, "Who has to approve rotating a production API key?")
            listed = items(pilot)
            text_index = next(i for i, it in enumerate(listed) if it.source.hit.page is None)
            await pilot.press("tab")
            listing = chat(pilot).query_one(ListView)
            assert app.focused is listing
            listing.index = text_index
            await pilot.press("enter")
            assert isinstance(app.screen, SourceScreen)
            hit = app.screen.source.hit
            shown = str(app.screen.query_one("#source-text").render())
            assert all(line.strip() in shown for line in hit.text.splitlines())  # the whole passage, numbered
            assert f"{hit.line_start} " in shown
            await pilot.press("e")
            await until(pilot, log.exists, timeout=20, what="the editor")
            assert json.loads(log.read_text()) == [f"+{hit.line_start}", hit.path]
            await pilot.press("escape")
            assert isinstance(app.screen, ChatScreen)

    run(scenario)


def test_no_model_shows_the_best_passages_and_how_to_get_a_model(docs_kb, tmp_path, monkeypatch):
    log = tmp_path / "viewer-args.json"
    viewer = tmp_path / "bin" / "zathura"  # a viewer deepkb knows how to open at a page
    write(viewer, f"#!{sys.executable}\nimport json, sys\nopen({str(log)!r}, 'w').write(json.dumps(sys.argv[1:]))\n")
    viewer.chmod(0o755)
    monkeypatch.setenv("DEEPKB_PDF_VIEWER", str(viewer))
    app = _app(docs_kb)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            assert chat(pilot).status.model == "no model"
            await ask(pilot)
            answer = chat(pilot).last_answer
            assert "[1]" in answer.text and answer.sources
            assert "retrieval only" in str(answer.query_one(".meta").render())
            assert any("models pull" in n for n in notices(pilot))
            assert chat(pilot).sources.query_one("#sources-title").render().plain.startswith("Best passages")
            await pilot.press("tab", "1")  # digit n in the sources pane reads [n]
            assert isinstance(app.screen, SourceScreen) and app.screen.source.n == 1
            hit = app.screen.source.hit
            assert hit.path.endswith(".pdf") and hit.page
            await pilot.press("e")  # a PDF opens in the viewer at its page
            await until(pilot, log.exists, timeout=20, what="the PDF viewer")
            assert json.loads(log.read_text()) == [f"--page={hit.page}", hit.path]
            await pilot.press("escape")

            await pilot.resize_terminal(50, 16)  # a small terminal keeps the input and status line on screen
            await pilot.pause()
            for widget in ("#question", "#status"):
                region = app.query_one(widget).region
                assert region.height and region.bottom <= 16
            await pilot.resize_terminal(*SIZE)

    run(scenario)


# commands ---------------------------------------------------------------------------------------------------
def test_slash_commands(docs_kb, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = _app(docs_kb)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*"/k 2", "enter")
            assert app.options.k == 2
            await ask(pilot)
            assert len(items(pilot)) == 2

            await pilot.press(*"/think off", "enter")
            assert app.options.skip_reasoning and "think off" in str(chat(pilot).status.render())

            await pilot.press(*"/sources", "enter")
            assert not chat(pilot).sources.display
            await pilot.press("ctrl+b")
            assert chat(pilot).sources.display

            await pilot.press(*"/export", "enter")
            exported = list(tmp_path.glob("deepkb-chat-*.md"))
            assert len(exported) == 1 and QUESTION in exported[0].read_text()

            await pilot.press(*"/nonsense", "enter")
            assert any("unknown command /nonsense" in n for n in notices(pilot))
            assert app.query_one("#question", Input).value == ""  # the next command is not appended to it
            await pilot.press(*"/model", "enter")
            assert any("models pull" in n for n in notices(pilot))

            await pilot.press(*"/help", "enter")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help")
            await pilot.press("escape")

            first = app.session.id
            await pilot.press(*"/new", "enter")
            assert not chat(pilot).conversation.answers and app.session.id != first

            box = app.query_one("#question", Input)  # every line sent is in the input's history
            await pilot.press("up")
            assert box.value == "/new"
            await pilot.press("up")
            assert box.value == "/help"
            await pilot.press("down", "down")
            assert box.value == ""

    run(scenario)


def test_the_command_palette_runs_chat_commands(docs_kb):
    from textual.command import CommandPalette

    app = _app(docs_kb)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("ctrl+p")
            await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
            await pilot.press(*"toggle sources")
            await pilot.pause(0.5)
            await pilot.press("enter")
            await until(pilot, lambda: not chat(pilot).sources.display, what="the sources pane to hide")

    run(scenario)


def test_copy_falls_back_to_a_file_and_says_where(docs_kb, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPKB_CLIPBOARD", "file")
    monkeypatch.setenv("DEEPKB_CLIPBOARD_DIR", str(tmp_path / "clip"))
    app = _app(docs_kb)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await ask(pilot)
            await pilot.press("ctrl+y")
            copied = tmp_path / "clip" / "copied.txt"
            assert copied.read_text() == chat(pilot).last_answer.text
            assert any(str(copied) in n for n in notices(pilot))
            await pilot.press(*"/copy 1", "enter")
            assert copied.read_text() == chat(pilot).last_answer.source(1).citation
            assert copied.read_text().startswith("[1] ")

    run(scenario)


def test_history_resumes_renames_and_deletes(docs_kb):
    app = _app(docs_kb)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await ask(pilot)
            first = app.session.id
            await pilot.press("ctrl+n")
            await ask(pilot, "How much can I spend per night on a hotel in London?")
            second = app.session.id
            assert first and second and first != second

            await pilot.press("ctrl+o")
            assert isinstance(app.screen, HistoryScreen)
            options = app.screen.query_one("#history-list")
            ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
            assert set(ids) == {first, second}
            options.highlighted = ids.index(first)
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, ChatScreen) and app.session.id == first
            shown = [str(m.render()) for m in chat(pilot).query(".user")]
            assert shown == [QUESTION]
            assert chat(pilot).last_answer.sources  # the resumed answer's citations are live again

            await pilot.press("ctrl+o")
            options = app.screen.query_one("#history-list")
            options.highlighted = [options.get_option_at_index(i).id for i in range(options.option_count)].index(second)
            await pilot.press("r")
            await pilot.press(*"hotels", "enter")
            titles = {c.id: c.title for c in ConversationStore(docs_kb.home).list()}
            assert titles[second] == "hotels"
            await pilot.press("d", "y")
            assert [c.id for c in ConversationStore(docs_kb.home).list()] == [first]

    run(scenario)


def test_watch_keeps_the_knowledge_base_in_step(docs_kb, tmp_path):
    watched = tmp_path / "more"
    watched.mkdir()
    app = _app(docs_kb, watch=[str(watched)])

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "idle" in chat(pilot).status.watch, what="the catch-up")
            write(watched / "parking.md", "# Parking\n\nThe zeppelin hangar doubles as visitor parking on Fridays.\n")
            await until(pilot, lambda: "1 change" in chat(pilot).status.watch, what="the new file")
            assert app.watcher.kb is app.kb  # one knowledge base (one storage, one HNSW graph) per process
            await ask(pilot, "Where can visitors park a zeppelin on Fridays?")
            assert any(i.source.hit.path.endswith("parking.md") for i in items(pilot))

    run(scenario)


def test_chat_without_textual_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "textual" else real(name, *a))
    result = CliRunner().invoke(main, ["chat"])
    assert result.exit_code == 2 and "deepkb[tui]" in result.output


# a real terminal --------------------------------------------------------------------------------------------
def _tmux(*args: str, socket: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
def test_chat_in_a_real_terminal(docs_kb, kb_home, tmp_path):
    socket = f"deepkb-test-{os.getpid()}"
    env = {
        "PYTHONPATH": str(REPO),
        "DEEPKB_HOME": str(kb_home),
        "DEEPKB_MODELS": str(tmp_path / "no-models"),
        "DEEPKB_CACHE": os.environ["DEEPKB_CACHE"],
        "TERM": "xterm-256color",
    }
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    docs_parent = Path(docs_kb.status()["roots"][0]).parent  # paths then show as docs/...
    command = f"cd {docs_parent} && env -u COLUMNS -u LINES {exports} {sys.executable} -m deepkb chat"
    _tmux("new-session", "-d", "-s", "chat", "-x", "120", "-y", "36", command, socket=socket)

    def pane() -> str:
        return _tmux("capture-pane", "-p", "-t", "chat", socket=socket).stdout

    def wait_for(text: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in (screen := pane()):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the pane shows:\n{pane()}")

    try:
        wait_for("Ask your documents")
        wait_for("chunks")  # the status line once the knowledge base is searchable
        _tmux("send-keys", "-t", "chat", "-l", QUESTION, socket=socket)
        _tmux("send-keys", "-t", "chat", "Enter", socket=socket)
        screen = wait_for("Best passages")
        assert "docs/backup-retention-policy.pdf" in screen and "[1]" in screen
        _tmux("send-keys", "-t", "chat", "C-q", socket=socket)
        deadline = time.monotonic() + 20
        while _tmux("has-session", "-t", "chat", socket=socket).returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _tmux("has-session", "-t", "chat", socket=socket).returncode != 0, "ctrl+q did not quit"
    finally:
        _tmux("kill-server", socket=socket)
