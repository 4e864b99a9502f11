"""deepkb.storage.migrations: the one migration mechanism of both databases (the catalog and the conversations)."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import sqlite_utils

from deepkb.conversation.store import SCHEMA, ConversationStore
from deepkb.errors import NewerVersionError
from deepkb.storage import checks, migrations

STEPS = ["CREATE TABLE a (x INTEGER)", "ALTER TABLE a ADD COLUMN y TEXT; CREATE INDEX a_y ON a(y)"]


def _db(path) -> sqlite_utils.Database:
    return sqlite_utils.Database(sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30))


def test_two_processes_migrating_at_once_apply_each_step_once(tmp_path):
    path = tmp_path / "x.sqlite"
    _db(path).execute("PRAGMA journal_mode=WAL")
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def run() -> None:
        db = _db(path)
        start.wait()
        try:
            migrations.migrate(db, STEPS)
        except BaseException as exc:  # a step run twice would fail: "table a already exists"
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db = _db(path)
    assert errors == [] and migrations.schema_version(db) == 2
    assert [c.name for c in db["a"].columns] == ["x", "y"]


def test_an_up_to_date_database_opens_while_another_program_writes(tmp_path):
    path = tmp_path / "x.sqlite"
    migrations.migrate(_db(path), STEPS)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # an sqlite3 shell in a transaction
    try:
        db = _db(path)
        db.conn.execute("PRAGMA busy_timeout = 100")
        migrations.migrate(db, STEPS)  # nothing to do: no write lock wanted
    finally:
        other.execute("ROLLBACK")


def test_a_failing_step_leaves_the_version_before_it(tmp_path):
    path = tmp_path / "x.sqlite"
    with pytest.raises(sqlite3.OperationalError):
        migrations.migrate(_db(path), [*STEPS, "CREATE TABLE b (x); THIS IS NOT SQL"])
    db = _db(path)
    assert migrations.schema_version(db) == 2 and "b" not in db.table_names()  # step 3 rolled back whole


def test_conversations_written_by_a_newer_deepkb_are_left_untouched(tmp_path):
    path = tmp_path / "conversations.sqlite"
    sqlite3.connect(path).execute(f"PRAGMA user_version={len(SCHEMA) + 1}")
    before = path.read_bytes()
    with pytest.raises(NewerVersionError, match="newer deepkb"):
        ConversationStore(tmp_path).list()
    assert path.read_bytes() == before


def test_a_snapshot_is_one_consistent_file_while_a_writer_works(tmp_path):
    path = tmp_path / "x.sqlite"
    db = _db(path)
    db.execute("PRAGMA journal_mode=WAL")
    migrations.migrate(db, STEPS)
    db["a"].insert_all({"x": i, "y": str(i)} for i in range(1000))
    db.execute("BEGIN IMMEDIATE")
    db["a"].insert({"x": -1, "y": "uncommitted"})
    checks.snapshot(path, tmp_path / "copy.sqlite")
    db.execute("ROLLBACK")
    copy = _db(tmp_path / "copy.sqlite")
    assert copy.execute("SELECT count(*), min(x) FROM a").fetchone() == (1000, 0)
    assert not (tmp_path / "copy.sqlite-wal").exists()
    assert checks.integrity(tmp_path / "copy.sqlite") == (2, ["ok"], None)
