"""Incremental sync: walk the folders, find what changed, and re-embed only text that is new.

Rules, cheapest first: a file whose size and mtime are unchanged is not read; a file whose content hash is
unchanged is not re-chunked; a file whose content matches a document that vanished is a rename (a path update,
no embedding); in a changed file only chunks whose text is new are embedded (equal text reuses its stored
vector); documents that vanished under an ingested root are removed. Every write is an SQLite transaction, and
the vector index is saved atomically after them, so a kill at any moment leaves a consistent knowledge base.

The engine is kept busy: a reader thread (deepkb.ingest.reader) reads each changed file once (one read, one
hash), loads and chunks it while the caller embeds and stores the files before it; each transaction holds a batch
of files (`chunks_per_commit`) with their touches, renames and failures.
"""

from __future__ import annotations

import functools
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
from deepkb.errors import LoadError
from deepkb.ingest.reader import PIPELINE_VERSION, _load, _Pending, _Read, _Reader
from deepkb.ingest.scan import Skipped, resolve_roots, scan
from deepkb.loaders import OCR_HINT, precheck
from deepkb.loaders.ocr import tesseract
from deepkb.storage.errors import explain, human_bytes
from deepkb.types import Chunk

if TYPE_CHECKING:
    from deepkb.config import Settings
    from deepkb.embedders import Embedder
    from deepkb.storage.catalog import Store
    from deepkb.storage.storage import Storage

# PIPELINE_VERSION (bumped when the loaders or the chunker change what they produce) lives in deepkb.ingest.reader,
# which runs them; documents chunked by an older one are re-chunked here.


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

    def to_read(self, sizes: dict[str, int]) -> None:
        """The files about to be read, with their sizes in bytes (a progress display estimates the time left)."""

    def file_done(self, path: str, chunks: int) -> None: ...

    def embedded(self, texts: int) -> None: ...

    def ocr_page(self, path: str, done: int, total: int) -> None:
        """A scanned PDF page was OCR'd (seconds each): `done` of the file's `total` pages without a text layer."""

    def tokens_embedded(self, tokens: int) -> None:
        """Model tokens in the texts just embedded (a progress display shows tokens/s)."""


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
    progress: Progress | None = None  # the reader thread reports OCR'd pages to it

    @property
    def store(self) -> Store:
        return self.storage.store

    @property
    def model(self) -> tuple[str, int]:
        """What the first write records: the embedding model's name and dimension."""
        return self.embedder.name, self.embedder.dim


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
        return _sync(_Run(storage, embedder, settings, progress), paths, progress or Progress(), report, todo)
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
        stored = storage.store.facts()["source_bytes"]
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
        plan = _compare(run, roots, report)
    todo.update((path, st.st_size) for path, st in plan.candidates.items())
    progress.scanned(len(plan.candidates), len(plan.files))
    progress.to_read(dict(todo))
    batch = _Batch()
    reader = _Reader(run, plan)
    try:
        for item in reader:
            with stage("read_chunk"):  # what the reader thread did not do: a rename's lookup, a rare late chunking
                _sort(run, plan, item, batch, report)
            if batch.chunks >= run.settings.chunks_per_commit:
                _commit(run, batch, report, progress, stage)
                batch = _Batch()
        _commit(run, batch, report, progress, stage)
    finally:
        reader.stop()
    report.stage_seconds["read_chunk"] = report.stage_seconds.get("read_chunk", 0.0) + reader.seconds
    report.stage_seconds["read_wait"] = reader.waited
    vanished = {p: d for p, d in plan.vanished.items() if p not in plan.claimed}
    if vanished:
        with run.storage.write(timed=stage) as changes:
            for path, doc in vanished.items():
                changes.removed += run.store.remove_document(doc.id)
                report.changes.append(Change("removed", path))
                faults.checkpoint("removing")
        report.removed = len(vanished)
    if run.storage.index_dirty:
        with stage("index"):
            run.storage.save_index()
    report.seconds = round(time.perf_counter() - started, 3)
    report.stage_seconds = {name: round(value, 3) for name, value in report.stage_seconds.items()}
    return report


