"""`deepkb backup` / `deepkb restore`: a consistent copy taken while another process writes, restored into an empty
home, searches exactly like the original; a damaged backup or an occupied home is refused."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from deepkb.backup import MANIFEST, backup, restore
from deepkb.cli import main
from deepkb.errors import DatabaseDamagedError, UsageError
from deepkb.kb import KnowledgeBase

from conftest import write

QUERIES = ["who approves rotating a production key", "fire alarm assembly point", "expense report deadline"]


def _results(kb: KnowledgeBase) -> list[list[tuple[str, int | None, float]]]:
    return [[(h.path, h.line_start, round(h.score, 5)) for h in kb.search(q, k=5)] for q in QUERIES]


def test_restored_kb_searches_the_same(kb, sample_copy, tmp_path, embedder):
    kb.ingest([sample_copy])
    (kb.home / "conversations.sqlite").write_bytes(b"")  # another database in the home is backed up too
    with sqlite3.connect(kb.home / "conversations.sqlite") as conn:
        conn.execute("CREATE TABLE turns (question TEXT)")
        conn.execute("INSERT INTO turns VALUES ('how are keys rotated?')")
    conn.close()
    (kb.home / "config.toml").write_text("embed_batch_size = 16\n")
    expected = _results(kb)

    out = CliRunner().invoke(main, ["--kb", str(kb.home), "backup", str(tmp_path / "bk"), "--json"])
    assert out.exit_code == 0, out.output
    manifest = json.loads(out.output)
    assert {"kb.sqlite", "conversations.sqlite", "vectors.hnsw", "vectors.json", "config.toml"} == set(
        manifest["files"]
    )
    restored = tmp_path / "restored"
    out = CliRunner().invoke(main, ["--kb", str(restored), "restore", str(tmp_path / "bk")])
    assert out.exit_code == 0, out.output
    assert "restored 5 files" in out.output

    with KnowledgeBase.open(restored, embedder=embedder) as copy:
        assert copy.index.state == "loaded"  # the index came along, in step with the database
        assert _results(copy) == expected
        assert copy.settings.embed_batch_size == 16
        assert copy.status()["documents"] == kb.status()["documents"]
    with sqlite3.connect(restored / "conversations.sqlite") as conn:
        assert conn.execute("SELECT question FROM turns").fetchall() == [("how are keys rotated?",)]
    conn.close()


def test_backup_while_another_process_writes_is_a_consistent_snapshot(kb, tmp_path, embedder):
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\nThe albatross glides for hours.\n")
    kb.ingest([docs])
    writer = sqlite3.connect(kb.home / "kb.sqlite", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a writer mid-transaction, as watch is between its statements
    writer.execute("DELETE FROM chunks")
    try:
        backup(kb.home, tmp_path / "bk")  # neither waits for the writer nor sees its uncommitted work
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    restore(tmp_path / "bk", tmp_path / "restored")
    with KnowledgeBase.open(tmp_path / "restored", embedder=embedder) as copy:
        assert copy.store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.search("albatross", k=1, mode="keyword")[0].path.endswith("a.md")


def test_index_newer_than_the_database_snapshot_is_repaired(kb, tmp_path, embedder):
    """A write that lands between the database copy and the index copy: the restored KB repairs its index."""
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\nThe albatross glides for hours.\n")
    kb.ingest([docs])
    backup(kb.home, tmp_path / "bk")
    write(docs / "b.md", "# B\n\nThe booby dives for fish.\n")
    kb.ingest([docs])
    for name in ("vectors.hnsw", "vectors.json"):  # as if the index copy had been taken after that ingest
        (tmp_path / "bk" / name).write_bytes((kb.home / name).read_bytes())
    manifest = json.loads((tmp_path / "bk" / MANIFEST).read_text())
    from deepkb.checksum import file_sha256

    for name in ("vectors.hnsw", "vectors.json"):
        path = tmp_path / "bk" / name
        manifest["files"][name] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    (tmp_path / "bk" / MANIFEST).write_text(json.dumps(manifest))
    restore(tmp_path / "bk", tmp_path / "restored")
    with KnowledgeBase.open(tmp_path / "restored", embedder=embedder) as copy:
        hits = copy.search("booby dives for fish", k=5, mode="dense")
        assert all(h.path.endswith("a.md") for h in hits)  # b.md was never in the snapshot
        assert copy.index.live == copy.store.all_vector_ids()


def test_refusals(kb, sample_copy, tmp_path):
    kb.ingest([sample_copy / "security-policy.md"])
    with pytest.raises(UsageError, match="not an empty folder"):
        backup(kb.home, sample_copy)
    with pytest.raises(UsageError, match="inside the knowledge base"):
        backup(kb.home, kb.home / "bk")
    backup(kb.home, tmp_path / "bk")
    with pytest.raises(UsageError, match="already holds a knowledge base"):
        restore(tmp_path / "bk", kb.home)
    with pytest.raises(UsageError, match="not a deepkb backup"):
        restore(sample_copy, tmp_path / "new")
    with open(tmp_path / "bk" / "kb.sqlite", "r+b") as fh:  # a bit flipped on the backup disk
        fh.seek(5000)
        fh.write(b"\xff")
    with pytest.raises(UsageError, match="kb.sqlite is missing or differs.*damaged"):
        restore(tmp_path / "bk", tmp_path / "new")
    assert not (tmp_path / "new" / "kb.sqlite").exists()
    kb.close()
    with open(kb.home / "kb.sqlite", "r+b") as fh:  # a damaged source is named as the damaged one
        fh.write(b"\0" * 100)
    with pytest.raises(DatabaseDamagedError, match=f"the database {kb.home / 'kb.sqlite'} is damaged"):
        backup(kb.home, tmp_path / "bk2")
