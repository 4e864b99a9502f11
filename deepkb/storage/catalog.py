"""Store: the SQLite catalog (documents, chunks with their vectors, FTS5), the source of truth."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import sqlite_utils

from deepkb import __version__
from deepkb.scope import Scope
from deepkb.storage import migrations
from deepkb.types import Chunk

DB_FILE = "kb.sqlite"
BUSY_TIMEOUT = 30.0  # seconds a statement waits for another program's lock on the database before giving up
KEYWORD_BUDGET = 2000  # chunks ranked by BM25 per keyword query, roughly (see Store.keyword_search)
IN_BATCH = 500  # values bound in one `IN (...)`: well under SQLite's limit on bound parameters


def _in_batches(values: Iterable) -> Iterator[tuple[list, str]]:
    """The values in slices of IN_BATCH, each with its `?,?,…` placeholders for an `IN (...)`."""
    values = list(values)
    for i in range(0, len(values), IN_BATCH):
        part = values[i : i + IN_BATCH]
        yield part, ",".join("?" * len(part))


MIGRATIONS: list[str] = [
    # 1: the initial schema. Chunk ids are AUTOINCREMENT so an id is never reused: a stale vector index can
    # then never point at a different chunk than the one it was built from.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
    CREATE TABLE roots (path TEXT PRIMARY KEY, added_at REAL);
    CREATE TABLE documents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        path TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        kind TEXT,
        title TEXT,
        encoding TEXT,
        pages INTEGER,
        empty_pages TEXT,
        ingested_at REAL
    );
    CREATE INDEX documents_sha256 ON documents(sha256);
    CREATE TABLE chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        ord INTEGER NOT NULL,
        text TEXT NOT NULL,
        heading TEXT,
        page INTEGER,
        line_start INTEGER,
        line_end INTEGER,
        n_tokens INTEGER,
        hash TEXT NOT NULL,
        vector BLOB NOT NULL
    );
    CREATE INDEX chunks_doc_id ON chunks(doc_id);
    CREATE INDEX chunks_hash ON chunks(hash);
    """,
    # 2: which loader/chunker version produced a document's chunks, so an upgrade re-chunks old documents.
    """
    ALTER TABLE documents ADD COLUMN pipeline INTEGER NOT NULL DEFAULT 1;
    """,
    # 3: files that failed to load, so an unchanged bad file is reported again without being read again.
    """
    CREATE TABLE failures (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, reason TEXT);
    """,
    # 4: identical chunk texts share one vector row, and the HNSW index holds each vector once (keyed by vector id):
    # 6,000 copies of one chunk no longer flood the graph and hide other documents. A vector lives as long as one
    # chunk refers to it.
    """
    CREATE TABLE vectors (id INTEGER PRIMARY KEY AUTOINCREMENT, hash TEXT NOT NULL UNIQUE, vector BLOB NOT NULL);
    INSERT INTO vectors (hash, vector) SELECT hash, vector FROM chunks WHERE id IN (SELECT min(id) FROM chunks GROUP BY hash)
        ORDER BY id;
    ALTER TABLE chunks ADD COLUMN vector_id INTEGER REFERENCES vectors(id);
    UPDATE chunks SET vector_id = (SELECT v.id FROM vectors v WHERE v.hash = chunks.hash);
    ALTER TABLE chunks DROP COLUMN vector;
    DROP INDEX chunks_hash;
    CREATE INDEX chunks_vector_id ON chunks(vector_id, doc_id);
    """,
]


def _enable_fts(db: sqlite_utils.Database) -> None:
    """Part of migration 1: the FTS5 index of chunk texts and headings, kept in step by triggers."""
    db["chunks"].enable_fts(["text", "heading"], create_triggers=True, tokenize="porter")


SCHEMA_VERSION = len(MIGRATIONS)  # the newest schema this deepkb knows; a higher user_version is a newer deepkb


@dataclass(frozen=True)
class DocumentRow:
    """What the catalog knows about one file."""

    id: int
    path: str
    size: int
    mtime_ns: int
    sha256: str
    pipeline: int  # the PIPELINE_VERSION of deepkb.ingest.reader that chunked it


@dataclass(frozen=True)
class ChunkRow:
    """A stored chunk joined with its document's path."""

    id: int
    path: str
    text: str
    heading: str | None
    page: int | None
    line_start: int | None
    line_end: int | None


