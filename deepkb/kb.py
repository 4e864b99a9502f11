"""KnowledgeBase: the one object the CLI, the TUI and the server call: ingest, search, remove, reindex, status."""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from deepkb.config import CONFIG_FILE, DEFAULT_EMBEDDING_MODEL, LIMITS, Settings
from deepkb.embedders import (
    Embedder,
    create_embedder,
    default_precision,
    model_name,
    openvino_rejection,
    pick_backend,
    resolve_backend,
)
from deepkb.errors import EmbeddingModelError, UsageError
from deepkb.ingest.sync import IngestReport, Progress, embed_chunks, sync
from deepkb.retrieval.passages import JOIN_WINDOW, join_neighbours
from deepkb.retrieval.rerank import rerank
from deepkb.retrieval.search import Hit, check_query, search
from deepkb.retrieval.twins import group_twins
from deepkb.scope import Scope, no_match_message
from deepkb.storage.errors import translated
from deepkb.storage.storage import Storage
from deepkb.storage.vectors import VectorIndex

TWIN_DEPTH = 3  # hits ranked per hit returned, so that k distinct passages remain after twins are folded
REEMBED_SLICE = 4096  # chunks read from SQLite at a time by `reindex --reembed`


def _storage_guarded(method):
    """A storage failure inside a KnowledgeBase call (damaged file, full or read-only disk) becomes one sentence."""

    @functools.wraps(method)
    def wrapper(self: KnowledgeBase, *args, **kwargs):
        with translated(self.home):
            return method(self, *args, **kwargs)

    return wrapper


