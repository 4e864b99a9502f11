"""Incremental sync: walk the folders, find what changed, and re-embed only text that is new.

Rules, cheapest first: a file whose size and mtime are unchanged is not read; a file whose content hash is
unchanged is not re-chunked; a file whose content matches a document that vanished is a rename (a path update,
no embedding); in a changed file only chunks whose text is new are embedded (equal text reuses its stored
vector); documents that vanished under an ingested root are removed. Every write is an SQLite transaction, and
the vector index is saved atomically after them, so a kill at any moment leaves a consistent knowledge base.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deepkb import faults
from deepkb.checksum import file_sha256
from deepkb.errors import LoadError
from deepkb.ingest.chunker import Chunk, chunk_units
from deepkb.ingest.scan import Skipped, resolve_roots, scan
from deepkb.loaders import load, precheck
from deepkb.storage.errors import explain, human_bytes

if TYPE_CHECKING:
    from deepkb.config import Settings
    from deepkb.embedders import Embedder
    from deepkb.storage.catalog import Store
    from deepkb.storage.storage import Storage

# Bump when loaders or the chunker change what they produce: older documents are then re-chunked on the next
# sync (their unchanged chunk texts keep their stored vectors).
PIPELINE_VERSION = 5


@dataclass
class Change:
    """One document-level change, as `deepkb watch` prints it."""

    action: str  # added | updated | renamed | removed
    path: str
    chunks: int = 0
    old_path: str | None = None


@dataclass
class IngestReport:
    """The outcome of one sync; `to_json` is the `deepkb ingest --json` contract."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    renamed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[Skipped] = field(default_factory=list)  # ingested, but not all of it (a PDF page that failed)
    chunks_embedded: int = 0
    chunks_reused: int = 0
    seconds: float = 0.0
    changes: list[Change] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Where the time went: scan, read_chunk, embed, store (SQLite with its FTS5 index), index (HNSW)."""

    def to_json(self) -> dict:
        data = asdict(self)
        data["changes"] = [asdict(c) for c in self.changes]
        return data


class Progress:
    """Receives progress while ingesting; the CLI draws it, the library default ignores it."""

    def scanned(self, files_to_read: int, files_total: int) -> None: ...

    def file_done(self, path: str, chunks: int) -> None: ...

    def embedded(self, texts: int) -> None: ...


class _Stages:
    """Adds up wall time per stage of one sync, into IngestReport.stage_seconds."""

    def __init__(self, totals: dict[str, float]) -> None:
        self.totals = totals

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - started


@dataclass(frozen=True)
class _Run:
    """What one sync works with: the storage it writes, the embedder and the settings (chunk sizes, batches)."""

    storage: Storage
    embedder: Embedder
    settings: Settings

    @property
    def store(self) -> Store:
        return self.storage.store

    @property
    def model(self) -> tuple[str, int]:
        """What the first write records: the embedding model's name and dimension."""
        return self.embedder.name, self.embedder.dim


@dataclass
class _Pending:
    path: str
    stat: os.stat_result
    sha256: str
    fields: dict
    chunks: list[Chunk]
    action: str


def sync(
    storage: Storage,
    embedder: Embedder,
    settings: Settings,
    paths: Sequence[str | os.PathLike],
    progress: Progress | None = None,
) -> IngestReport:
    """Bring the knowledge base in step with the given files and folders (the caller holds the writer lock).

    A storage failure (full disk, damaged database) ends the sync with one sentence that says what was stored
    before it: each batch is its own transaction, so those files stay, and a rerun goes on from there.
    """
    report = IngestReport()
    todo: dict[str, int] = {}  # files to read and store -> their size
    try:
        return _sync(_Run(storage, embedder, settings), paths, progress or Progress(), report, todo)
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        done = {c.path for c in report.changes}
        left = {p: size for p, size in todo.items() if p not in done}
        stored = report.added + report.updated
        kept = f"this run stored {stored} new or changed files before it stopped" + (
            f", {len(left)} ({human_bytes(sum(left.values()))}) are still to do" if left else ""
        )
        needed = _room_needed(storage, settings, sum(left.values()))
        error = explain(exc, storage.home, kept=kept, needed_bytes=needed)
        if error is None or error is exc:
            raise
        raise error from exc


def _room_needed(storage: Storage, settings: Settings, source_bytes: int) -> int:
    """About how much disk the rest of a sync needs: this KB's own bytes per source byte, plus one transaction."""
    try:
        stored = storage.store.db.execute("SELECT coalesce(sum(size), 0) FROM documents").fetchone()[0]
        used = sum(p.stat().st_size for p in storage.home.iterdir() if p.is_file())
    except (sqlite3.Error, OSError):
        stored = used = 0
    ratio = min(max(used / stored, 1.0), 20.0) if stored > 100_000 else 4.0
    one_commit = settings.chunks_per_commit * 4096 * 2  # text, FTS5 and vector of each chunk, and its WAL copy
    return int(source_bytes * ratio) + one_commit


