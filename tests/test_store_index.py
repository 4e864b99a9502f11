"""Store and vector index: SQLite is the truth; the HNSW file is a cache that is repaired or rebuilt from it."""

from __future__ import annotations

import pytest

from deepkb.errors import EmbeddingModelError
from deepkb.kb import KnowledgeBase
from deepkb.vector_index import INDEX_FILE, SIDECAR_FILE

from conftest import write


@pytest.fixture
def filled(kb, sample_copy):
    kb.ingest([sample_copy])
    return kb


def test_missing_index_is_rebuilt_from_sqlite(filled, embedder):
    home = filled.home
    filled.close()
    (home / INDEX_FILE).unlink()
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        assert kb.search("LS-31 lockout tag", k=1, mode="dense")
        assert kb.index.state == "rebuilt" and kb.index.live == kb.store.all_vector_ids()
    assert (home / INDEX_FILE).exists()


def test_corrupt_index_file_is_rebuilt(filled, embedder):
    home = filled.home
    filled.close()
    (home / INDEX_FILE).write_bytes(b"garbage" * 100)
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        assert kb.search("fire alarm assembly point", k=1, mode="dense")[0].path.endswith("office-lab-safety.html")
        assert kb.index.state == "rebuilt"


def test_stale_index_is_repaired_not_rebuilt(filled, sample_copy, embedder):
    home = filled.home
    stale_sidecar = (home / SIDECAR_FILE).read_text()
    stale_index = (home / INDEX_FILE).read_bytes()
    write(sample_copy / "late.md", "# Late\n\nThe platypus exhibit is closed for renovation.\n")
    (sample_copy / "release-notes.txt").unlink()
    filled.ingest([sample_copy])
    filled.close()
    (home / SIDECAR_FILE).write_text(stale_sidecar)  # as if killed before the index was saved
    (home / INDEX_FILE).write_bytes(stale_index)
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        assert kb.index.state == "repaired"
        assert kb.index.live == kb.store.all_vector_ids()
        assert kb.search("platypus exhibit renovation", k=1, mode="dense")[0].path.endswith("late.md")


def test_deleted_slots_are_reused(kb, tmp_path):
    docs = tmp_path / "docs"
    for i in range(30):
        write(docs / f"n{i}.md", f"# Note {i}\n\nNote number {i} is about subject {i}.\n")
    kb.ingest([docs])
    slots = kb.index.index.get_current_count()
    for round_ in range(3):
        for i in range(30):
            write(docs / f"n{i}.md", f"# Note {i}\n\nRevision {round_} of note {i}, subject {i * 7}.\n")
        kb.ingest([docs])
    assert kb.index.index.get_current_count() == slots
    assert len(kb.index.live) == 30


def test_reindex_rebuilds_the_same_search_results(filled):
    before = [h.chunk_id for h in filled.search("who approves rotating a production key", k=5, mode="dense")]
    result = filled.reindex()
    assert result["chunks"] == filled.status()["chunks"]
    after = [h.chunk_id for h in filled.search("who approves rotating a production key", k=5, mode="dense")]
    assert after == before


def test_opening_with_another_embedding_model_is_a_clear_error(filled):
    home = filled.home
    filled.close()
    with pytest.raises(EmbeddingModelError, match="reindex --reembed"):
        KnowledgeBase.open(home, embedding_model="some-other-model")


def test_schema_is_migrated_and_wal_is_on(kb):
    assert kb.store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert kb.store.db.execute("PRAGMA user_version").fetchone()[0] >= 1
    assert kb.store.db["chunks_fts"].exists()
