"""Follow-up or new topic, over real manuals (tests/data/manuals: git's rebase and clean pages, bash's set builtin,
Python's argparse, sqlite's CREATE INDEX, PostgreSQL's VACUUM, tar's man page): a question that stands on its own
retrieves like a fresh one, one that continues keeps the topic (with a word pointing back or without one), and the
result says which it was decided to be. bench/conversation.py measures the same on 80 pairs over more manuals."""

from __future__ import annotations

import gzip
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
    for name in ("python-argparse.rst.txt", "sqlite-lang_createindex.html", "pg-sql-vacuum.html", "tar.1.txt"):
        (docs / name).write_bytes(gzip.decompress((MANUALS / f"{name}.gz").read_bytes()))
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


CLEAN = "how do I remove untracked files from my git working tree"


@pytest.mark.parametrize(
    ("first", "second", "file"),
    [
        (CLEAN, "is there a dry run first?", "git-clean"),  # asked fresh: sqlite's CREATE INDEX page comes first
        ("how do I add a command-line flag with argparse", "how do I allow a flag to be given several times?",
         "python-argparse"),  # asked fresh: tar's man page
    ],
)  # fmt: skip
def test_a_continuation_without_a_cue_keeps_its_topic(manuals_kb, first, second, file):
    hits, decision = after(manuals_kb, first, second)
    assert decision["decision"] == "follow-up" and decision["cue"].startswith("answerable from the previous sources")
    assert decision["query"] == second and decision["previous_rank"] > 1  # one search, of the question alone
    assert decision["best_cosine"] < 0.45
    assert names(hits)[0].startswith(file)


def test_a_continuation_whose_closest_passage_is_in_the_previous_document_keeps_its_topic(manuals_kb):
    """Asked fresh, tar's man page comes first (its words match "exclude"), but the passage closest to the question is
    git-rebase's: the previous answer's document answers it best, so it continues the topic. On 3cb29e6 it was taken
    for a new topic (a confident best cosine, 0.6), tar first."""
    second = "how do I exclude some commits?"
    assert names(manuals_kb.search(second, k=6))[0] == "tar.1.txt"
    hits, decision = after(manuals_kb, REBASE, second)
    assert decision["decision"] == "follow-up" and decision["cue"].startswith("closest in the previous sources")
    assert decision["query"] == second and decision["best_cosine"] >= 0.45 and decision["previous_rank"] > 1
    assert decision["topic_cosine"] == decision["best_cosine"]
    assert names(hits[:3]) == ["git-rebase.txt"] * 3


@pytest.mark.parametrize(
    ("first", "second", "file", "old"),
    [
        (CLEAN, "how do I remove commits from my branch?", "git-rebase.txt", "git-clean"),  # cosine 0.61 to the first
        (REBASE, "what is pipefail?", "bash-set-builtin.html", "git-rebase"),  # one word of its own
    ],
)
def test_a_switch_to_a_nearby_topic_without_a_cue_does_not_keep_it(manuals_kb, first, second, file, old):
    hits, decision = after(manuals_kb, first, second)
    assert decision["decision"] == "new topic" and decision["query"] == second and decision["cue"] is None
    assert names(hits)[0] == file
    assert not [n for n in names(hits[:3]) if n.startswith(old)]
    assert hits == manuals_kb.search(second, k=6)


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
    measured = {"similarity": None, "previous_rank": None, "best_cosine": None, "topic_cosine": None}
    assert switch["retrieval"] | measured == {
        "decision": "new topic", "query": "what does set -e do", "similarity": None, "cue": None,
        "previous_rank": None, "best_cosine": None, "topic_cosine": None,
    }  # fmt: skip
    assert switch["retrieval"]["best_cosine"] >= 0.45
    assert switch["retrieval"]["topic_cosine"] is None  # no git-rebase passage among its 20 hits
    assert Path(switch["citations"][0]["path"]).name == "bash-set-builtin.html"
    verbose = runner.invoke(main, [*kb, "ask", "-c", "how do I turn it off again?", "-v"])
    assert verbose.exit_code == 0
    assert (
        "searched as follow-up (it)" in verbose.stderr and "what does set -e do how do I turn it off" in verbose.stderr
    )