def _sync(
    run: _Run, paths: Sequence[str | os.PathLike], progress: Progress, report: IngestReport, todo: dict
) -> IngestReport:
    started = time.perf_counter()
    stage = _Stages(report.stage_seconds)
    roots = resolve_roots(paths)
    with stage("scan"):
        files, known, candidates, touched, renames, vanished = _compare(run, roots, report)
    store = run.store
    if touched or renames or vanished:
        with run.storage.write(timed=stage) as changes:
            for doc_id, st in touched:
                store.touch_document(doc_id, st.st_size, st.st_mtime_ns)
            for doc_id, old, new, st in renames:
                store.rename_document(doc_id, new, st.st_size, st.st_mtime_ns)
                report.changes.append(Change("renamed", new, len(store.chunk_ids(doc_id)), old))
            for path, doc in vanished.items():
                changes.removed += store.remove_document(doc.id)
                report.changes.append(Change("removed", path))
                faults.checkpoint("removing")
        report.renamed, report.removed = len(renames), len(vanished)

    todo.update((path, st.st_size) for path, (st, _) in candidates.items())
    progress.scanned(len(candidates), len(files))
    pending: list[_Pending] = []
    pending_chunks = 0
    for path, (st, _) in candidates.items():
        with stage("read_chunk"):
            item = _prepare(run, path, st, action="updated" if path in known else "added", report=report)
        if item is None:
            progress.file_done(path, 0)
            continue
        pending.append(item)
        pending_chunks += len(item.chunks)
        if pending_chunks >= run.settings.chunks_per_commit:
            _commit(run, pending, report, progress, stage)
            pending, pending_chunks = [], 0
    _commit(run, pending, report, progress, stage)
    if run.storage.index_dirty:
        with stage("index"):
            run.storage.save_index()
    report.seconds = round(time.perf_counter() - started, 3)
    report.stage_seconds = {name: round(value, 3) for name, value in report.stage_seconds.items()}
    return report


def _compare(run: _Run, roots: list[Path], report: IngestReport) -> tuple:
    """Walk the roots and sort every file into unchanged, touched (same content), renamed or to be read."""
    files = dict(scan(roots, skip=[run.storage.home], skipped=report.skipped))
    faults.checkpoint("scanned")
    store = run.store
    known = store.documents_under([str(r) for r in roots])
    failures = store.failures_under([str(r) for r in roots])

    candidates: dict[str, tuple[os.stat_result, str]] = {}  # changed or new files, with their content hash
    touched: list[tuple[int, os.stat_result]] = []
    for path, st in files.items():
        doc = known.get(path)
        current = doc is not None and doc.pipeline == PIPELINE_VERSION
        if current and doc.size == st.st_size and doc.mtime_ns == st.st_mtime_ns:
            report.unchanged += 1
            continue
        failed = failures.get(path)
        if failed and failed[:2] == (st.st_size, st.st_mtime_ns):  # the same bad file as last time: not read again
            report.skipped.append(Skipped(path, failed[2]))
            continue
        try:
            precheck(Path(path), st.st_size)
            sha = file_sha256(path)
        except LoadError as exc:
            report.skipped.append(Skipped(path, str(exc)))
            continue
        except OSError as exc:
            report.skipped.append(Skipped(path, f"unreadable ({exc.strerror or exc})"))
            continue
        if current and doc.sha256 == sha:
            touched.append((doc.id, st))
            report.unchanged += 1
        else:
            candidates[path] = (st, sha)

    # The files of an unreadable folder, or a file that cannot be read now, are not "vanished": they keep their
    # indexed version until they can be read again.
    skipped_paths = {s.path for s in report.skipped}
    unreadable = tuple(s.path + os.sep for s in report.skipped if s.reason.startswith("unreadable folder"))
    vanished = {
        p: d for p, d in known.items() if p not in files and p not in skipped_paths and not p.startswith(unreadable)
    }
    by_sha: dict[str, list[str]] = {}
    for p, d in vanished.items():
        by_sha.setdefault(d.sha256, []).append(p)
    renames: list[tuple[int, str, str, os.stat_result]] = []
    for path, (st, sha) in list(candidates.items()):
        if path in known:
            continue
        source = next((vanished[p] for p in by_sha.get(sha, ()) if p in vanished), None)
        if source is None:  # moved in from a folder not being synced now
            source = next((d for d in store.documents_with_sha(sha) if not os.path.exists(d.path)), None)
        if source is not None:
            vanished.pop(source.path, None)
            renames.append((source.id, source.path, path, st))
            del candidates[path]

    for path in failures.keys() - files.keys():
        store.set_failure(path, 0, 0, None)
    return files, known, candidates, touched, renames, vanished


