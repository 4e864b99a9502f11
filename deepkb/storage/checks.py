"""The storage layer's own checks and copies of a knowledge base's databases, for `deepkb doctor` and `deepkb backup`:
each opens the file by itself (it may be damaged, or written by a newer deepkb), so nothing here migrates or caches
anything."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=30)


def only_index_problems(problems: list[str]) -> bool:
    """Problems a REINDEX fixes: entries missing from, or wrong in, a b-tree index (not the table itself)."""
    return all("index" in p and ("missing from index" in p or "wrong # of entries" in p) for p in problems)


def integrity(path: Path, repair: bool = False) -> tuple[int, list[str], list[str] | None]:
    """(schema version, integrity_check's findings: ["ok"] when sound, the findings a REINDEX repaired or None).
    With `repair`, damaged b-tree indexes are rebuilt by REINDEX; a damaged table is left for a restore.
    Raises sqlite3.DatabaseError when the file is not a database."""
    with closing(_connect(path)) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
        if problems != ["ok"] and repair and only_index_problems(problems):
            conn.execute("REINDEX")
            if [r[0] for r in conn.execute("PRAGMA integrity_check(20)")] == ["ok"]:
                return version, ["ok"], problems
        return version, problems, None


def keyword_index(path: Path, repair: bool = False) -> tuple[int, str | None, bool]:
    """(chunks, the FTS5 integrity-check's complaint or None, whether it was rebuilt from the chunks now)."""
    with closing(_connect(path)) as conn:
        chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        try:
            conn.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")
            return chunks, None, False
        except sqlite3.DatabaseError as exc:
            problem = str(exc)
        if not repair:
            return chunks, problem, False
        conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')")
        conn.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")
        return chunks, problem, True


def embedding_meta(path: Path) -> dict[str, str]:
    """The embedding facts the knowledge base recorded (model, dim, precision); empty when unreadable."""
    try:
        with closing(_connect(path)) as conn:
            return dict(conn.execute("SELECT key, value FROM meta WHERE key LIKE 'embedding_%'").fetchall())
    except sqlite3.DatabaseError:
        return {}


def sample_vectors(path: Path, n: int = 8) -> list[tuple[str, str | None, bytes]]:
    """The first `n` chunks' (text, heading, stored vector bytes): what a re-embed is compared against."""
    with closing(_connect(path)) as conn:
        return conn.execute(
            "SELECT c.text, c.heading, v.vector FROM chunks c JOIN vectors v ON v.id = c.vector_id ORDER BY c.id "
            "LIMIT ?",
            [n],
        ).fetchall()


def snapshot(source: Path, target: Path) -> None:
    """One consistent copy of a database by SQLite's online backup, while other processes may write it: all pages in
    one step, then a single self-contained file (no -wal beside it)."""
    with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)) as src:
        with closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
