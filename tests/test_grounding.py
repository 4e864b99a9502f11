"""Grounding: every answer sentence is checked against the passage it cites, and the unsupported ones are shown.

The answers come from a stand-in OpenAI-compatible server (tests/server_harness.Upstream, outside deepkb) that
streams a fixed reply: one sentence the cited passage says and one it does not, both citing it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepkb.answer.grounding import check_answer, mark_unsupported, split_answer
from deepkb.cli import main
from deepkb.retrieval.search import Hit

from conftest import write
from server_harness import Upstream, running

REPO = Path(__file__).resolve().parent.parent
QUESTION = "How long are backups kept?"
PASSAGE = (
    "# Backup retention\n\nBackups are kept for thirty days and copied off site every week.\n"
    "Restores older than thirty days are not possible.\n"
)
SUPPORTED = "Backups are kept for thirty days [1]."
INVENTED = "Old backups are shredded by the security team in Frankfurt every quarter [1]."
REPLY = f"{SUPPORTED} {INVENTED}"


def _hit(text: str = PASSAGE) -> Hit:
    return Hit(1, "/docs/backups.md", None, 1, 4, "Backup retention", 0.0, text)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    write(folder / "backups.md", PASSAGE)
    return folder


def test_sentences_keep_their_markers_lists_and_code_blocks_are_units():
    answer = (
        "Use rsync [1]. It keeps the times, e.g. with -a [1][2].\n\nSteps:\n- Run the backup [2].\n"
        "- Check the log.\n\n```\nrsync -a src/ dst/\n```\n## Notes\nDone."
    )
    claims = split_answer(answer)
    assert [c.text for c in claims] == [
        "Use rsync [1].", "It keeps the times, e.g. with -a [1][2].", "Steps:", "Run the backup [2].",
        "Check the log.", "rsync -a src/ dst/", "Done.",
    ]  # fmt: skip
    assert [c.citations for c in claims[:5]] == [[1], [1, 2], [], [2], []]
    assert claims[5].code and not claims[0].code


@pytest.mark.parametrize(
    ("sentence", "reason"),
    [
        ("Backups are kept for 90 days [1].", "number"),
        ("Restores older than thirty days are possible [1].", "opposite"),
        ("Backups are copied off site every week with the `--offsite-vault` flag [1].", "quote"),
        (INVENTED, "does not say"),
    ],
)
def test_a_changed_or_invented_sentence_is_unsupported_and_a_restatement_is_not(embedder, sentence, reason):
    support = check_answer(f"{SUPPORTED} {sentence}", [_hit()], embedder.embed)
    assert [s.supported for s in support] == [True, False]
    assert reason in support[1].reason and support[1].citations == [1]
    assert support[0].score > support[1].score


def test_a_sentence_without_a_marker_is_checked_against_every_given_passage(embedder):
    other = _hit("Signing keys rotate every year.")
    support = check_answer("Signing keys rotate every year.", [_hit(), other], embedder.embed)
    assert support[0].supported and support[0].citations == []
    cited_wrong = check_answer("Signing keys rotate every year [1].", [_hit(), other], embedder.embed)
    assert not cited_wrong[0].supported


def test_marks_go_after_the_unsupported_sentences_only(embedder):
    support = check_answer(REPLY, [_hit()], embedder.embed)
    assert mark_unsupported(REPLY, support) == f"{SUPPORTED} {INVENTED} ⚠"


def test_ask_json_flags_the_invented_sentence_as_a_subprocess(tmp_path, docs):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    kb = ["--kb", str(tmp_path / "kb")]
    cli = [sys.executable, "-m", "deepkb", *kb]
    ingested = subprocess.run([*cli, "ingest", str(docs)], env=env, capture_output=True, text=True, timeout=300)
    assert ingested.returncode == 0, ingested.stderr
    with Upstream(reply=REPLY) as up:
        done = subprocess.run(
            [*cli, "ask", QUESTION, "--json", "--llm-url", up.url], env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["answer"] == REPLY
    assert [(s["sentence"], s["citations"], s["supported"]) for s in data["support"]] == [
        (SUPPORTED, [1], True),
        (INVENTED, [1], False),
    ]
    assert all(isinstance(s["score"], float) for s in data["support"])
    assert data["timings"]["grounding_ms"] is not None


def test_plain_ask_marks_the_unsupported_sentence_with_a_count(tmp_path, docs, embedder):
    runner = CliRunner()
    kb = ["--kb", str(tmp_path / "kb")]
    assert runner.invoke(main, [*kb, "ingest", str(docs)]).exit_code == 0
    with Upstream(reply=REPLY) as up:
        done = runner.invoke(main, [*kb, "ask", QUESTION, "--llm-url", up.url])
    assert done.exit_code == 0, done.output
    assert "⚠ 1 of 2 sentences not supported by the cited passages:" in done.stdout
    flagged = [line for line in done.stdout.splitlines() if line.startswith("  ⚠ ")]
    assert len(flagged) == 1 and "shredded" in flagged[0] and "kept for thirty days" not in flagged[0]


def test_the_server_carries_support_in_the_response_the_final_chunk_and_the_footer(kb_home, kb, docs, embedder):
    from deepkb.server.settings import ServerSettings

    kb.ingest([docs])
    request = {"model": "deepkb", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 64}
    with Upstream(reply=REPLY) as up:
        settings = ServerSettings(
            port=0, kb=kb_home, llm_url=up.url, model="upstream-model", cache_size=0, sources_footer=True
        )
        with running(settings, embedder) as srv:
            whole = srv.http.post("/v1/chat/completions", json=request).json()
            lines = []
            with srv.http.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as stream:
                lines = [ln[6:] for ln in stream.iter_lines() if ln.startswith("data: ") and ln != "data: [DONE]"]
    support = whole["deepkb"]["support"]
    assert [(s["sentence"], s["supported"]) for s in support] == [(SUPPORTED, True), (INVENTED, False)]
    assert whole["deepkb"]["unsupported"] == 1
    content = whole["choices"][0]["message"]["content"]
    assert content.endswith("⚠ 1 of 2 sentences not supported by the cited passages")
    chunks = [json.loads(x) for x in lines]
    final = [c for c in chunks if "deepkb" in c]
    assert final and [s["supported"] for s in final[-1]["deepkb"]["support"]] == [True, False]
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert "⚠ 1 of 2 sentences" in streamed


def test_saved_turns_keep_their_support(kb, docs, embedder):
    from deepkb.conversation.session import ChatSession
    from deepkb.llm.remote import OpenAICompatLLM

    kb.ingest([docs])
    with Upstream(reply=REPLY) as up:
        session = ChatSession(kb, OpenAICompatLLM(up.url))
        result = session.ask(QUESTION)
    saved = session.store.get(session.id).turns[0]
    assert [s["supported"] for s in saved.support] == [s.supported for s in result.support] == [True, False]


def test_chat_marks_the_unsupported_sentence_beside_the_answer(kb, docs):
    pytest.importorskip("textual", reason="the chat needs the [tui] extra (textual)")
    import asyncio
    import time

    from deepkb.llm.remote import OpenAICompatLLM
    from deepkb.tui.app import ChatApp, ChatConfig

    kb.ingest([docs])

    async def scenario(app: ChatApp) -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press(*QUESTION, "enter")
            deadline = time.monotonic() + 120
            while not app.chat.last_answer or app.chat.answering or not app.chat.last_answer.sources:
                assert time.monotonic() < deadline, "no answer"
                await pilot.pause(0.05)
            await pilot.pause()
            answer = app.chat.last_answer
            assert answer.text == f"{SUPPORTED} {INVENTED} ⚠"
            assert "⚠ 1 of 2 sentences not supported" in str(answer.query_one(".meta").render())

    with Upstream(reply=REPLY) as up:
        asyncio.run(scenario(ChatApp(ChatConfig(kb, lambda: OpenAICompatLLM(up.url), model_label="stand-in"))))


def test_a_footer_with_the_unsupported_count_is_stripped_from_history():
    from deepkb.server.sources import footer, strip_footer

    cited = [{"n": 1, "path": "/docs/backups.md", "page": None, "line_start": 1, "line_end": 4}]
    for tail in (footer(cited, 1, 2), footer([], 1, 2)):
        assert "⚠ 1 of 2 sentences not supported" in tail
        assert strip_footer(REPLY + tail) == REPLY
    assert "⚠" not in footer(cited, 0, 2)
