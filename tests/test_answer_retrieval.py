"""What an answer is built from, on data/: follow-up questions retrieved with their conversation, and abstention
that weighs both sides of hybrid retrieval (a name only keyword search finds is answered, off-topic is not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepkb.cli import main
from deepkb.conversation.session import ChatSession
from deepkb.kb import KnowledgeBase
from deepkb.retrieval.abstain import DEFAULT_MIN_RELEVANCE, best_dense_score, on_topic

from conftest import SAMPLE_DATA

# (first question, follow-up that leans on it, file, words of the passage that answers the follow-up)
FOLLOW_UPS = [
    ("How do I rotate an API key?", "Who has to approve it in production?", "security-policy.md", "two approvals"),
    ("How do I rotate an API key?", "What if it was leaked?", "security-policy.md", "Emergency rotations"),
    ("What does error NWR-4417 mean?", "What is the first response to it?", "incident-response-runbook.md",
     "Treat it as SEV2"),
    ("Which release added battery swap scheduling?", "Which firmware does it need?", "release-notes.txt", "PX-3.8"),
    ("How often do I have to change my password?", "How long must it be?", "security-policy.md", "14 characters"),
    ("What is the per diem for international trips?", "And on the first and last day?", "travel-expenses-policy.md",
     "75 percent of the daily"),
    ("What is a SEV1 incident?", "How soon must the first status page update go out for it?",
     "incident-response-runbook.md", "within 15 minutes of declaration"),
    ("What is the mileage rate for using my own car?", "Does commuting count?", "travel-expenses-policy.md",
     "Commuting between your home"),
    ("What does NWR-3309 mean?", "Should the customer reboot the robots?", "incident-response-runbook.md",
     "reboot does not fix"),
    ("What should I do with a damaged battery pack?", "And if it is smoking?", "office-lab-safety.html",
     "close the door"),
    ("Can I work alone in the Foundry after 18:00?", "What about at weekends?", "office-lab-safety.html",
     "two-person rule"),
    ("How much can I spend per night on a hotel in London?", "And in Berlin?", "travel-expenses-policy.md", "$220"),
    ("What is the grace period when rotating a key?", "Is it longer for partner keys?", "security-policy.md",
     "extended to 7 days"),
    ("When must expense claims be submitted?", "What if I lose the receipt?", "travel-expenses-policy.md",
     "missing-receipt declaration"),
    ("Who is the Lab Safety Officer?", "How do I contact her?", "office-lab-safety.html", "extension 4120"),
    ("What is safe park mode?", "How long do robots keep working when the vault is unreachable?",
     "incident-response-runbook.md", "cached credentials for 15 minutes"),
    ("When is the lab safety induction held?", "How long does it take?", "onboarding-guide.md", "takes two hours"),
    ("What does my onboarding buddy do?", "How much time do they get for it?", "onboarding-guide.md", "two hours per week"),
    ("How do I declare an incident?", "What does the bot do then?", "incident-response-runbook.md", "The bot asks for a title"),
    ("What does the Incident Commander do?", "Can they debug?", "incident-response-runbook.md", "does not debug"),
    ("Which release shortened the operator tablet session tokens?", "When was it released?", "release-notes.txt", "2 July 2024"),
    ("What happens when a robot enters safe park mode?", "How is it released again?", "incident-response-runbook.md", "until released by the Fleet Controller"),
    ("How many hardware security keys do employees get?", "What if I lose one?", "security-policy.md", "lost security keys"),
    ("Where do I report a near miss?", "How soon?", "office-lab-safety.html", "within 24 hours"),
    ("Who approves a trip above $7,500?", "What about international trips?", "travel-expenses-policy.md", "every international trip"),
    ("How long are backups kept?", "Where are the copies stored?", "backup-retention-policy.pdf", "region"),
    ("What is the two-person rule in the Foundry?", "When does it apply?", "office-lab-safety.html", "After 18:00"),
    ("What is NWR-2051?", "What should I ask the site operator?", "incident-response-runbook.md", "Ask the site operator"),
]  # fmt: skip

# Answered although the dense side alone would abstain: names and codes that keyword search matches.
KEYWORD_ONLY = [
    ("Who is Jonah Pike?", "incident-response-runbook.md"),
    ("Who is Owen Castellanos?", "rotate_keys.py"),
    ("What is BP-48L?", "release-notes.txt"),
    ("Who is Ana Kowalczyk?", "release-notes.txt"),
]
# The off-topic calibration set: nothing in data/ is about these.
OFF_TOPIC = [
    "What is the capital of France?",
    "How do I bake sourdough bread?",
    "What is the speed of light in a vacuum?",
    "Who won the 1998 football world cup?",
    "What is the boiling point of water at sea level?",
    "How many moons does Jupiter have?",
    "What is a good recipe for lasagna?",
    "Who wrote Pride and Prejudice?",
    "Who is the president of the United States?",
    "How does photosynthesis work?",
]
# data/README.md's sample questions: answered.
IN_DOMAIN = [
    "What does the retention policy say about backups?",
    "How often do I have to change my password?",
    "Who has to approve rotating a production API key?",
    "What happens to backups when a legal hold is in place?",
    "How soon must the first status page update go out during a SEV1?",
    "How much can I spend per night on a hotel in London?",
    "Where do we gather when the fire alarm sounds?",
    "Which release added battery swap scheduling, and when?",
]


@pytest.fixture(scope="module")
def data_kb(tmp_path_factory, embedder):
    base = KnowledgeBase.open(tmp_path_factory.mktemp("data-kb"), embedder=embedder)
    base.ingest([SAMPLE_DATA])
    yield base
    base.close()


def _rank(hits, file: str, words: str) -> int | None:
    """1-based rank of the first passage of `file` that holds `words`."""
    return next((n for n, h in enumerate(hits, 1) if Path(h.path).name == file and words in h.text), None)


def follow_up_figures(kb: KnowledgeBase, k: int = 10) -> dict[str, dict[str, float]]:
    """hit@1, hit@5 and MRR@k of the passage that answers each follow-up: searched bare, as ChatSession does after the
    first question alone (a history without citations), and after the first question answered (no model: its best
    passages are its citations, so the previous answer's documents take part, as in `deepkb ask -c`)."""
    ranks: dict[str, list[int | None]] = {"bare": [], "conversation": [], "answered": []}
    for first, follow_up, file, words in FOLLOW_UPS:
        ranks["bare"].append(_rank(kb.search(follow_up, k=k), file, words))
        session = ChatSession(kb, None, history=[(first, "")], save=False)
        ranks["conversation"].append(_rank(session.retrieve(follow_up, k), file, words))
        answered = ChatSession(kb, None, save=False)
        answered.ask(first)
        ranks["answered"].append(_rank(answered.retrieve(follow_up, k), file, words))
    return {
        name: {
            "hit@1": sum(r == 1 for r in found),
            "hit@5": sum(r is not None and r <= 5 for r in found),
            "mrr": round(sum(1 / r for r in found if r) / len(found), 3),
        }
        for name, found in ranks.items()
    }


def test_follow_ups_retrieve_with_their_conversation(data_kb):
    figures = follow_up_figures(data_kb)
    print(f"follow-ups ({len(FOLLOW_UPS)}): {figures}")
    bare, aware = figures["bare"], figures["conversation"]
    assert aware["hit@5"] >= bare["hit@5"] + 2 and aware["hit@1"] >= bare["hit@1"] + 6
    assert aware["mrr"] > bare["mrr"] + 0.1
    # The previous answer's documents help, never hurt: 23 first and 26 in the top 5 of 28 (22 and 26 without them).
    # Ordering a follow-up's passages by how often the previous answer cited their document (the most cited first)
    # scored 19 and 24 here, and was reverted.
    answered = figures["answered"]
    assert answered["hit@1"] >= aware["hit@1"] and answered["hit@5"] >= aware["hit@5"]


def test_a_first_question_retrieves_as_plain_search(data_kb):
    session = ChatSession(data_kb, None, save=False)
    question = "How often do I have to change my password?"
    assert session.retrieve(question, 5) == data_kb.search(question, k=5)


@pytest.mark.parametrize(("question", "file"), KEYWORD_ONLY)
def test_a_name_only_keyword_search_finds_is_answered(data_kb, question, file):
    hits = data_kb.search(question, k=6)
    assert best_dense_score(hits) < DEFAULT_MIN_RELEVANCE  # the dense side alone would abstain
    assert on_topic(question, hits) and file in {Path(h.path).name for h in hits[:3]}


def test_off_topic_questions_still_abstain(data_kb):
    answered = [q for q in OFF_TOPIC if on_topic(q, data_kb.search(q, k=6))]
    assert answered == []


def test_in_domain_questions_are_answered(data_kb):
    abstained = [q for q in IN_DOMAIN if not on_topic(q, data_kb.search(q, k=6))]
    assert abstained == []


def test_cli_answers_who_is_jonah_pike(data_kb):
    kb = ["--kb", str(data_kb.home)]
    runner = CliRunner()
    result = runner.invoke(main, [*kb, "ask", "Who is Jonah Pike?", "--json"])
    data = json.loads(result.stdout)
    assert data["abstained"] is False and data["citations"][0]["path"].endswith("incident-response-runbook.md")
    off = json.loads(runner.invoke(main, [*kb, "ask", "What is the capital of France?", "--json"]).stdout)
    assert off["abstained"] is True
