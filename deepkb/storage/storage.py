"""Storage: one KB folder's SQLite catalog (the truth), its HNSW index (a cache of it) and its writer lock.

Every change goes through `write()`: one SQLite transaction, then the vector changes it made, applied to the index
once it has committed (the one place that happens). Searches run from any number of threads while one writer
changes the knowledge base: each thread reads SQLite through its own connection (WAL: committed data only), and the
HNSW graph changes only while no search is inside it. The index is opened, and brought in step with what another
process committed, by `sync_index()`: when storage is opened for a read or a write, never behind a reader's back.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepkb.errors import LockedError
from deepkb.storage.catalog import Store
from deepkb.storage.vectors import INDEX_FILE, SIDECAR_FILE, VectorIndex

LOCK_FILE = "writer.lock"


@dataclass
class IndexChanges:
    """What one transaction did to the stored vectors: what the HNSW index drops and adds once it commits."""

    removed: list[int] = field(default_factory=list)  # vector ids no chunk refers to any more
    added: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (vector id, vector) new to the store


class ReadWriteLock:
    """Many readers or one writer. A waiting writer goes first, so a stream of searches cannot starve a sync.

    Not re-entrant: a thread holding it never asks for it again."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


def _untimed(stage: str) -> AbstractContextManager:
    return nullcontext()


