"""How a raw storage failure becomes the one line a user reads (the failures themselves are made to happen on
real disks in test_storage_failures.py)."""

from __future__ import annotations

import errno
import sqlite3

from deepkb.errors import DatabaseDamagedError, DiskFullError, LockedError, StorageError
from deepkb.storage.errors import explain, human_bytes


def test_each_storage_failure_names_what_happened_and_the_next_step(tmp_path):
    full = explain(sqlite3.OperationalError("database or disk is full"), tmp_path, "kept 12 files", 5_000_000)
    assert isinstance(full, DiskFullError)
    assert "is full" in str(full) and "kept 12 files, nothing already indexed was lost" in str(full)
    assert "free at least 5.0 MB" in str(full)
    assert isinstance(explain(OSError(errno.ENOSPC, "No space left on device"), tmp_path), DiskFullError)

    damaged = explain(sqlite3.DatabaseError("file is not a database"), tmp_path)
    assert isinstance(damaged, DatabaseDamagedError)
    assert "deepkb doctor" in str(damaged) and "deepkb restore" in str(damaged)

    assert isinstance(explain(sqlite3.OperationalError("database is locked"), tmp_path), LockedError)
    io = explain(OSError(errno.EIO, "Input/output error"), tmp_path, "kept 3 files")
    assert isinstance(io, StorageError) and "I/O error" in str(io) and "kept 3 files" in str(io)
    assert explain(ValueError("not storage"), tmp_path) is None  # anything else is not dressed up as storage


def test_sizes_read_the_way_df_h_writes_them():
    assert human_bytes(0) == "0 B"
    assert human_bytes(640_000) == "640 KB"
    assert human_bytes(235_400_000) == "235.4 MB"
    assert human_bytes(80.5e9) == "80.5 GB"
