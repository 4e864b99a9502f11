"""Vector index: hnswlib (cosine) keyed by vector id, a cache of SQLite that is repaired or rebuilt from it.

Identical chunk texts share one vector row in SQLite, so the graph holds each distinct vector once: thousands of
copies of one chunk would otherwise fill the neighbour lists with equal points and hide everything else."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from deepkb import faults
from deepkb.storage.catalog import Store

INDEX_FILE = "vectors.hnsw"
SIDECAR_FILE = "vectors.json"
EXACT_SCAN = 5_000  # a scope with at most this many vectors is searched exactly (read from SQLite: ~8 MB at most)
KEYS = "vector-id"  # what the labels are; an index file labelled by chunk id (schema < 4) is rebuilt


class VectorIndex:
    """HNSW over the distinct chunk vectors. Deleted vectors are marked deleted and their slots reused by new ones."""

    def __init__(self, home: Path, dim: int, m: int = 16, ef_construction: int = 200, ef_search: int = 96) -> None:
        import hnswlib

        self.home, self.dim = home, dim
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search
        self._hnswlib = hnswlib
        self.index = self._empty(1024)
        self.live: set[int] = set()
        self.epoch = -1  # the store epoch this index reflects
        self.state = "new"  # how it was opened: loaded | repaired | rebuilt | new

    def _empty(self, capacity: int):
        index = self._hnswlib.Index(space="cosine", dim=self.dim)
        index.init_index(
            max_elements=capacity, ef_construction=self.ef_construction, M=self.m, allow_replace_deleted=True
        )
        index.set_ef(self.ef_search)
        return index

    @classmethod
    def open(cls, home: Path, store: Store, dim: int, **params: int) -> VectorIndex:
        """Load the saved index; repair it from SQLite when it lags, rebuild it when it is missing or broken."""
        self = cls(home, dim, **params)
        epoch = store.epoch()
        if self._load():
            if self.epoch != epoch:
                self.repair(store)
                self.state = "repaired"
            else:
                self.state = "loaded"
            self.epoch = epoch
        else:
            self.rebuild(store)
            self.state = "rebuilt" if self.live else "new"
        return self

    def _load(self) -> bool:
        index_path, sidecar = self.home / INDEX_FILE, self.home / SIDECAR_FILE
        if not index_path.exists() or not sidecar.exists():
            return False
        try:
            meta = json.loads(sidecar.read_text())
            if meta["dim"] != self.dim or meta.get("keys") != KEYS:
                return False
            index = self._hnswlib.Index(space="cosine", dim=self.dim)
            index.load_index(str(index_path), max_elements=meta["capacity"], allow_replace_deleted=True)
            index.set_ef(self.ef_search)
            live = set(meta["live"])
        except (OSError, ValueError, KeyError, RuntimeError, TypeError):
            return False
        if not live <= set(index.get_ids_list()):
            return False
        self.index, self.live, self.epoch = index, live, int(meta["epoch"])
        return True

    def rebuild(self, store: Store) -> None:
        """Build the whole index again from the vectors stored in SQLite."""
        total = store.facts()["vectors"]
        self.index = self._empty(max(1024, int(total * 1.25)))
        self.live = set()
        for ids, vectors in store.iter_vectors():
            self.add(ids, vectors)
        self.epoch = store.epoch()

    def repair(self, store: Store) -> None:
        """Bring a lagging index in step with SQLite: add what it lacks, drop what SQLite no longer has."""
        truth = store.all_vector_ids()
        self.delete(self.live - truth)
        missing = truth - self.live
        for ids, vectors in store.iter_vectors(missing):
            self.add(ids, vectors)

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        if not len(ids):
            return
        needed = len(self.live) + len(ids)
        capacity = self.index.get_max_elements()
        if needed > capacity:
            self.index.resize_index(max(needed, capacity * 2))
        self.index.add_items(np.asarray(vectors, dtype=np.float32), np.asarray(ids), replace_deleted=True)
        self.live.update(int(i) for i in ids)

    def delete(self, ids: Sequence[int] | set[int]) -> None:
        for chunk_id in ids:
            if chunk_id in self.live:
                try:
                    self.index.mark_deleted(int(chunk_id))
                except RuntimeError:  # already deleted in a newer file than the sidecar that listed it
                    pass
                self.live.discard(chunk_id)

    def query(
        self,
        vector: np.ndarray,
        k: int,
        allowed: Collection[int] | None = None,
        vectors: tuple[list[int], np.ndarray] | None = None,
    ) -> list[tuple[int, float]]:
        """Nearest vectors as (vector id, cosine similarity), best first (Store.chunks_for_vectors maps them).

        A scoped search passes the ids it may return: `vectors` (those ids with their stored vectors, when the scope
        holds at most EXACT_SCAN) are compared one by one, exactly; else `allowed` filters hnswlib's graph walk."""
        vector = np.asarray(vector, dtype=np.float32)
        if vectors is not None:
            ids, matrix = vectors
            if not ids:
                return []
            sims = matrix @ (vector / (np.linalg.norm(vector) or 1.0))
            top = np.argsort(-sims, kind="stable")[:k]
            return [(int(ids[i]), float(sims[i])) for i in top]
        if allowed is not None:
            keep = allowed if isinstance(allowed, (set, frozenset)) else set(allowed)
            k = min(k, len(keep & self.live) if len(keep) < len(self.live) else len(self.live))
        else:
            k = min(k, len(self.live))
        if k <= 0:
            return []
        # ef stays as set once: searches share this index under a read lock, and hnswlib searches with max(ef, k)
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        if allowed is None:
            labels, distances = self.index.knn_query(query, k=k)
        else:
            try:
                labels, distances = self.index.knn_query(query, k=k, num_threads=1, filter=keep.__contains__)
            except RuntimeError:  # the walk found fewer than k in scope: ask for as many as it can find
                labels, distances = self._fewer(query, k, keep)
        return [(int(i), float(1.0 - d)) for i, d in zip(labels[0], distances[0])]

    def _fewer(self, query: np.ndarray, k: int, keep: set[int]):
        while k > 1:
            k //= 2
            try:
                return self.index.knn_query(query, k=k, num_threads=1, filter=keep.__contains__)
            except RuntimeError:
                continue
        return np.empty((1, 0), dtype=np.uint64), np.empty((1, 0), dtype=np.float32)

    def save(self, epoch: int) -> None:
        """Write the index atomically: a kill leaves the old files or the new ones, never half of one."""
        index_path, sidecar = self.home / INDEX_FILE, self.home / SIDECAR_FILE
        tmp_index, tmp_sidecar = index_path.with_suffix(".hnsw.tmp"), sidecar.with_suffix(".json.tmp")
        try:
            self.index.save_index(str(tmp_index))
            _check_room(tmp_index)
            meta = {
                "epoch": epoch,
                "dim": self.dim,
                "keys": KEYS,
                "capacity": self.index.get_max_elements(),
                "live": sorted(self.live),
            }
            tmp_sidecar.write_text(json.dumps(meta))
            for tmp in (tmp_index, tmp_sidecar):
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
        except BaseException:  # a full disk: no half-written file stays behind to take the room
            for tmp in (tmp_index, tmp_sidecar):
                tmp.unlink(missing_ok=True)
            raise
        faults.checkpoint("index-written")
        os.replace(tmp_index, index_path)
        faults.checkpoint("index-replaced")
        os.replace(tmp_sidecar, sidecar)
        self.epoch = epoch


def _check_room(path: Path) -> None:
    """hnswlib does not check its writes: on a full disk it leaves a truncated file and says nothing."""
    st = os.statvfs(path)
    if st.f_bavail == 0 or st.f_bfree == 0:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (writing {path.name})")