class Storage:
    """The stores of one KB folder, safe to share between threads (one writer at a time, any number of readers)."""

    def __init__(self, home: Path, *, m: int = 16, ef_construction: int = 200, ef_search: int = 96) -> None:
        self.home = home
        self.store = Store(home)
        self._params = {"m": m, "ef_construction": ef_construction, "ef_search": ef_search}
        self._index: VectorIndex | None = None
        self._rw = ReadWriteLock()  # readers: searches and saves; writer: any change to the HNSW graph
        self._saving = threading.Lock()
        # One thread of this object writes at a time: writer() holds it (re-entrant for that thread).
        self._writing = threading.RLock()
        self._flags = threading.Lock()  # guards _applying, index_dirty, _lock_fd and _holds
        self._applying = False  # our own transaction is open: the index follows it on commit, no repair needed
        self._lock_fd: int | None = None  # the inter-process lock file, held while _holds > 0
        self._holds = 0  # hold() calls in effect: writer() calls and a watcher's lifetime hold
        self._dirty = False  # the index holds changes its file does not

    @property
    def index_dirty(self) -> bool:
        """The index holds changes its file does not."""
        with self._flags:
            return self._dirty

    def _set(self, *, applying: bool | None = None, dirty: bool | None = None) -> None:
        with self._flags:
            if applying is not None:
                self._applying = applying
            if dirty is not None:
                self._dirty = dirty

    def _is_applying(self) -> bool:
        with self._flags:
            return self._applying

    def close(self) -> None:
        """Release the writer lock and close every connection, once the searches in flight are done."""
        with self._rw.exclusive():
            with self._flags:
                self._holds = 0
                self._release_lock()
            self.store.close()

    @property
    def dim(self) -> int | None:
        """The recorded embedding dimension; None until the first document is stored."""
        recorded = self.store.get_meta("embedding_dim")
        return int(recorded) if recorded else None

    # the vector index ------------------------------------------------------------------------------------
    def sync_index(self, dim: int | None = None) -> VectorIndex | None:
        """Open the vector index (loaded, repaired or rebuilt from SQLite), or bring it in step with what another
        process committed since. `dim` serves a knowledge base with nothing recorded yet; None when neither is."""
        index = self._index
        if index is not None and (self._is_applying() or index.epoch == self.store.epoch()):
            return index
        dim = self.dim or dim
        if index is None and dim is None:
            return None
        opened = False
        with self._rw.exclusive():
            if self._index is None:
                self._index = VectorIndex.open(self.home, self.store, dim, **self._params)
                opened = self._index.state in ("repaired", "rebuilt")
                self._set(dirty=opened)
            elif not self._is_applying() and self._index.epoch != (epoch := self.store.epoch()):
                self._index.repair(self.store)  # a commit during the repair leaves the epoch behind: repaired again
                self._index.epoch = epoch
        if opened:
            self._try_save()  # clears index_dirty itself, under the lock: a write landing meanwhile keeps it set
        return self._index

    @contextmanager
    def reading(self) -> Iterator[VectorIndex | None]:
        """The vector index, in step with SQLite and held still for one search (None before anything is stored)."""
        self.sync_index()
        with self._rw.shared():
            yield self._index

    def save_index(self) -> None:
        """Write the index file for the epoch it reflects (atomically: see VectorIndex.save)."""
        with self._saving, self._rw.shared():  # no change meanwhile, and one writer of the files at a time
            if self._index is not None:
                self._index.save(self._index.epoch)
            self._set(dirty=False)  # no write can apply meanwhile: this thread holds the read side

    def rebuild_index(self, dim: int | None = None) -> None:
        """Build the index again from the vectors in SQLite, and save it."""
        if self.sync_index(dim) is None:
            return
        with self._rw.exclusive():
            self._index.rebuild(self.store)
        self.save_index()

    def drop_index(self) -> None:
        """Forget the index and its files (every vector changed): the next sync_index() builds it from SQLite."""
        with self._rw.exclusive():
            self._index = None
            for name in (INDEX_FILE, SIDECAR_FILE):
                (self.home / name).unlink(missing_ok=True)

    def _try_save(self) -> bool:
        """Save a repaired index if no other process is writing; readers never wait."""
        with self._flags:
            held = self._holds > 0
        if held:  # this object writes (a watcher, or the thread that opened it inside write())
            self.save_index()
            return True
        try:
            with self.writer("repairing the vector index"):
                self.save_index()
            return True
        except (LockedError, OSError, RuntimeError):  # another writer, or a read-only or full disk: stays a cache
            return False

    # changes ----------------------------------------------------------------------------------------------
    @contextmanager
    def write(
        self,
        model: tuple[str, int] | None = None,
        timed: Callable[[str], AbstractContextManager] = _untimed,
        vectors: bool = True,
    ) -> Iterator[IndexChanges]:
        """One SQLite transaction. The vector ids the caller records in the IndexChanges it yields are dropped from
        and added to the HNSW index once it commits. The first write records `model` (name, dimension).

        `timed(stage)` measures the transaction as "store" and the index work as "index" (ingest's stage times).
        `vectors` False: a change that cannot touch a vector (the roots, remembered failures) is the transaction
        alone, and leaves the vector index (and its saved file) in step.
        """
        if not vectors:
            with timed("store"), self.store.write(advance_epoch=False):
                yield IndexChanges()
            return
        with timed("index"):
            self.sync_index(model[1] if model else None)
        changes = IndexChanges()
        self._set(applying=True)
        try:
            with timed("store"), self.store.write():
                if model and not self.store.get_meta("embedding_model"):
                    self.store.set_meta("embedding_model", model[0])
                    self.store.set_meta("embedding_dim", str(model[1]))
                yield changes
            with timed("index"), self._rw.exclusive():
                if self._index is not None:
                    self._index.delete(changes.removed)
                    if changes.added:
                        self._index.add([i for i, _ in changes.added], np.vstack([v for _, v in changes.added]))
                    self._index.epoch = self.store.epoch()
                    self._set(dirty=True)
        finally:
            self._set(applying=False)

    # the single-writer lock -------------------------------------------------------------------------------
    @contextmanager
    def writer(self, what: str | None = None) -> Iterator[None]:
        """Hold the KB's writer lock: two writers (two watches, watch + ingest, two threads of this object) never
        interleave. Another process is refused at once (LockedError); another thread of this object waits."""
        with self._writing, self.hold(what):
            yield

    @contextmanager
    def hold(self, what: str | None = None) -> Iterator[None]:
        """Keep other processes from writing while this object lives on (a watcher holds it from start to stop);
        its threads still take writer() for each change."""
        with self._flags:
            if self._holds == 0:
                self._lock_fd = self._acquire(what)
            self._holds += 1
        try:
            yield
        finally:
            with self._flags:
                self._holds = max(0, self._holds - 1)  # close() may have released it already
                if self._holds == 0:
                    self._release_lock()

    def _acquire(self, what: str | None) -> int:
        """Take the lock file (flock, released by the kernel if the process dies); LockedError names its holder."""
        fd = os.open(self.home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace")
            os.close(fd)
            raise LockedError(_describe_holder(holder, self.home)) from None
        os.ftruncate(fd, 0)
        info = {
            "pid": os.getpid(),
            "command": what or " ".join(Path(a).name for a in sys.argv[:3]),
            "since": time.time(),
        }
        os.write(fd, json.dumps(info).encode())
        return fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


def _describe_holder(raw: str, home: Path) -> str:
    try:
        info = json.loads(raw)
        since = time.strftime("%H:%M:%S", time.localtime(info["since"]))
        who = f"process {info['pid']} ({info['command']}, since {since})"
    except (ValueError, KeyError, TypeError):
        who = "another process"
    return f"{who} is writing to the knowledge base at {home}; wait for it to finish or stop it, then retry."
