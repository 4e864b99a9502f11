"""How `deepkb ask` ends as a user and a script see it: Ctrl-C (exit 130, the answer kept), an answer cut at
--max-tokens (said so), the model's load time, and a question longer than the model was trained for."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from deepkb.answer.stream import AskOptions, ask
from deepkb.cli import main
from deepkb.conversation.session import ConversationStore
from deepkb.llm import LlamaCppLLM
from deepkb.retrieval.search import Hit

from conftest import write
from server_harness import Upstream

QUESTION = "How long are backups kept?"


def _words(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


@pytest.fixture
def backups_kb(kb, tmp_path):
    write(tmp_path / "docs" / "backups.md", "# Backups\n\nBackups are kept for thirty days in the offsite vault.\n")
    kb.ingest([tmp_path / "docs"])
    return kb


def test_ctrl_c_stops_the_answer_keeps_it_and_exits_130(backups_kb, tmp_path):
    with Upstream(_words(2000), pieces=None, delay=0.05, finish_reason="stop") as server:
        env = {**os.environ, "NO_COLOR": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "deepkb", "--kb", str(backups_kb.home), "ask", QUESTION, "--llm-url", server.url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, bufsize=1,
        )  # fmt: skip
        seen = ""
        deadline = time.monotonic() + 120
        while "word5 " not in seen:
            assert time.monotonic() < deadline, "the answer never started streaming"
            seen += process.stdout.read(1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "word5" in seen + out and "word1999" not in out
    assert "Traceback" not in err
    saved = ConversationStore(backups_kb.home)
    assert saved.last_id(), (err, sorted(p.name for p in backups_kb.home.iterdir()))
    turn = saved.get(saved.last_id()).turns[-1]
    assert turn.cancelled and "word5" in turn.answer


def test_an_answer_cut_at_max_tokens_says_so(backups_kb):
    with Upstream(_words(8), pieces=None, finish_reason="length") as server:
        runner = CliRunner()
        args = ["--kb", str(backups_kb.home), "ask", QUESTION, "--llm-url", server.url, "--max-tokens", "8"]
        data = json.loads(runner.invoke(main, [*args, "--json"]).stdout)
        shown = runner.invoke(main, args)
    assert data["truncated"] is True and "cut at 8 tokens" in data["notice"]
    assert "word7" in data["answer"] and "cut" not in data["answer"]  # said beside the answer, not in it
    assert shown.exit_code == 0 and "cut at 8 tokens" in shown.output


def test_an_answer_the_model_ended_is_not_called_cut(backups_kb):
    with Upstream(_words(3), pieces=None, finish_reason="stop") as server:
        args = ["--kb", str(backups_kb.home), "ask", QUESTION, "--llm-url", server.url, "--json"]
        data = json.loads(CliRunner().invoke(main, args).stdout)
    assert data["truncated"] is False and data["notice"] is None


def test_model_load_time_is_the_load_not_the_wait(backups_kb, tiny_model):
    args = ["--kb", str(backups_kb.home), "ask", QUESTION, "--json", "--model", str(tiny_model), "--max-tokens", "8"]
    result = CliRunner().invoke(main, args)
    timings = json.loads(result.stdout)["timings"]
    assert timings["load_ms"] > 5  # llama.cpp really read the GGUF (a wait can be 0.0 ms when retrieval was slower)
    assert timings["model_wait_ms"] is not None and timings["model_wait_ms"] <= timings["load_ms"] + 1


def test_a_question_longer_than_the_model_was_trained_for_is_not_told_to_raise_ctx(tiny_model):
    llm = LlamaCppLLM(tiny_model, context_size=4096, gpu_layers=0)  # the tiny model's trained context
    hits = [Hit(1, "/docs/b.md", None, 1, 3, None, 1.0, "Backups are kept for thirty days.", 0.6)]
    long_question = "Why are backups kept " + "and why " * 3000 + "?"
    result = ask(long_question, lambda q, k: hits, llm, AskOptions(k=1), relevance=lambda *a: True)
    assert result.fallback and "trained on 4,096 tokens" in result.notice
    assert "raise --ctx" not in result.notice
    smaller = LlamaCppLLM(tiny_model, context_size=1024, gpu_layers=0)
    result = ask(long_question, lambda q, k: hits, smaller, AskOptions(k=1), relevance=lambda *a: True)
    assert "raise --ctx (up to 4,096" in result.notice
