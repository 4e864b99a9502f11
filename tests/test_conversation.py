"""The conversation core: typed events, cancel, one model shared by two threads, history, saving and resuming."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from deepkb.answer.prompt import NOT_IN_DOCUMENTS, SYSTEM_PROMPT, build_prompt
from deepkb.answer.stream import CANCELLED, GET_A_MODEL, AskOptions
from deepkb.cli import main
from deepkb.conversation.session import (
    ChatSession,
    ConversationStore,
    Delta,
    Done,
    Notice,
    Retrieved,
    decide,
)
from deepkb.llm import LlamaCppLLM, Usage
from deepkb.retrieval.search import Hit

from conftest import write
from tiny_gguf import ANSWER, THINKING


@pytest.fixture(scope="module")
def llm(tiny_model):
    return LlamaCppLLM(tiny_model, context_size=1024, gpu_layers=0)


@pytest.fixture
def docs_kb(kb, tmp_path):
    docs = tmp_path / "docs"
    write(docs / "backup.md", "# Backups\n\nBackups are kept for thirty days in the offsite vault.\n")
    write(docs / "keys.md", "# Keys\n\nEncryption keys are rotated every year by the security team.\n")
    kb.ingest([docs])
    return kb


def _kinds(events) -> list[str]:
    return [type(e).__name__ if not isinstance(e, Delta) else f"Delta:{e.kind}" for e in events]


def test_events_come_in_order_and_end_with_one_done(docs_kb, llm):
    session = ChatSession(docs_kb, llm, options=AskOptions(k=2))
    events = []
    for event in session.send("How long are backups kept?"):
        events.append(event)
        if isinstance(event, Done):
            assert not llm.lock.locked()  # released before the Done: a shell may stop reading there
        elif isinstance(event, Delta):
            assert llm.lock.locked()  # held while the model writes
    kinds = _kinds(events)
    assert kinds[0] == "Retrieved" and kinds[-1] == "Done" and kinds.count("Done") == 1
    assert events[0].hits and events[0].hits[0].path.endswith("backup.md")  # sources before any token
    first_answer = kinds.index("Delta:answer")
    assert "Delta:reasoning" in kinds[:first_answer] and "Delta:reasoning" not in kinds[first_answer:]
    result = events[-1].result
    assert "".join(e.text for e in events if isinstance(e, Delta) and e.kind == "answer").strip() == ANSWER
    assert "".join(e.text for e in events if isinstance(e, Delta) and e.kind == "reasoning").strip() == THINKING
    assert result.answer == ANSWER and result.citations[0].hit.path.endswith("backup.md")
    assert not result.cancelled and result.timings.prompt_tokens > 50 and result.timings.completion_tokens > 5
    assert result.conversation_id == session.id and result.turn == 1


def test_no_model_and_abstention_end_with_done_too(docs_kb):
    no_model = list(ChatSession(docs_kb, None, save=False).send("How long are backups kept?"))
    assert _kinds(no_model) == ["Retrieved", "Notice", "Done"]
    assert no_model[1].text == GET_A_MODEL and no_model[-1].result.fallback
    abstained = list(ChatSession(docs_kb, None, options=AskOptions(min_relevance=0.99), save=False).send("Hi?"))
    assert _kinds(abstained) == ["Retrieved", "Delta:answer", "Done"]
    assert abstained[-1].result.abstained and abstained[1].text == NOT_IN_DOCUMENTS


def test_cancel_from_another_thread_keeps_the_partial_answer(docs_kb, llm):
    session = ChatSession(docs_kb, llm, options=AskOptions(k=2))
    first_answer, go_on = threading.Event(), threading.Event()
    events: list = []

    def consume() -> None:
        for event in session.send("How long are backups kept?"):
            events.append(event)
            if isinstance(event, Delta) and event.kind == "answer" and not first_answer.is_set():
                first_answer.set()
                go_on.wait(30)  # the generator is paused here until the other thread has cancelled

    worker = threading.Thread(target=consume)
    worker.start()
    assert first_answer.wait(60)
    session.cancel()  # from this thread, while the answer is being written
    go_on.set()
    worker.join(60)
    result = events[-1].result
    assert isinstance(events[-1], Done) and result.cancelled
    assert result.answer and ANSWER.startswith(result.answer) and result.answer != ANSWER  # cut within a token
    assert any(isinstance(e, Notice) and e.text == CANCELLED for e in events)
    assert result.to_json()["cancelled"] is True
    # the model is fine afterwards, and the cancelled turn is saved as such
    nxt = session.ask("Who rotates the keys?")
    assert nxt.answer == ANSWER and not nxt.cancelled
    saved = ConversationStore(docs_kb.home).get(session.id)
    assert [t.cancelled for t in saved.turns] == [True, False]


def test_cancel_while_another_answer_holds_the_model(docs_kb, llm):
    session = ChatSession(docs_kb, llm, options=AskOptions(k=2), save=False)
    with llm.lock:  # another conversation is generating
        events = session.send("How long are backups kept?")
        assert isinstance(next(events), Retrieved)
        threading.Timer(0.2, session.cancel).start()
        rest = list(events)  # waits for the model until the cancel, then gives up
    assert _kinds(rest) == ["Notice", "Done"] and rest[-1].result.cancelled and rest[-1].result.answer == ""
    assert rest[-1].result.also_retrieved  # the passages are still listed


def test_two_threads_share_one_model(docs_kb, llm):
    results: dict[int, object] = {}
    start = threading.Barrier(2)

    def run(i: int) -> None:
        session = ChatSession(docs_kb, llm, options=AskOptions(k=2), save=False)
        start.wait()
        results[i] = session.ask(["How long are backups kept?", "Who rotates the keys?"][i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [results[i].answer for i in range(2)] == [ANSWER, ANSWER]  # one KV cache, one generation at a time
    assert not llm.lock.locked()


def test_history_goes_into_the_prompt_and_the_oldest_turn_goes_first(llm):
    hit = Hit(1, "/docs/b.md", None, 1, 3, None, 1.0, "Backups are kept for thirty days. " * 20, 0.6)
    history = [(f"Question {i} about backups?", f"Answer {i} [1]. " + "word " * 60) for i in range(8)]
    prompt = build_prompt("And offsite?", [hit], llm, 512, history=history)
    assert prompt.sources == [hit] and prompt.prompt_tokens + 512 <= llm.context_size
    assert 0 < prompt.history_turns < len(history)  # the newest that fit, oldest dropped
    kept = history[-prompt.history_turns :]
    assert [m["content"] for m in prompt.messages[1:-1:2]] == [q for q, _ in kept]
    assert "[1]" not in "".join(m["content"] for m in prompt.messages[2:-1:2])  # old markers are not citable
    assert prompt.messages[-1]["content"].startswith("Sources:") and "thirty days" in prompt.messages[-1]["content"]
    capped = build_prompt("And offsite?", [hit], llm, 512, history=history, history_tokens=120)
    assert 0 < capped.history_turns < prompt.history_turns  # a CPU keeps the history it prefills short


def test_a_follow_up_reuses_the_kv_state_of_the_conversation_so_far(docs_kb, llm):
    session = ChatSession(docs_kb, llm, options=AskOptions(k=1, source_tokens=60, history_tokens=400), save=False)
    session.ask("How long are backups kept?")
    session.ask("And where?")
    third = session.ask("Who rotates the keys?")
    # the last prompt and this one start alike: the system prompt, the first question and its answer
    first_turn = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "How long are backups kept?"},
    ]
    shared = llm.count_messages(first_turn) - 2 + llm.count_tokens(ANSWER)  # less the template's "<think>\n"
    assert third.timings.cached_prompt_tokens >= shared
    assert third.timings.cached_prompt_tokens < third.timings.prompt_tokens


def test_a_follow_up_of_a_follow_up_is_joined_back_to_its_topic():
    """ "how do I get it back?" after "and list stashes?" searches with the question that started the topic too."""
    decision = decide(["How do I sort a list?", "How do I stash work?", "and list stashes?"], "how do I get it back?")
    assert decision.decision == "follow-up" and decision.cue == "it"
    assert decision.query == "How do I stash work? and list stashes? how do I get it back?"
    fresh = decide(["How do I stash work?", "and list stashes?"], "What does VACUUM do in sqlite?")
    assert fresh.decision == "new topic" and fresh.query == "What does VACUUM do in sqlite?"


def test_usage_is_per_answer_not_per_model(llm):
    first, second = Usage(), Usage()
    list(llm.stream_chat([{"role": "user", "content": "Backups?"}], max_tokens=64, usage=first))
    list(llm.stream_chat([{"role": "user", "content": "Keys?"}], max_tokens=4, usage=second))
    assert first.completion_tokens > second.completion_tokens == 4


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_conversations_are_saved_resumed_listed_shown_and_deleted(tmp_path, embedder):
    docs = tmp_path / "docs"
    write(docs / "security-policy.md", "# Passwords\n\nChange your password every ninety days.\n\n"
          "# Length\n\nPasswords must be at least 14 characters long.\n")  # fmt: skip
    write(docs / "travel.md", "# Travel\n\nTravel expenses are reimbursed with the next payroll.\n")
    kb = ["--kb", str(tmp_path / "kb")]
    runner = CliRunner()
    assert runner.invoke(main, [*kb, "ingest", str(docs)]).exit_code == 0
    first = _json(runner.invoke(main, [*kb, "ask", "How often do I have to change my password?", "--json"]))
    assert first["fallback"] and first["turn"] == 1 and first["conversation_id"]
    cid = first["conversation_id"]
    second = _json(runner.invoke(main, [*kb, "ask", "-c", "how long must it be?", "--json"]))
    assert second["conversation_id"] == cid and second["turn"] == 2
    other = _json(runner.invoke(main, [*kb, "ask", "How are travel expenses reimbursed?", "--json"]))
    assert other["conversation_id"] != cid
    third = _json(runner.invoke(main, [*kb, "ask", "--chat", cid[:6], "and how often?", "--json"]))
    assert third["conversation_id"] == cid and third["turn"] == 3

    listed = _json(runner.invoke(main, [*kb, "chats", "--json"]))
    assert [c["id"] for c in listed] == [cid, other["conversation_id"]]  # the most recently continued first
    assert listed[0]["title"] == "How often do I have to change my password?" and listed[0]["turns"] == 3
    plain = runner.invoke(main, [*kb, "chats"])
    assert cid[:8] in plain.output and "3 turns" in plain.output

    shown = _json(runner.invoke(main, [*kb, "chats", "show", cid, "--json"]))
    assert [t["question"] for t in shown["turns"]] == [
        "How often do I have to change my password?",
        "how long must it be?",
        "and how often?",
    ]
    cited = shown["turns"][0]["citations"][0]
    assert {"chunk_id", "path", "page", "line_start", "line_end", "text"} <= set(cited)

    # the cited document changes and is re-ingested: the saved answer still shows what it cited then
    path = cited["path"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("Entirely new text.\n")
    assert runner.invoke(main, [*kb, "ingest", str(docs)]).exit_code == 0
    again = _json(runner.invoke(main, [*kb, "chats", "show", cid, "--json"]))
    assert again["turns"][0]["citations"][0] == cited
    text = runner.invoke(main, [*kb, "chats", "show", cid])
    assert text.exit_code == 0 and "1. How often do I have to change my password?" in text.output
    assert "[bold]" not in text.output and "security-policy.md" in text.output

    gone = runner.invoke(main, [*kb, "chats", "rm", cid[:8]])
    assert gone.exit_code == 0 and cid in gone.output
    assert [c["id"] for c in _json(runner.invoke(main, [*kb, "chats", "--json"]))] == [other["conversation_id"]]
    missing = runner.invoke(main, [*kb, "chats", "show", cid])
    assert missing.exit_code == 2 and "no conversation" in missing.output and "Traceback" not in missing.output


def test_a_resumed_session_carries_its_history(docs_kb):
    session = ChatSession(docs_kb, None)
    session.ask("How long are backups kept?")
    resumed = ChatSession(docs_kb, None, conversation_id=session.id[:5])
    assert resumed.previous_questions() == ["How long are backups kept?"]
    assert resumed.history() == []  # passages are not a model's answer: nothing to carry into the prompt
    given = ChatSession(docs_kb, None, history=[("Q?", "A."), ("R?", "")], save=False)
    assert given.history() == [("Q?", "A.")] and given.previous_questions() == ["Q?", "R?"]


def test_a_conversation_that_cannot_be_saved_still_answers(docs_kb):
    (docs_kb.home / "conversations.sqlite").mkdir()  # not a database: every save fails
    events = list(ChatSession(docs_kb, None).send("How long are backups kept?"))
    assert isinstance(events[-1], Done) and events[-1].result.fallback and events[-1].result.conversation_id is None
    assert any(isinstance(e, Notice) and "could not be saved" in e.text for e in events)
