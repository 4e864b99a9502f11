"""deepkb.storage.storage: searches from many threads while a writer changes the knowledge base (what `deepkb serve` does
with its watcher), and the one place where index changes follow a commit."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest

from deepkb import faults
from deepkb.errors import DeepKBError
from deepkb.kb import KnowledgeBase
from deepkb.storage.storage import ReadWriteLock, Storage

READERS = 4
ROUNDS = 6
QUERIES = [("kites over the harbour", "hybrid"), ("lantern festival", "dense"), ("harbour kites", "keyword")]


def _note(docs: Path, i: int, version: int) -> None:
    topic = ["kites over the harbour", "the lantern festival", "harbour cranes at dawn"][i % 3]
    (docs / f"note{i}.md").write_text(
        f"# Note {i}\n\nNote {i}, version {version}: {topic}. " + f"Paragraph {version} about {topic}. " * (i + 2)
    )


def _committed(kb: KnowledgeBase, seen: dict[int, set[tuple[str, str]]]) -> None:
    """Every (path, text) each chunk id has had once committed: a chunk id is never reused, its text never changes."""
    rows = kb.store.db.execute("SELECT c.id, d.path, c.text FROM chunks c JOIN documents d ON d.id = c.doc_id")
    for chunk_id, path, text in rows:
        seen.setdefault(chunk_id, set()).add((path, text))


@pytest.mark.parametrize("writer_kb", ["shared", "separate"])
def test_readers_never_fail_nor_see_a_chunk_that_was_not_committed(kb_home, embedder, tmp_path, writer_kb, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        _note(docs, i, 0)
    reader = KnowledgeBase.open(kb_home, embedder=embedder, chunks_per_commit=2)
    writer = reader if writer_kb == "shared" else KnowledgeBase.open(kb_home, embedder=embedder, chunks_per_commit=2)
    committed: dict[int, set[tuple[str, str]]] = {}
    writer.ingest([docs])
    _committed(writer, committed)

    done = threading.Event()
    progress = threading.Condition()
    started = threading.Barrier(READERS + 1)
    errors: list[BaseException] = []
    hits_seen: list = []
    searches = [0] * READERS

    def read(n: int) -> None:
        try:
            started.wait()
            while not done.is_set() or searches[n] < 3:
                query, mode = QUERIES[searches[n] % len(QUERIES)]
                hits_seen.extend(reader.search(query, k=5, mode=mode))
                with progress:
                    searches[n] += 1
                    progress.notify_all()
        except BaseException as exc:  # noqa: BLE001 - any failure of a reader is what this test looks for
            errors.append(exc)
            with progress:
                progress.notify_all()

    def searches_while_open(name: str) -> None:
        """Inside the writer's transaction: let every reader search twice more, then fail (it is rolled back)."""
        if name != "in-transaction":
            return
        with progress:
            target = [count + 2 for count in searches]
            progress.wait_for(lambda: errors or all(c >= t for c, t in zip(searches, target)))
        raise OSError(errno.EIO, "injected: this transaction never commits")

    threads = [threading.Thread(target=read, args=(n,)) for n in range(READERS)]
    for t in threads:
        t.start()
    try:
        started.wait()
        for version in range(1, ROUNDS + 1):
            _note(docs, version % 6, version)  # re-ingest a changed file
            (docs / f"note{(version + 2) % 6}.md").unlink()  # delete one
            if version % 2:
                (docs / f"note{(version + 4) % 6}.md").rename(docs / f"moved{version}.md")  # rename one
            writer.ingest([docs])
            _committed(writer, committed)
            (docs / "zeppelin.md").write_text(f"# Zeppelin\n\nkites over the harbour, lantern festival {version}\n")
            with monkeypatch.context() as patch:
                patch.setattr(faults, "checkpoint", searches_while_open)
                with pytest.raises(DeepKBError):
                    writer.ingest([docs])
            (docs / "zeppelin.md").unlink()
            for i in range(6):  # bring the deleted ones back for the next round
                if not (docs / f"note{i}.md").exists():
                    _note(docs, i, version)
            if version % 2:
                writer.remove([docs / f"moved{version}.md"])
            writer.ingest([docs])
            _committed(writer, committed)
    finally:
        done.set()
        for t in threads:
            t.join()
    assert errors == []
    assert all(count >= 3 for count in searches)
    assert hits_seen
    for hit in hits_seen:  # each hit is a chunk exactly as some commit stored it, at a path it then had
        assert (hit.path, hit.text) in committed.get(hit.chunk_id, set())
    assert reader.index.live == reader.store.all_vector_ids()  # the readers' index followed every change
    if writer is not reader:
        writer.close()
    reader.close()


def test_a_change_reaches_the_index_when_its_transaction_commits_and_not_when_it_fails(kb, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    _note(docs, 0, 0)
    kb.ingest([docs])
    storage: Storage = kb.storage
    index = storage.sync_index()
    before = set(index.live)
    doc = storage.store.document(str(docs / "note0.md"))
    with pytest.raises(RuntimeError), storage.write() as changes:
        changes.removed += storage.store.remove_document(doc.id)
        raise RuntimeError("rolled back")
    assert index.live == before and storage.store.document(doc.path) is not None  # neither side changed
    with storage.write() as changes:
        changes.removed += storage.store.remove_document(doc.id)
    assert index.live == before - set(changes.removed) == storage.store.all_vector_ids()
    assert index.epoch == storage.store.epoch() and storage.index_dirty


def test_a_waiting_writer_goes_before_new_readers():
    lock = ReadWriteLock()
    order: list[str] = []
    reader_in, writer_waiting = threading.Event(), threading.Event()

    def writer() -> None:
        writer_waiting.set()
        with lock.exclusive():
            order.append("writer")

    def late_reader() -> None:
        with lock.shared():
            order.append("late reader")

    with lock.shared():
        reader_in.set()
        w = threading.Thread(target=writer)
        w.start()
        writer_waiting.wait()
        while not lock._waiting:  # the writer is queued behind this reader
            threading.Event().wait(0.001)
        r = threading.Thread(target=late_reader)
        r.start()
        order.append("first reader")
    w.join()
    r.join()
    assert order == ["first reader", "writer", "late reader"]