def _prepare(run: _Run, path: str, st: os.stat_result, action: str, report: IngestReport) -> _Pending | None:
    """Read, load and chunk one file; a bad file becomes a Skipped entry and None."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None  # vanished between the scan and now: the next sync removes it
    except OSError as exc:
        report.skipped.append(Skipped(path, f"unreadable ({exc.strerror or exc})"))
        return None
    try:
        doc = load(Path(path), data)
    except Exception as exc:  # LoadError, or a parser bug on one odd file: neither may stop the run
        reason = str(exc) if isinstance(exc, LoadError) else f"could not parse ({type(exc).__name__}: {exc})"
        report.skipped.append(Skipped(path, reason))
        run.store.set_failure(path, st.st_size, st.st_mtime_ns, reason)
        return None
    note = doc.failure_note()
    if note:
        report.warnings.append(Skipped(path, f"{note}; the other pages are indexed"))
    embedder = run.embedder
    s = run.settings
    chunks = chunk_units(doc.units, embedder.count_tokens, embedder.max_tokens, s.chunk_tokens, s.overlap_tokens)
    fields = {
        "path": path,
        "size": len(data),
        "mtime_ns": st.st_mtime_ns,
        "sha256": hashlib.sha256(data).hexdigest(),
        "kind": doc.kind,
        "title": doc.title,
        "encoding": doc.encoding,
        "pages": doc.pages,
        "empty_pages": json.dumps(doc.empty_pages) if doc.empty_pages else None,
        "ingested_at": time.time(),
        "pipeline": PIPELINE_VERSION,
    }
    if len(data) != st.st_size:  # written to while we read it: record what we read, resync on the next change
        fields["mtime_ns"] = 0
    return _Pending(path, st, fields["sha256"], fields, chunks, action)


def embed_chunks(
    embedder: Embedder, chunks: Sequence[Chunk], batch: int, progress: Progress | None = None
) -> dict[str, np.ndarray]:
    """Embed each distinct chunk text once: content hash -> vector (ingest and `reindex --reembed` share this).

    One embed call per model batch, of chunks sorted by their exact token count: each forward pass pads to its
    longest text, and a larger call would be re-sorted by character length inside sentence-transformers.
    """
    distinct = sorted({c.hash: c for c in chunks}.values(), key=lambda c: c.n_tokens)
    vectors: dict[str, np.ndarray] = {}
    for i in range(0, len(distinct), batch):
        part = distinct[i : i + batch]
        for chunk, vector in zip(part, embedder.embed([c.embed_text for c in part])):
            vectors[chunk.hash] = vector
        if progress:
            progress.embedded(len(part))
    return vectors


def _commit(run: _Run, pending: list[_Pending], report: IngestReport, progress: Progress, stage: _Stages) -> None:
    """Embed what is new in a batch of files, then store them all in one transaction."""
    if not pending:
        return
    store, embedder = run.store, run.embedder
    all_chunks = [c for p in pending for c in p.chunks]
    with stage("store"):
        stored = store.vectors_for_hashes(c.hash for c in all_chunks)
    vectors = {h: np.frombuffer(v, dtype=np.float32) for h, v in stored.items()}
    new = [c for c in all_chunks if c.hash not in vectors]
    with stage("embed"):
        fresh = embed_chunks(embedder, new, run.settings.embed_batch_size, progress)
    vectors.update(fresh)
    report.chunks_embedded += len(fresh)
    report.chunks_reused += len(all_chunks) - len(new)
    faults.checkpoint("embedded")
    # the index is brought in step first ("index"), then "store" times the transaction alone
    with run.storage.write(run.model, timed=stage) as changes:
        for item in pending:
            matrix = np.array([vectors[c.hash] for c in item.chunks], dtype=np.float32).reshape(-1, embedder.dim)
            gone, new_vectors = store.put_document(item.fields, item.chunks, matrix)
            store.set_failure(item.path, 0, 0, None)
            changes.removed += gone
            changes.added += new_vectors
            faults.checkpoint("in-transaction")
    faults.checkpoint("committed")
    for item in pending:
        setattr(report, item.action, getattr(report, item.action) + 1)
        report.changes.append(Change(item.action, item.path, len(item.chunks)))
        progress.file_done(item.path, len(item.chunks))