@dataclass
class _Plan:
    """What the walk found, before any file is read: which files to read, and what their content may turn out to be."""

    files: dict[str, os.stat_result]
    known: dict  # path -> DocumentRow of the documents under the roots
    candidates: dict[str, os.stat_result]  # changed or new files, to be read once by the reader thread
    vanished: dict  # path -> DocumentRow no longer on disk (a rename's source, until a read file claims it)
    claimed: set[str] = field(default_factory=set)  # vanished paths that turned out to be renamed
    ocr_due: set[str] = field(default_factory=set)  # unchanged PDFs read again: tesseract can read their scans now

    def same_content_possible(self, path: str) -> set[str]:
        """Hashes that would make reading this file pointless to chunk: its own stored one, or a vanished file's."""
        doc = self.known.get(path)
        if path in self.ocr_due:
            return set()
        if doc is not None:
            return {doc.sha256} if doc.pipeline == PIPELINE_VERSION else set()
        return set(self.vanished_hashes)

    @functools.cached_property
    def vanished_hashes(self) -> dict[str, list]:
        """Content hash -> the vanished documents that held it."""
        by_sha: dict[str, list] = {}
        for doc in self.vanished.values():
            by_sha.setdefault(doc.sha256, []).append(doc)
        return by_sha

    def claim(self, sha256: str) -> object | None:
        """A vanished document with this content, not yet claimed by another file: the source of a rename."""
        source = next((d for d in self.vanished_hashes.get(sha256, ()) if d.path not in self.claimed), None)
        if source is not None:
            self.claimed.add(source.path)
        return source


def _compare(run: _Run, roots: list[Path], report: IngestReport) -> _Plan:
    """Walk the roots and sort every file by its size and mtime alone: unchanged, a known failure, or to be read."""
    files = dict(scan(roots, skip=[run.storage.home], skipped=report.skipped))
    faults.checkpoint("scanned")
    store = run.store
    known = store.documents_under([str(r) for r in roots])
    failures = store.failures_under([str(r) for r in roots])
    # tesseract installed since a PDF was read: its scanned pages are read now (their size and mtime did not change)
    ocr_now = tesseract() is not None
    awaiting_ocr = store.pdfs_awaiting_ocr([str(r) for r in roots]) if ocr_now else set()
    ocr_due: set[str] = set()

    candidates: dict[str, os.stat_result] = {}
    for path, st in files.items():
        doc = known.get(path)
        current = doc is not None and doc.pipeline == PIPELINE_VERSION
        due = path in awaiting_ocr
        if current and doc.size == st.st_size and doc.mtime_ns == st.st_mtime_ns and not due:
            report.unchanged += 1
            continue
        failed = failures.get(path)
        due = due or bool(failed and ocr_now and OCR_HINT in failed[2])
        if failed and failed[:2] == (st.st_size, st.st_mtime_ns) and not due:  # the same bad file: not read again
            report.skipped.append(Skipped(path, failed[2]))
            continue
        if due:
            ocr_due.add(path)
        try:
            precheck(Path(path), st.st_size)
        except LoadError as exc:
            report.skipped.append(Skipped(path, str(exc)))
            continue
        candidates[path] = st

    # The files of an unreadable folder, or a file that cannot be read now, are not "vanished": they keep their
    # indexed version until they can be read again.
    skipped_paths = {s.path for s in report.skipped}
    unreadable = tuple(s.path + os.sep for s in report.skipped if s.reason.startswith("unreadable folder"))
    vanished = {
        p: d for p, d in known.items() if p not in files and p not in skipped_paths and not p.startswith(unreadable)
    }
    if forgotten := failures.keys() - files.keys():  # failed files that are gone: every change through write()
        with run.storage.write(vectors=False):
            for path in forgotten:
                store.set_failure(path, 0, 0, None)
    return _Plan(files, known, candidates, vanished, ocr_due=ocr_due)


@dataclass
class _Batch:
    """What the next transaction writes: documents with their chunks, touched and renamed ones, failures."""

    pending: list[_Pending] = field(default_factory=list)
    touched: list[tuple[int, os.stat_result]] = field(default_factory=list)
    renames: list[tuple[int, str, str, os.stat_result]] = field(default_factory=list)
    failures: list[tuple[str, int, int, str]] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # files with nothing to embed, reported after the commit
    chunks: int = 0


