"""Rerank: the first passages of a hybrid search ranked again by their best sentence window (the real MiniLM)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deepkb.errors import UsageError
from deepkb.kb import KnowledgeBase
from deepkb.retrieval.rerank import WINDOW_WORDS, rerank, windows
from deepkb.retrieval.search import Hit

from conftest import SAMPLE_DATA, write

# Two passages about sqlite. The first is about the database file in general, so as a whole it stands near any
# question about database files; the second is mostly about something else and answers the question in one sentence.
GENERAL = (
    "The database file holds every table, index and view in one file on disk. The file format is stable and "
    "documented. The file can be copied while no writer is active. A database file is portable between machines "
    "with different byte orders and word sizes."
)
BURIED = (
    "Triggers run a list of statements when a row is inserted, updated or deleted. A trigger may name the columns "
    "it watches. Temporary triggers live in the temp schema. The VACUUM command rebuilds the database file, "
    "repacking it into a minimal amount of disk space. Triggers cannot be created on virtual tables."
)
QUESTION = "how do I reclaim unused space in the database file?"


def _hit(chunk_id: int, text: str, score: float, heading: str | None = None) -> Hit:
    return Hit(chunk_id, f"/docs/{chunk_id}.txt", None, 1, 5, heading, score, text)


def test_windows_are_whole_sentences_of_about_the_window_size():
    text = " ".join(f"Sentence {n} has exactly six words." for n in range(20))
    parts = windows(text)
    assert " ".join(parts) == text  # nothing lost, nothing repeated
    assert all(p.endswith("words.") for p in parts)  # cut between sentences only
    assert all(len(p.split()) <= WINDOW_WORDS for p in parts)
    long = " ".join(f"w{n}" for n in range(100))  # one sentence four windows long: cut by words
    assert [len(p.split()) for p in windows(long)] == [25, 25, 25, 25]
    assert windows("") == [] and windows("one line") == ["one line"]


def test_a_passage_whose_one_sentence_answers_the_question_goes_before_one_about_the_topic(embedder):
    general, buried = _hit(1, GENERAL, 0.90), _hit(2, BURIED, 0.60)
    whole = embedder.embed([QUESTION, GENERAL, BURIED])
    assert whole[1] @ whole[0] > whole[2] @ whole[0]  # as wholes, the general passage is nearer the question
    rest = [_hit(n, f"Unrelated note number {n} about the garden.", 0.1) for n in range(3, 6)]
    ranked = rerank([general, buried, *rest], QUESTION, embedder, top=2)
    assert [h.chunk_id for h in ranked] == [2, 1, 3, 4, 5]  # only the first `top` move
    assert ranked[0].window_score > ranked[1].window_score and ranked[2].window_score is None
    assert ranked[0].score >= ranked[1].score >= ranked[2].score  # scores still fall down the list
    assert 0.6 <= ranked[1].score <= ranked[0].score <= 0.9  # within the range their fused scores spanned


def test_windows_are_embedded_once_per_embedder(embedder):
    hits = [_hit(1, GENERAL, 0.9, "sqlite > Files"), _hit(2, BURIED, 0.6, "sqlite > Triggers")]
    rerank(hits, QUESTION, embedder)
    before = embedder.texts_embedded
    again = rerank(hits, "how do triggers work?", embedder)
    assert embedder.texts_embedded == before + 1  # the new question only
    assert [h.chunk_id for h in again] == [2, 1]


@pytest.fixture(scope="module")
def sample_kb(tmp_path_factory, embedder):
    base = tmp_path_factory.mktemp("rerank")
    shutil.copytree(SAMPLE_DATA, base / "docs")
    write(base / "docs" / "sqlite-notes.txt", GENERAL + "\n\n" + "\n".join(["Unrelated filler line."] * 3) + "\n")
    with KnowledgeBase.open(base / "kb", embedder=embedder) as kb:
        kb.ingest([base / "docs"])
        yield kb


def test_the_rerank_setting_reranks_the_first_passages_of_a_hybrid_search(sample_kb, embedder, monkeypatch):
    question = "How long are backups kept?"
    assert sample_kb.settings.rerank == 0  # off by default
    fused = sample_kb.search(question, k=12)
    assert all(h.window_score is None for h in fused)
    monkeypatch.setenv("DEEPKB_RERANK", "10")
    with KnowledgeBase.open(sample_kb.home, embedder=embedder) as kb:
        ranked = kb.search(question, k=12)
        first = [h.chunk_id for h in kb.search(question, k=3)]
        assert all(h.window_score is None for h in kb.search(question, k=5, mode="dense"))
    assert all(h.window_score is not None for h in ranked[:10]) and ranked[10].window_score is None
    assert sorted(h.chunk_id for h in ranked[:10]) == sorted(h.chunk_id for h in fused[:10])  # the same ten, reordered
    assert [h.chunk_id for h in ranked[10:]] == [h.chunk_id for h in fused[10:]]
    assert [h.score for h in ranked] == sorted((h.score for h in ranked), reverse=True)
    assert first == [h.chunk_id for h in ranked[:3]]  # whatever k, the rerank covers the first ten
    for bad in ("-1", "101", "ten"):  # a hostile or mistyped value: one line naming the setting, nothing opened
        monkeypatch.setenv("DEEPKB_RERANK", bad)
        with pytest.raises(UsageError, match="rerank"):
            KnowledgeBase.open(sample_kb.home, embedder=embedder)
    assert Path(ranked[0].path).name == "backup-retention-policy.pdf"