class KnowledgeBase:
    """A folder holding the SQLite catalog (truth), the HNSW file (cache) and config.toml.

    The facade the shells call: it composes the storage (deepkb.storage.storage), the embedder, ingest and search."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None, check_model: bool = True) -> None:
        self.settings = settings
        self.home = settings.home
        self._embedder = embedder
        s = settings
        with translated(self.home):
            self.storage = Storage(
                self.home, m=s.hnsw_m, ef_construction=s.hnsw_ef_construction, ef_search=s.hnsw_ef_search
            )
            self.store = self.storage.store
            try:
                recorded = self.store.get_meta("embedding_model")
            except BaseException:
                self.store.close()
                raise
        wanted = embedder.name if embedder else settings.embedding_model
        # Both sides by name: an older deepkb recorded a known model's folder as given (`~/models/all-MiniLM-L6-v2`).
        if check_model and recorded and model_name(recorded) != model_name(wanted):
            self.store.close()  # the caller never gets this object, so it could never close it
            raise EmbeddingModelError(
                f"this knowledge base was built with embedding model {recorded}, not {wanted}; "
                f"run `deepkb reindex --reembed --embedding-model {wanted}` to re-embed it."
            )
        try:
            self.precision = self._precision(embedder, check_model)
        except BaseException:
            self.store.close()
            raise

    def _precision(self, embedder: Embedder | None, check: bool) -> str:
        """The precision this KB is embedded and queried in: its recorded one, never silently another."""
        recorded = self.store.get_meta("embedding_precision")
        if recorded is None and self.store.get_meta("embedding_model"):
            recorded = "f32"  # built before deepkb recorded precisions: all of those were embedded in f32
        wanted = getattr(embedder, "precision", None) if embedder else self.settings.embedding_precision
        if wanted in (None, "auto"):
            return recorded or default_precision(self.settings.embedding_backend, self.settings.embedding_model)
        if check and recorded and recorded != wanted:
            raise EmbeddingModelError(
                f"this knowledge base was embedded in {recorded} precision, not {wanted}; remove the "
                f"embedding_precision setting to use {recorded}, or run `deepkb reindex --reembed "
                f"--embedding-precision {wanted}` to re-embed it."
            )
        return wanted

    @classmethod
    def open(
        cls,
        kb: str | os.PathLike | None = None,
        embedder: Embedder | None = None,
        check_model: bool = True,
        **overrides: object,
    ) -> KnowledgeBase:
        """Open (creating if needed) the KB at --kb / DEEPKB_HOME / the platform data dir."""
        return cls(Settings.load(kb, **overrides), embedder=embedder, check_model=check_model)

    def close(self) -> None:
        self.storage.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # components, loaded on first use ----------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            settings = self.settings
            self._embedder = create_embedder(
                settings.embedding_model, settings.embedding_backend, self.precision,
                batch_size=settings.embed_batch_size,
            )  # fmt: skip
        return self._embedder

    @property
    def dim(self) -> int | None:
        return self.storage.dim or (self._embedder.dim if self._embedder else None)

    @property
    def index(self) -> VectorIndex:
        """The vector index, opened or brought in step with SQLite (a newer write by another process) now."""
        return self.storage.sync_index(self.dim or self.embedder.dim)

    @property
    def index_dirty(self) -> bool:
        return self.storage.index_dirty

    def save_index(self) -> None:
        self.storage.save_index()

    def writer(self, what: str | None = None) -> AbstractContextManager[None]:
        """Hold the KB's writer lock: two writers (two watches, watch + ingest) never interleave."""
        return self.storage.writer(what)

    # what users do --------------------------------------------------------------------------------------
    @_storage_guarded
    def ingest(self, paths: Sequence[str | os.PathLike], progress: Progress | None = None) -> IngestReport:
        """Sync files and folders into the KB: only what changed is read, chunked and embedded."""
        with self.writer():
            self._check_chunk_size()
            self._remember_model()
            report = sync(self.storage, self.embedder, self.settings, paths, progress)
            with self.storage.write(vectors=False):  # every change goes through the storage's one write path
                self.store.add_roots(str(Path(p).expanduser().resolve()) for p in paths)
            return report

    @_storage_guarded
    def search(self, query: str, k: int = 5, mode: str = "hybrid", scope: Scope | None = None) -> list[Hit]:
        """Top-k passages for a query: hybrid (dense + keyword fused), dense or keyword. A passage that stands in
        several documents (a page as .txt and .html, a copied file) is one hit, its other places in `also_in`;
        consecutive chunks of one document found together are one passage (deepkb.retrieval.passages); in hybrid
        mode the first `rerank` passages are ranked again by their best sentences (deepkb.retrieval.rerank);
        `scope` (deepkb.scope.make_scope(paths, types)) limits it to some folders, files or kinds of file."""
        check_query(query, k, mode)
        embedder = self.embedder if mode != "keyword" and self.dim is not None else None  # keyword: no model load
        if scope and not self.store.scope_documents(scope):
            raise UsageError(no_match_message(scope))
        # Twins are folded first, then consecutive chunks joined among the first `window` distinct hits: a depth that
        # does not depend on k, so that more hits never reorder the first ones.
        window = min(JOIN_WINDOW, self.settings.candidates)
        depth = max(k, window) + k * (TWIN_DEPTH - 1)
        distinct = group_twins(search(self.storage, embedder, self.settings, query, depth, mode, scope), depth)
        places = self.store.chunk_places([hit.chunk_id for hit in distinct[:window]])
        passages = join_neighbours(distinct, places, window)
        if mode == "hybrid" and embedder is not None and self.settings.rerank > 1:
            # The first passages ranked again by their best sentences: always the same number, whatever k.
            passages = rerank(passages, query, embedder, min(self.settings.rerank, window))
        return passages[:k]

    @_storage_guarded
    def remove(self, paths: Sequence[str | os.PathLike]) -> list[str]:
        """Forget documents (a folder forgets everything below it); returns the removed paths."""
        with self.writer():
            removed: list[str] = []
            targets = [str(Path(p).expanduser().absolute().resolve()) for p in paths]
            docs = self.store.documents_under(targets)
            if not docs:
                raise UsageError(f"nothing in the knowledge base under {', '.join(map(str, paths))}.")
            with self.storage.write() as changes:
                for path, doc in docs.items():
                    changes.removed += self.store.remove_document(doc.id)
                    removed.append(path)
            self.storage.save_index()
            return removed

    @_storage_guarded
    def reindex(self, reembed: bool = False) -> dict:
        """Rebuild the vector index from SQLite; with reembed, embed every chunk again with the configured model."""
        with self.writer():
            started = time.perf_counter()
            embedded = 0
            if reembed:
                embedded = self._reembed()
            self.storage.rebuild_index(self.dim or self.embedder.dim)
            chunks = self.store.counts()["chunks"]
            return {"chunks": chunks, "embedded": embedded, "seconds": round(time.perf_counter() - started, 3)}

    def _reembed(self) -> int:
        """Embed every stored chunk again, as ingest embeds it (the same text, batches and de-duplication)."""
        embedder = self.embedder
        count, last = 0, -1
        with self.storage.write():  # the index is dropped after: rebuilt from the new vectors
            while rows := self.store.distinct_texts(last, REEMBED_SLICE):
                last = rows[-1][0]
                vectors = embed_chunks(embedder, [c for _, c in rows], self.settings.embed_batch_size)
                self.store.replace_vectors((vid, vectors[c.hash]) for vid, c in rows)
                count += len(rows)
            self.store.set_meta("embedding_model", embedder.name)
            self.store.set_meta("embedding_dim", str(embedder.dim))
            self.store.set_meta("embedding_precision", getattr(embedder, "precision", "f32"))
        self.storage.drop_index()
        self._write_config_model(embedder.name)
        return count

    @_storage_guarded
    def status(self) -> dict:
        """Counts and facts about the KB (`deepkb status --json`)."""
        counts = self.store.counts()
        facts = self.store.facts()
        return {
            **counts,
            "embedding_model": self.store.get_meta("embedding_model") or self.settings.embedding_model,
            "embedding_dim": self.dim,
            **self._engine(),
            "home": str(self.home),
            "roots": self.store.roots(),
            "documents_with_empty_pages": facts["documents_with_empty_pages"],
            "last_ingest": facts["last_ingest"],
            "db_bytes": self.store.path.stat().st_size,
        }

    def documents(self) -> list[dict]:
        """What is indexed, one entry per document with its chunk count (`GET /v1/documents`)."""
        return self.store.document_list()

    def _engine(self) -> dict:
        """The embedding engine this KB's commands really use, without loading it when nothing has yet."""
        if self._embedder is not None:
            e = self._embedder
            return {
                "embedding_backend": e.backend,
                "embedding_precision": getattr(e, "precision", None),
                "embedding_fallback": getattr(e, "fallback_reason", None),
            }
        model = self.store.get_meta("embedding_model") or self.settings.embedding_model
        backend = resolve_backend(self.settings.embedding_backend, model)
        fallback = None
        if self.settings.embedding_backend == "auto" and backend == "sentence-transformers":
            fallback = openvino_rejection(model) if pick_backend() == "openvino" else None
        return {"embedding_backend": backend, "embedding_precision": self.precision, "embedding_fallback": fallback}

    def _check_chunk_size(self) -> None:
        """chunk_tokens beyond what the embedding model reads would leave most of each chunk unembedded."""
        limit, wanted = self.embedder.max_tokens, self.settings.chunk_tokens
        if wanted > limit:
            low = LIMITS["chunk_tokens"][0]
            raise UsageError(
                f"setting chunk_tokens = {wanted} is out of range: the embedding model {self.embedder.name} reads at "
                f"most {limit} tokens; valid: {low} to {limit} (config.toml, DEEPKB_CHUNK_TOKENS or a flag)."
            )

    def _remember_model(self) -> None:
        """A new KB built with a non-default model writes it to its config.toml, so later opens agree."""
        if not self.store.get_meta("embedding_model"):
            self._write_config_model(self.settings.embedding_model)

    def _write_config_model(self, name: str) -> None:
        path = self.home / CONFIG_FILE
        lines = [
            ln
            for ln in (path.read_text().splitlines() if path.exists() else [])
            if not ln.startswith("embedding_model")
        ]
        if name != DEFAULT_EMBEDDING_MODEL or path.exists():
            lines.append(f"embedding_model = {json.dumps(name)}")
            path.write_text("\n".join(lines) + "\n")
