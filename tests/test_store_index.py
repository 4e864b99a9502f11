"""Store and vector index: SQLite is the truth; the HNSW file is a cache that is repaired or rebuilt from it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from deepkb.errors import EmbeddingModelError
from deepkb.kb import KnowledgeBase
from deepkb.storage import catalog as store_module
from deepkb.storage.catalog import MIGRATIONS, SCHEMA_VERSION, Store
from deepkb.storage.vectors import INDEX_FILE, SIDECAR_FILE

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
    assert kb.store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    assert kb.store.db["chunks_fts"].exists()


def test_a_database_from_the_first_version_is_migrated_keeping_its_documents(tmp_path, monkeypatch):
    """A KB written by deepkb with schema 1 opens in this one: every later migration runs, nothing is lost."""
    old = tmp_path / "old-kb"
    old.mkdir()
    with monkeypatch.context() as patch:  # the deepkb that knew only the first migration
        patch.setattr(store_module, "MIGRATIONS", MIGRATIONS[:1])
        patch.setattr(store_module, "SCHEMA_VERSION", 1)
        first = Store(old)
        first.db.execute("INSERT INTO documents (path, size, mtime_ns, sha256) VALUES ('/notes/a.md', 10, 1, 'abc')")
        first.db.execute(
            "INSERT INTO chunks (doc_id, ord, text, hash, vector) VALUES (1, 0, 'the old heron text', 'h', x'00')"
        )
        first.close()
    store = Store(old)
    try:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store.document("/notes/a.md").pipeline == 1  # recorded as chunked by the first pipeline
        assert store.keyword_search(['"heron"'], 5) and store.counts() == {"documents": 1, "chunks": 1}
        assert store.db["failures"].exists()
    finally:
        store.close()


def _open_fds_to(path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts open files through /proc")
def test_refusing_another_embedding_model_leaves_no_open_database(filled):
    home = filled.home
    filled.close()
    before = _open_fds_to(home / "kb.sqlite")
    for _ in range(3):
        with pytest.raises(EmbeddingModelError):
            KnowledgeBase.open(home, embedding_model="some-other-model")
    assert _open_fds_to(home / "kb.sqlite") == before


@pytest.fixture
def cls_pooling_model(embedder, tmp_path) -> Path:
    """Another embedding model for real: all-MiniLM-L6-v2's files with CLS pooling instead of mean pooling."""
    from deepkb.embedders import resolve_model

    source, _ = resolve_model(embedder.name)
    folder = tmp_path / "minilm-cls"
    shutil.copytree(source, folder)
    config = folder / "1_Pooling" / "config.json"
    pooling = json.loads(config.read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    config.write_text(json.dumps(pooling))
    return folder


def test_reembed_with_another_model_from_the_cli(filled, cls_pooling_model, monkeypatch):
    pytest.importorskip("sentence_transformers", reason="the CLS-pooled model runs on torch (make test-py310 has none)")
    from click.testing import CliRunner

    from deepkb.cli import main
    from deepkb.embedders import create_embedder

    home = filled.home
    distinct = len(filled.store.all_vector_ids())  # identical chunk texts share one vector, embedded once
    filled.close()
    monkeypatch.setenv("DEEPKB_EMBEDDING_BACKEND", "sentence-transformers")
    result = CliRunner().invoke(
        main, ["--kb", str(home), "reindex", "--reembed", "--embedding-model", str(cls_pooling_model), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["embedded"] == distinct
    assert f'embedding_model = "{cls_pooling_model}"' in (home / "config.toml").read_text()

    other = create_embedder(str(cls_pooling_model), "sentence-transformers")
    with KnowledgeBase.open(home) as kb:  # config.toml now names the new model: no flag needed
        assert kb.status()["embedding_model"] == str(cls_pooling_model)
        rows = kb.store.db.execute(
            "SELECT c.text, c.heading, v.vector FROM chunks c JOIN vectors v ON v.id = c.vector_id ORDER BY c.id"
        ).fetchall()
        expected = other.embed([f"{h}\n{t}" if h else t for t, h, _ in rows])  # what ingest would have stored
        stored = np.vstack([np.frombuffer(v, dtype=np.float32) for _, _, v in rows])
        assert np.allclose(stored, expected, atol=1e-4)
        assert kb.search("fire alarm assembly point", k=1, mode="dense")[0].path.endswith("office-lab-safety.html")
        assert kb.index.live == kb.store.all_vector_ids()
    with pytest.raises(EmbeddingModelError, match="reindex --reembed"):
        KnowledgeBase.open(home, embedding_model="all-MiniLM-L6-v2")
