"""Follow-up or new topic, over real manuals (tests/data/manuals: git's rebase and clean pages, bash's set builtin):
a question that stands on its own retrieves like a fresh one, one that continues keeps the topic, and the result
says which it was decided to be. bench/conversation.py measures the same on 48 pairs over more manuals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepkb.cli import main
from deepkb.conversation.follow_up import cue, decide
from deepkb.conversation.session import ChatSession
from deepkb.kb import KnowledgeBase

MANUALS = Path(__file__).parent / "data" / "manuals"
REBASE = "how do I squash commits with interactive rebase"


@pytest.fixture(scope="module")
def manuals_kb(tmp_path_factory, embedder):
    docs = tmp_path_factory.mktemp("manuals")
    for name in ("git-rebase.txt", "bash-set-builtin.html", "git-clean.txt", "git-clean.html"):
        shutil.copy(MANUALS / name, docs / name)
    base = KnowledgeBase.open(tmp_path_factory.mktemp("kb"), embedder=embedder)
    base.ingest([docs])
    yield base
    base.close()


def names(hits) -> list[str]:
    return [Path(h.path).name for h in hits]


def after(kb: KnowledgeBase, first: str, second: str, k: int = 6):
    """The second question's hits in a conversation whose first question was answered (no model), as `ask -c`."""
    session = ChatSession(kb, None, save=False)
    session.ask(first)
    return session.retrieve(second, k), session.decision


def test_a_topic_switch_retrieves_like_a_fresh_question(manuals_kb):
    hits, decision = after(manuals_kb, REBASE, "what does set -e do")
    assert decision["decision"] == "new topic" and decision["query"] == "what does set -e do"
    assert names(hits)[0] == "bash-set-builtin.html"
    assert "git-rebase.txt" not in names(hits[:3])  # the old topic keeps no place at the top
    assert hits == manuals_kb.search("what does set -e do", k=6)


@pytest.mark.parametrize(
    ("first", "second", "file"),
    [
        (REBASE, "and how do I abort it if something goes wrong?", "git-rebase.txt"),
        (REBASE, "what if it conflicts?", "git-rebase.txt"),
        ("what does set -e do in a bash script", "how do I turn it off again?", "bash-set-builtin.html"),
        ("how do I remove untracked files from my git working tree", "what about ignored ones too?", "git-clean"),
    ],
)
def test_a_continuation_keeps_its_topic(manuals_kb, first, second, file):
    hits, decision = after(manuals_kb, first, second)
    assert decision["decision"] == "follow-up" and decision["query"].startswith(first)
    assert names(hits)[0].startswith(file)


def test_the_cue_reads_the_question_itself():
    leaning = [
        "and how do I get them back later?",
        "what if it conflicts?",
        "how do I capture its output?",
        "does that setting stay on?",
        "which one does VARCHAR get?",
        "How soon?",
        "what about --hard instead?",
    ]
    standing = ["what does set -e do", "how do I run a program from python and capture its output?",
                "how do I find the commit that introduced a bug", "how do I move a file in git and keep its history?",
                "extract an archive into another directory instead of the current one", "what is type affinity?"]  # fmt: skip
    assert [q for q in leaning if cue(q) is None] == []
    assert [q for q in standing if cue(q) is not None] == []


def test_similarity_to_the_conversation_makes_a_follow_up_without_a_cue(embedder):
    previous = ["how do I remove untracked files with git clean"]
    close = decide(previous, "can git clean remove untracked directories as well", embedder.embed)
    far = decide(previous, "how does sqlite store dates", embedder.embed)
    assert close.decision == "follow-up" and close.cue.startswith("similar") and close.similarity > far.similarity
    assert far.decision == "new topic" and far.query == "how does sqlite store dates"
    assert decide([], "anything").decision == "first"


def test_ask_json_and_verbose_say_what_was_decided(manuals_kb):
    kb = ["--kb", str(manuals_kb.home)]
    runner = CliRunner()
    first = json.loads(runner.invoke(main, [*kb, "ask", REBASE, "--json"]).stdout)
    assert first["retrieval"]["decision"] == "first"
    switch = json.loads(runner.invoke(main, [*kb, "ask", "-c", "what does set -e do", "--json"]).stdout)
    assert switch["retrieval"] == {
        "decision": "new topic", "query": "what does set -e do", "similarity": switch["retrieval"]["similarity"],
        "cue": None,
    }  # fmt: skip
    assert Path(switch["citations"][0]["path"]).name == "bash-set-builtin.html"
    verbose = runner.invoke(main, [*kb, "ask", "-c", "how do I turn it off again?", "-v"])
    assert verbose.exit_code == 0
    assert (
        "searched as follow-up (it)" in verbose.stderr and "what does set -e do how do I turn it off" in verbose.stderr
    )