def _sort(run: _Run, plan: _Plan, item: _Read, batch: _Batch, report: IngestReport) -> None:
    """Decide what a read file is: unchanged content (touched), a rename, a bad file, or a document to store."""
    path, st = item.path, item.st
    if item.skipped:
        report.skipped.append(item.skipped)
        if item.failure:
            batch.failures.append((path, st.st_size, st.st_mtime_ns, item.skipped.reason))
        batch.done.append(path)
        return
    if not item.sha256:  # vanished since the scan
        batch.done.append(path)
        return
    doc = plan.known.get(path)
    same = doc is not None and doc.pipeline == PIPELINE_VERSION and doc.sha256 == item.sha256
    if same and path not in plan.ocr_due:
        batch.touched.append((doc.id, st))
        report.unchanged += 1
        batch.done.append(path)
        return
    if doc is None:
        source = plan.claim(item.sha256)
        if source is None:  # moved in from a folder not being synced now
            source = next(
                (d for d in run.store.documents_with_sha(item.sha256)
                 if not os.path.exists(d.path) and d.path not in plan.claimed), None,
            )  # fmt: skip
            if source is not None:
                plan.claimed.add(source.path)
        if source is not None:
            batch.renames.append((source.id, source.path, path, st))
            batch.done.append(path)
            return
    if item.pending is None:  # its content looked stored, and is not after all: load the bytes already read
        _load(run, item, item.data or b"")
        item.data = None
        if item.skipped:
            _sort(run, plan, item, batch, report)
            return
    if item.warning:
        report.warnings.append(item.warning)
    item.pending.action = "updated" if doc is not None else "added"
    batch.pending.append(item.pending)
    batch.chunks += len(item.pending.chunks)


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
            progress.tokens_embedded(sum(c.n_tokens for c in part))
    return vectors


def _commit(run: _Run, batch: _Batch, report: IngestReport, progress: Progress, stage: _Stages) -> None:
    """Embed what is new in a batch of files, then store them, their renames, touches and failures in one
    transaction."""
    store, embedder = run.store, run.embedder
    pending = batch.pending
    all_chunks = [c for p in pending for c in p.chunks]
    fresh: dict[str, np.ndarray] = {}
    vectors: dict[str, np.ndarray] = {}
    if all_chunks:
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
    if not (pending or batch.touched or batch.renames or batch.failures):
        for path in batch.done:
            progress.file_done(path, 0)
        return
    # the index is brought in step first ("index"), then "store" times the transaction alone
    with run.storage.write(run.model if pending else None, timed=stage) as changes:
        for doc_id, st in batch.touched:
            store.touch_document(doc_id, st.st_size, st.st_mtime_ns)
        for doc_id, _old, new_path, st in batch.renames:
            store.rename_document(doc_id, new_path, st.st_size, st.st_mtime_ns)
        for path, size, mtime_ns, reason in batch.failures:
            store.set_failure(path, size, mtime_ns, reason)
        if pending and not store.get_meta("embedding_precision"):  # recorded with the first vectors, as the model is
            store.set_meta("embedding_precision", getattr(embedder, "precision", "f32"))
        for item in pending:
            matrix = np.array([vectors[c.hash] for c in item.chunks], dtype=np.float32).reshape(-1, embedder.dim)
            gone, new_vectors = store.put_document(item.fields, item.chunks, matrix)
            store.set_failure(item.path, 0, 0, None)
            changes.removed += gone
            changes.added += new_vectors
            faults.checkpoint("in-transaction")
    faults.checkpoint("committed")
    for doc_id, old, new_path, _ in batch.renames:
        report.renamed += 1
        report.changes.append(Change("renamed", new_path, len(store.chunk_ids(doc_id)), old))
    for path in batch.done:
        progress.file_done(path, 0)
    for item in pending:
        setattr(report, item.action, getattr(report, item.action) + 1)
        report.changes.append(Change(item.action, item.path, len(item.chunks)))
        progress.file_done(item.path, len(item.chunks))
