"""The one migration mechanism of deepkb's databases (the catalog, kb.sqlite, and the saved conversations): a list of
SQL scripts whose position is the schema version, kept in SQLite's `PRAGMA user_version`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import sqlite_utils

from deepkb.errors import NewerVersionError


def schema_version(db: sqlite_utils.Database) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def refuse_newer(db: sqlite_utils.Database, steps: Sequence[str], path: Path, version: str) -> None:
    """A database written by a newer deepkb (a higher version than `steps` reach) is left exactly as it is."""
    found = schema_version(db)
    if found > len(steps):
        raise NewerVersionError(
            f"{path} was written by a newer deepkb (database schema {found}; deepkb {version} knows up to "
            f"{len(steps)}); upgrade deepkb (`pip install -U deepkb`) to use it: it was not changed."
        )


def migrate(
    db: sqlite_utils.Database,
    steps: Sequence[str],
    also: Mapping[int, Callable[[sqlite_utils.Database], None]] | None = None,
) -> None:
    """Bring the database up to `len(steps)`: each step (its statements, then `also[number]` when given, then its
    version number) in one write transaction. BEGIN IMMEDIATE makes a second process that migrates at the same moment
    wait, then find the step done. The connection must be in autocommit mode (isolation_level=None)."""
    if schema_version(db) >= len(steps):
        return  # up to date: opening takes no write lock (readers never wait for another program's transaction)
    for number, script in enumerate(steps, start=1):
        db.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(db) < number:
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                if also and number in also:
                    also[number](db)
                db.execute(f"PRAGMA user_version={number}")
        except BaseException:
            if db.conn.in_transaction:
                db.execute("ROLLBACK")
            raise
        if db.conn.in_transaction:
            db.execute("COMMIT")
