"""Crash safety: an ingest killed (SIGKILL) at any of many points, or failing there on a full disk or an I/O error,
leaves a KB that opens and searches, and the next ingest completes it, ending identical to a clean ingest: no
duplicate, no orphan, index in step."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deepkb import faults
from deepkb.errors import DiskFullError, StorageError
from deepkb.kb import KnowledgeBase

from conftest import write

KILL_POINTS = [
    "scanned:1", "removing:1", "removing:2", "embedded:1", "embedded:2", "in-transaction:1", "in-transaction:3",
    "committed:1", "committed:2", "index-written:1", "index-replaced:1", "embedded:3",
]  # fmt: skip


def _corpus_v1(root: Path) -> None:
    for i in range(10):
        paragraphs = "\n\n".join(f"Document {i} paragraph {j} covers topic {i * 10 + j} with facts." for j in range(4))
        write(root / f"doc{i}.md", f"# Doc {i}\n\n{paragraphs}\n")


def _corpus_v2(root: Path) -> None:
    """Edits, deletes, a rename and new files: every kind of write an ingest does."""
    for i in (0, 1):
        path = root / f"doc{i}.md"
        path.write_text(path.read_text().replace("paragraph 2", "paragraph two (revised)"))
    (root / "doc2.md").unlink()
    (root / "doc3.md").unlink()
    (root / "doc4.md").rename(root / "renamed4.md")
    for i in range(4):
        write(root / "new" / f"fresh{i}.md", f"# Fresh {i}\n\nBrand new text number {i} about comets.\n")


def _snapshot(kb: KnowledgeBase) -> dict:
    db = kb.store.db
    chunks = db.execute(
        "SELECT d.path, d.sha256, c.ord, c.text, c.line_start, c.line_end, c.hash FROM chunks c "
        "JOIN documents d ON d.id = c.doc_id ORDER BY d.path, c.ord"
    ).fetchall()
    return {
        "documents": db.execute("SELECT path, sha256, size FROM documents ORDER BY path").fetchall(),
        "chunks": chunks,
        "orphans": db.execute("SELECT count(*) FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)").fetchone(),
        "fts_rows": db.execute("SELECT count(*) FROM chunks_fts").fetchone()[0],
        "integrity": db.execute("PRAGMA integrity_check").fetchone()[0],
    }


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, embedder):
    """A KB holding corpus v1, and the snapshot a clean ingest of corpus v2 gives."""
    base = tmp_path_factory.mktemp("crash")
    corpus, kb_dir = base / "corpus", base / "kb-v1"
    _corpus_v1(corpus)
    with KnowledgeBase.open(kb_dir, embedder=embedder) as kb:
        kb.ingest([corpus])
    shutil.copytree(corpus, base / "corpus-v1")
    _corpus_v2(corpus)
    with KnowledgeBase.open(base / "kb-clean", embedder=embedder) as kb:
        kb.ingest([corpus])
        expected = _snapshot(kb)
    return corpus, kb_dir, expected


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_then_rerun_equals_clean_ingest(prepared, point, tmp_path, embedder):
    corpus, kb_v1, expected = prepared
    kb_dir = tmp_path / "kb"
    shutil.copytree(kb_v1, kb_dir)
    env = {**os.environ, "DEEPKB_FAULT": point, "DEEPKB_CHUNKS_PER_COMMIT": "2"}
    killed = subprocess.run(
        [sys.executable, "-m", "deepkb", "--kb", str(kb_dir), "ingest", str(corpus), "--json"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -9, f"{point} was never reached: {killed.stdout} {killed.stderr}"

    _opens_searches_and_completes(kb_dir, corpus, expected, embedder)


FAULTS = [(point, kind) for point in KILL_POINTS for kind in ("enospc", "eio")] + [
    (point, "sqlfull") for point in KILL_POINTS if point.startswith(("removing", "in-transaction"))
]  # SQLite's own "disk is full" where SQLite writes: inside the transactions


@pytest.mark.parametrize(("point", "kind"), FAULTS)
def test_full_disk_or_io_error_then_rerun_equals_clean_ingest(prepared, point, kind, tmp_path, embedder, monkeypatch):
    """The same places, failing instead of dying (in-process: the failure is an exception, reported in one line)."""
    corpus, kb_v1, expected = prepared
    kb_dir = tmp_path / "kb"
    shutil.copytree(kb_v1, kb_dir)
    monkeypatch.setenv("DEEPKB_FAULT", f"{point}:{kind}")
    monkeypatch.setenv("DEEPKB_CHUNKS_PER_COMMIT", "2")
    faults.reset()
    with KnowledgeBase.open(kb_dir, embedder=embedder) as kb:
        with pytest.raises(StorageError) as caught:
            kb.ingest([corpus])
    message = str(caught.value)
    assert "\n" not in message and "this run stored" in message, message
    assert isinstance(caught.value, DiskFullError) == (kind != "eio"), message
    assert ("I/O error" in message) == (kind == "eio"), message
    monkeypatch.delenv("DEEPKB_FAULT")
    _opens_searches_and_completes(kb_dir, corpus, expected, embedder)


def _opens_searches_and_completes(kb_dir: Path, corpus: Path, expected: dict, embedder) -> None:
    with KnowledgeBase.open(kb_dir, embedder=embedder) as kb:  # opens and searches right after the failure
        assert kb.store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert kb.search("topic 53 facts", k=3)
        hits = kb.search("comets", k=50, mode="keyword")
        assert len({h.chunk_id for h in hits}) == len(hits)

    with KnowledgeBase.open(kb_dir, embedder=embedder) as kb:
        kb.ingest([corpus])
        assert _snapshot(kb) == expected
        assert kb.index.live == kb.store.all_vector_ids()
        found = kb.search("Brand new text number 3 about comets", k=1, mode="dense")[0]
        assert found.path.endswith("fresh3.md")

    with KnowledgeBase.open(kb_dir, embedder=embedder) as kb:  # and the saved index is the one it reopens
        assert kb.index.state == "loaded" and kb.index.live == kb.store.all_vector_ids()