@dataclass(frozen=True)
class ChunkWindow:
    """A chunk with its neighbours in document order (what an agent reads around a search hit)."""

    doc_id: int
    position: int  # the asked chunk's place in its document, from 0
    total: int  # chunks in the document
    chunks: list[ChunkRow]  # in document order; the asked chunk among them


class Store:
    """SQLite in WAL mode: readers never wait for the writer, and every write is one transaction.

    Each thread gets its own connection (`db`), so a thread reading never sees another thread's transaction
    half-way: only what has committed."""

    def __init__(self, home: Path) -> None:
        self.path = home / DB_FILE
        self._local = threading.local()
        self._open: dict[threading.Thread, sqlite_utils.Database] = {}  # every thread's connection, closed by close()
        self._guard = threading.Lock()
        self._closed = False
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT)
        db = sqlite_utils.Database(conn)
        try:
            self._local.db = db
            self._check_version()  # before anything writes: a newer schema is left exactly as it is
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except BaseException:
            conn.close()
            raise
        self._open[threading.current_thread()] = db

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection, opened on its first use (never creating the file: it exists by now)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
        return db

    def _connect(self) -> sqlite_utils.Database:
        with self._guard:
            if self._closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            for thread in [t for t in self._open if not t.is_alive()]:  # threads that ended leave their connection
                self._open.pop(thread).close()
            uri = f"file:{quote(str(self.path))}?mode=rw"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            db = self._local.db = sqlite_utils.Database(conn)
            self._open[threading.current_thread()] = db
            return db

    def _check_version(self) -> None:
        migrations.refuse_newer(self.db, MIGRATIONS, self.path, __version__)

    def _migrate(self) -> None:
        migrations.migrate(self.db, MIGRATIONS, also={1: _enable_fts})

    def close(self) -> None:
        """Close every thread's connection."""
        with self._guard:
            self._closed = True
            for db in self._open.values():
                db.close()
            self._open.clear()

    @contextmanager
    def write(self, advance_epoch: bool = True) -> Iterator[None]:
        """One atomic write transaction; it advances the epoch the vector index is checked against, unless the change
        cannot touch the vectors (`advance_epoch` False: roots, failures)."""
        with self.db.atomic():
            if advance_epoch:
                self.set_meta("epoch", str(self.epoch() + 1))
            yield

    # meta ---------------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])

    def epoch(self) -> int:
        return int(self.get_meta("epoch") or 0)

    # roots and documents --------------------------------------------------------------------------------
    def add_roots(self, roots: Iterable[str]) -> None:
        now = time.time()
        self.db["roots"].insert_all(({"path": r, "added_at": now} for r in roots), ignore=True)

    def roots(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT path FROM roots ORDER BY path")]

    def documents_under(self, roots: Sequence[str]) -> dict[str, DocumentRow]:
        """Documents whose path is one of the roots or lies below one."""
        found: dict[str, DocumentRow] = {}
        for root in roots:
            prefix = root.rstrip("/") + "/"
            rows = self.db.execute(
                "SELECT id, path, size, mtime_ns, sha256, pipeline FROM documents WHERE path = ? OR substr(path, 1, ?) = ?",
                [root, len(prefix), prefix],
            )
            found.update({r[1]: DocumentRow(*r) for r in rows})
        return found

    def pdfs_awaiting_ocr(self, roots: Sequence[str]) -> set[str]:
        """PDFs below the roots with pages that had no text and were never given to OCR (tesseract was missing)."""
        found: set[str] = set()
        for root in roots:
            prefix = root.rstrip("/") + "/"
            rows = self.db.execute(
                "SELECT path FROM documents WHERE kind = 'pdf' AND empty_pages IS NOT NULL AND encoding IS NOT 'ocr' "
                "AND (path = ? OR substr(path, 1, ?) = ?)",
                [root, len(prefix), prefix],
            )
            found.update(r[0] for r in rows)
        return found

    def document(self, path: str) -> DocumentRow | None:
        row = self.db.execute("SELECT id, path, size, mtime_ns, sha256, pipeline FROM documents WHERE path = ?", [path])
        found = row.fetchone()
        return DocumentRow(*found) if found else None

    def documents_with_sha(self, sha256: str) -> list[DocumentRow]:
        rows = self.db.execute(
            "SELECT id, path, size, mtime_ns, sha256, pipeline FROM documents WHERE sha256 = ?", [sha256]
        )
        return [DocumentRow(*r) for r in rows]

    def touch_document(self, doc_id: int, size: int, mtime_ns: int) -> None:
        self.db.execute("UPDATE documents SET size = ?, mtime_ns = ? WHERE id = ?", [size, mtime_ns, doc_id])

    def rename_document(self, doc_id: int, new_path: str, size: int, mtime_ns: int) -> None:
        self.db.execute(
            "UPDATE documents SET path = ?, size = ?, mtime_ns = ? WHERE id = ?", [new_path, size, mtime_ns, doc_id]
        )

    def failures_under(self, roots: Sequence[str]) -> dict[str, tuple[int, int, str]]:
        """Remembered load failures below the roots: path -> (size, mtime_ns, reason)."""
        found: dict[str, tuple[int, int, str]] = {}
        for root in roots:
            prefix = root.rstrip("/") + "/"
            rows = self.db.execute(
                "SELECT path, size, mtime_ns, reason FROM failures WHERE path = ? OR substr(path, 1, ?) = ?",
                [root, len(prefix), prefix],
            )
            found.update({r[0]: (r[1], r[2], r[3]) for r in rows})
        return found

    def set_failure(self, path: str, size: int, mtime_ns: int, reason: str | None) -> None:
        """Remember (or, with reason None, forget) that a file failed to load in this exact version."""
        if reason is None:
            self.db.execute("DELETE FROM failures WHERE path = ?", [path])
        else:
            self.db.execute(
                "INSERT OR REPLACE INTO failures (path, size, mtime_ns, reason) VALUES (?, ?, ?, ?)",
                [path, size, mtime_ns, reason],
            )

    def remove_document(self, doc_id: int) -> list[int]:
        """Delete a document and its chunks; returns the vector ids no chunk refers to any more (the index drops them)."""
        used = self._vector_ids_of(doc_id)
        self.db.execute("DELETE FROM chunks WHERE doc_id = ?", [doc_id])
        self.db.execute("DELETE FROM documents WHERE id = ?", [doc_id])
        return self._drop_orphans(used)

    def chunk_ids(self, doc_id: int) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT id FROM chunks WHERE doc_id = ? ORDER BY ord", [doc_id])]

    def chunk_window(self, chunk_id: int, before: int = 0, after: int = 0) -> ChunkWindow | None:
        """The chunk and up to `before` / `after` chunks of its document around it; None when no such chunk.
        One statement, so a writer replacing the document meanwhile cannot split the window."""
        rows = self.db.execute(
            "WITH me AS (SELECT doc_id, ord FROM chunks WHERE id = ?) "
            "SELECT c.id, d.path, c.text, c.heading, c.page, c.line_start, c.line_end, c.doc_id, me.ord, "
            "(SELECT count(*) FROM chunks WHERE doc_id = me.doc_id) FROM chunks c JOIN me ON c.doc_id = me.doc_id "
            "JOIN documents d ON d.id = c.doc_id WHERE c.ord BETWEEN me.ord - ? AND me.ord + ? ORDER BY c.ord",
            [chunk_id, max(before, 0), max(after, 0)],
        ).fetchall()
        if not rows:
            return None
        return ChunkWindow(rows[0][7], rows[0][8], rows[0][9], [ChunkRow(*r[:7]) for r in rows])

    def document_chunks(self, doc_id: int) -> list[ChunkRow]:
        """Every chunk of one document in document order (empty when there is no such document)."""
        rows = self.db.execute(
            "SELECT c.id, d.path, c.text, c.heading, c.page, c.line_start, c.line_end FROM chunks c "
            "JOIN documents d ON d.id = c.doc_id WHERE c.doc_id = ? ORDER BY c.ord",
            [doc_id],
        )
        return [ChunkRow(*r) for r in rows]

    def put_document(
        self, fields: dict, chunks: Sequence[Chunk], vectors: np.ndarray
    ) -> tuple[list[int], list[tuple[int, np.ndarray]]]:
        """Insert or replace a document with its chunks.

        Returns (vector ids no chunk refers to any more, [(vector id, vector)] of the vectors new to the store): what
        the vector index must drop and add. A chunk whose text is already stored shares that vector row."""
        existing = self.document(fields["path"])
        used: list[int] = []
        names, values = list(fields), list(fields.values())
        if existing:
            used = self._vector_ids_of(existing.id)
            self.db.execute("DELETE FROM chunks WHERE doc_id = ?", [existing.id])
            assignments = ", ".join(f"{name} = ?" for name in names)
            self.db.execute(f"UPDATE documents SET {assignments} WHERE id = ?", [*values, existing.id])
            doc_id = existing.id
        else:
            marks = ", ".join("?" * len(names))
            doc_id = self.db.execute(f"INSERT INTO documents ({', '.join(names)}) VALUES ({marks})", values).lastrowid
        ids, added = self._vector_rows(chunks, vectors)
        rows = [
            (doc_id, ord_, chunk.text, chunk.heading, chunk.page, chunk.line_start, chunk.line_end, chunk.n_tokens,
             chunk.hash, ids[chunk.hash])
            for ord_, chunk in enumerate(chunks)
        ]  # fmt: skip
        self.db.conn.executemany(
            "INSERT INTO chunks (doc_id, ord, text, heading, page, line_start, line_end, n_tokens, hash, vector_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        return self._drop_orphans(used), added

    def _vector_ids_of(self, doc_id: int) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT vector_id FROM chunks WHERE doc_id = ?", [doc_id])]

    def _vector_rows(
        self, chunks: Sequence[Chunk], vectors: np.ndarray
    ) -> tuple[dict[str, int], list[tuple[int, np.ndarray]]]:
        """The vector id of each chunk hash, inserting the vectors the store lacks (returned as added)."""
        ids = self._ids_for_hashes(c.hash for c in chunks)
        added: list[tuple[int, np.ndarray]] = []
        for chunk, vector in zip(chunks, vectors):
            if chunk.hash not in ids:
                vector = np.asarray(vector, dtype=np.float32)
                cursor = self.db.execute(
                    "INSERT INTO vectors (hash, vector) VALUES (?, ?)", [chunk.hash, vector.tobytes()]
                )
                ids[chunk.hash] = cursor.lastrowid
                added.append((cursor.lastrowid, vector))
        return ids, added

    def _ids_for_hashes(self, hashes: Iterable[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for part, marks in _in_batches(set(hashes)):
            found.update(self.db.execute(f"SELECT hash, id FROM vectors WHERE hash IN ({marks})", part).fetchall())
        return found

    def _drop_orphans(self, vector_ids: Sequence[int]) -> list[int]:
        """Delete those of these vectors that no chunk refers to any more; returns their ids."""
        dropped: list[int] = []
        for part, marks in _in_batches(vector_ids):
            dropped += [
                r[0]
                for r in self.db.execute(
                    f"DELETE FROM vectors WHERE id IN ({marks}) AND NOT EXISTS "
                    "(SELECT 1 FROM chunks c WHERE c.vector_id = vectors.id) RETURNING id",
                    part,
                ).fetchall()
            ]
        return dropped

    # vectors and chunks ---------------------------------------------------------------------------------
    def vectors_for_hashes(self, hashes: Iterable[str]) -> dict[str, bytes]:
        """Stored embeddings of chunks with these content hashes, so equal text is never embedded twice."""
        found: dict[str, bytes] = {}
        for part, marks in _in_batches(set(hashes)):
            found.update(self.db.execute(f"SELECT hash, vector FROM vectors WHERE hash IN ({marks})", part).fetchall())
        return found

    def all_vector_ids(self) -> set[int]:
        return {r[0] for r in self.db.execute("SELECT id FROM vectors")}

    def chunks_for_vectors(
        self, hits: Sequence[tuple[int, float]], limit: int, scope: Scope | None = None
    ) -> list[tuple[int, float]]:
        """Nearest vectors to nearest chunks: each vector's chunks, one per document (its first), best vector first.

        Identical chunks of one document (a file that repeats one line 6,000 times) are one hit, so they never
        crowd other documents out of the list; the same text in several documents is a hit per document. With a
        scope, only chunks of documents in it (a vector shared with a document outside stays a hit inside)."""
        if not hits:
            return []
        marks = ",".join("?" * len(hits))
        where, params = "", []
        if scope:
            cond, params = scope.sql()
            where = f" AND doc_id IN (SELECT id FROM documents WHERE {cond})"
        rows = self.db.execute(
            f"SELECT vector_id, min(id) FROM chunks WHERE vector_id IN ({marks}){where} GROUP BY vector_id, doc_id",
            [vector_id for vector_id, _ in hits] + params,
        ).fetchall()
        by_vector: dict[int, list[int]] = {}
        for vector_id, chunk_id in rows:
            by_vector.setdefault(vector_id, []).append(chunk_id)
        out = [(c, score) for vector_id, score in hits for c in sorted(by_vector.get(vector_id, ()))]
        return out[:limit]

    def iter_vectors(
        self, ids: Iterable[int] | None = None, batch: int = 4096
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """Stored vectors in batches of (vector ids, matrix): what the vector index is rebuilt from."""
        if ids is None:
            cursor = self.db.execute("SELECT id, vector FROM vectors ORDER BY id")
            rows_iter: Iterable = iter(lambda: cursor.fetchmany(batch), [])
        else:
            rows_iter = (
                self.db.execute(f"SELECT id, vector FROM vectors WHERE id IN ({marks})", part).fetchall()
                for part, marks in _in_batches(sorted(ids))
            )
        for rows in rows_iter:
            if rows:
                yield [r[0] for r in rows], np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])

    def chunks_by_ids(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            "SELECT c.id, d.path, c.text, c.heading, c.page, c.line_start, c.line_end FROM chunks c "
            f"JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})",
            list(ids),
        )
        return {r[0]: ChunkRow(*r) for r in rows}

    def only_heading_between(self, doc_id: int, after: int, before: int, heading: str | None) -> bool:
        """Every chunk of the document strictly between places `after` and `before` stands under `heading`."""
        row = self.db.execute(
            "SELECT 1 FROM chunks WHERE doc_id = ? AND ord > ? AND ord < ? AND heading IS NOT ? LIMIT 1",
            (doc_id, after, before, heading),
        ).fetchone()
        return row is None

    def chunk_places(self, ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """Where each chunk stands: (its document's id, its place in the document), for the chunks that exist."""
        out: dict[int, tuple[int, int]] = {}
        for part, marks in _in_batches(list(ids)):
            out.update({r[0]: (r[1], r[2]) for r in self.db.execute(
                f"SELECT id, doc_id, ord FROM chunks WHERE id IN ({marks})", part)})  # fmt: skip
        return out

    def scope_vector_ids(self, scope: Scope) -> list[int]:
        """The vector ids of the chunks of documents in the scope: what a scoped dense search may return."""
        cond, params = scope.sql()
        sql = f"SELECT DISTINCT vector_id FROM chunks WHERE doc_id IN (SELECT id FROM documents WHERE {cond})"
        return [r[0] for r in self.db.execute(sql, params)]

    def vectors_by_ids(self, ids: Sequence[int]) -> tuple[list[int], np.ndarray]:
        """These stored vectors as (ids, matrix), for an exact scan of a small scope."""
        found: list[int] = []
        blobs: list[bytes] = []
        for part, marks in _in_batches(ids):
            for vector_id, blob in self.db.execute(f"SELECT id, vector FROM vectors WHERE id IN ({marks})", part):
                found.append(vector_id)
                blobs.append(blob)
        matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(found), -1) if found else np.empty((0, 0))
        return found, matrix

    def scope_documents(self, scope: Scope) -> int:
        """How many documents lie in the scope."""
        cond, params = scope.sql()
        return self.db.execute(f"SELECT count(*) FROM documents WHERE {cond}", params).fetchone()[0]

    def keyword_search(
        self, terms: Sequence[str], limit: int, budget: int = KEYWORD_BUDGET, scope: Scope | None = None
    ) -> list[tuple[int, float]]:
        """FTS5 BM25 of any of the terms (quoted FTS5 strings) over chunk text and headings; higher score is better.

        FTS5 computes bm25() for every chunk that matches, a few microseconds each, and at 100k chunks a question with
        a few common words matches a third of them. So when the terms' matches add up to more than `budget`, only the
        chunks holding one of the rarest terms (whose matches add up to at most `budget`; at least one term) are
        ranked, by the BM25 of all the terms: a chunk that holds only common terms is left out. Exact otherwise.
        With a scope, the FTS5 query is joined to the documents in it, so the limit counts chunks in scope only.
        """
        if not terms:
            return []
        counts = {term: self._fts_matches(term, budget + 1) for term in terms}
        rare: list[str] = []
        matches = 0
        for term in sorted(terms, key=counts.__getitem__):
            matches += counts[term]
            if rare and matches > budget:
                break
            rare.append(term)
        either = " OR ".join(rare)
        common = " OR ".join(t for t in terms if t not in rare)
        if not common:
            return self._one_per_text(self._bm25(either, limit, scope))
        # The rare terms alone score exactly the chunks that hold no common term; all the terms score those that hold
        # both. One of these missing from the second list is missing because that list is full of chunks scoring
        # above it, so its partial score from the first list never makes the cut.
        scores = dict(self._bm25(either, limit, scope))
        scores.update(self._bm25(f"({either}) AND ({common})", limit, scope))
        return self._one_per_text(sorted(scores.items(), key=lambda item: item[1], reverse=True)[:limit])

    def _bm25(self, match: str, limit: int, scope: Scope | None = None) -> list[tuple[int, float]]:
        # Headings weigh as much as text: every chunk of a section already repeats its heading, and the first also
        # holds the heading line (SciFact keyword nDCG@10: 0.676 at weight 1, 0.668 at 2, 0.663 at 3).
        if scope:
            cond, params = scope.sql("d.path", "d.kind")
            rows = self.db.execute(
                "SELECT chunks_fts.rowid, bm25(chunks_fts, 1.0, 1.0) AS rank FROM chunks_fts "
                "JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.doc_id "
                f"WHERE chunks_fts MATCH ? AND {cond} ORDER BY rank LIMIT ?",
                [match, *params, limit],
            )
            return [(r[0], -r[1]) for r in rows]
        rows = self.db.execute(
            "SELECT rowid, bm25(chunks_fts, 1.0, 1.0) AS rank FROM chunks_fts WHERE chunks_fts MATCH ? "
            "ORDER BY rank LIMIT ?",
            [match, limit],
        )
        return [(r[0], -r[1]) for r in rows]

    def _one_per_text(self, hits: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """Identical chunks of one document (equal vector, equal document) count once, at the best of them."""
        if not hits:
            return []
        marks = ",".join("?" * len(hits))
        rows = self.db.execute(f"SELECT id, doc_id, vector_id FROM chunks WHERE id IN ({marks})", [c for c, _ in hits])
        group = {r[0]: (r[1], r[2]) for r in rows}
        seen: set[tuple[int, int]] = set()
        out: list[tuple[int, float]] = []
        for chunk_id, score in hits:
            key = group.get(chunk_id, (-chunk_id, 0))
            if key not in seen:
                seen.add(key)
                out.append((chunk_id, score))
        return out

    def _fts_matches(self, match: str, cap: int) -> int:
        """How many chunks match, counted up to `cap`: past it the number does not matter, and a common word has many."""
        sql = "SELECT count(*) FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT ?)"
        return self.db.execute(sql, [match, cap]).fetchone()[0]

    def counts(self) -> dict[str, int]:
        docs = self.db.execute("SELECT count(*) FROM documents").fetchone()[0]
        chunks = self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return {"documents": docs, "chunks": chunks}

    def facts(self) -> dict[str, object]:
        """What `deepkb status` adds to the counts: documents with pages without text, the last ingest, the vectors
        stored and the bytes of source documents indexed."""
        one = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "documents_with_empty_pages": one("SELECT count(*) FROM documents WHERE empty_pages IS NOT NULL"),
            "last_ingest": one("SELECT max(ingested_at) FROM documents"),
            "vectors": one("SELECT count(*) FROM vectors"),
            "source_bytes": one("SELECT coalesce(sum(size), 0) FROM documents"),
        }

    def document_list(self) -> list[dict]:
        """Every document with its chunk count, by path (`GET /v1/documents`)."""
        rows = self.db.execute(
            "SELECT d.path, d.kind, d.title, d.pages, d.size, d.ingested_at, count(c.id) FROM documents d "
            "LEFT JOIN chunks c ON c.doc_id = d.id GROUP BY d.id ORDER BY d.path"
        )
        keys = ("path", "kind", "title", "pages", "size", "ingested_at", "chunks")
        return [dict(zip(keys, row)) for row in rows]

    def distinct_texts(self, after: int, limit: int) -> list[tuple[int, Chunk]]:
        """(vector id, the chunk that first holds it) for the next `limit` vectors after id `after`: each distinct
        embedded text once, as `reindex --reembed` embeds them again."""
        rows = self.db.execute(
            "SELECT v.id, c.text, c.page, c.line_start, c.line_end, c.heading, c.n_tokens FROM vectors v "
            "JOIN chunks c ON c.id = (SELECT min(id) FROM chunks WHERE vector_id = v.id) "
            "WHERE v.id > ? ORDER BY v.id LIMIT ?",
            [after, limit],
        ).fetchall()
        return [(r[0], Chunk(r[1], r[2], r[3], r[4], r[5], r[6] or 0)) for r in rows]

    def replace_vectors(self, pairs: Iterable[tuple[int, np.ndarray]]) -> None:
        """Store new vectors for existing vector rows (inside write(): a re-embed changes every row at once)."""
        self.db.conn.executemany(
            "UPDATE vectors SET vector = ? WHERE id = ?",
            [(np.asarray(v, dtype=np.float32).tobytes(), vid) for vid, v in pairs],
        )
