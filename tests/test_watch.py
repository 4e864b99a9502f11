"""Live sync: real watchdog observers on temp folders, the real model; every change reaches search in batches."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepkb.cli import main
from deepkb.errors import LockedError
from deepkb.ingest.sync import Change, IngestReport, Skipped
from deepkb.kb import KnowledgeBase
from deepkb.watch import Watcher

from conftest import REPO, write


def wait_until(predicate: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Log:
    """Everything a watcher reported, in order."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.skipped: list[Skipped] = []
        self.errors: list[str] = []
        self.batches: list[IngestReport] = []

    def has(self, action: str, path: Path) -> bool:
        return any(c.action == action and c.path == str(path) for c in self.changes)


@contextmanager
def watching(kb: KnowledgeBase, *roots: Path, **options: object) -> Iterator[tuple[Watcher, Log]]:
    log = Log()
    options = {"debounce": 0.2, "max_delay": 2.0, "poll_interval": 0.2, **options}
    watcher = Watcher(
        kb, roots, on_change=log.changes.append, on_skipped=log.skipped.append, on_error=log.errors.append,
        on_batch=log.batches.append, **options,
    )  # fmt: skip
    with watcher:
        assert watcher.wait_ready(30), "catch-up did not finish"
        yield watcher, log


@pytest.fixture
def reader(kb_home: Path, embedder) -> KnowledgeBase:
    """A second KnowledgeBase on the same folder: what `deepkb search` in another terminal sees."""
    base = KnowledgeBase.open(kb_home, embedder=embedder)
    yield base
    base.close()


def paths_for(reader: KnowledgeBase, query: str, mode: str = "keyword", k: int = 5) -> list[str]:
    return [h.path for h in reader.search(query, k=k, mode=mode)]


def test_catch_up_then_create_and_modify_reach_another_readers_search(kb, reader, tmp_path):
    docs = tmp_path / "docs"
    write(docs / "old.md", "# Old\n\nThe lighthouse keeper logs every passing ship.\n")
    with watching(kb, docs) as (watcher, log):
        assert watcher.catch_up.added == 1 and log.has("added", docs / "old.md")
        plan = write(docs / "plan.md", "# Plan\n\nThe zeppelin launch happens on Tuesday at dawn.\n")
        wait_until(lambda: log.has("added", plan), what="the new file")
        assert paths_for(reader, "zeppelin") == [str(plan)]
        write(plan, "# Plan\n\nThe zeppelin launch moved to Friday at noon, weather permitting.\n")
        wait_until(lambda: log.has("updated", plan), what="the edit")
        hit = reader.search("zeppelin launch Friday", k=1, mode="dense")[0]
        assert hit.path == str(plan) and "Friday" in hit.text
    assert not log.errors and not log.skipped


def test_an_editors_atomic_save_is_one_update(kb, reader, tmp_path, embedded):
    docs = tmp_path / "docs"
    body = "# Kestrels\n\nKestrels hover over the verge.\n\n# Waders\n\nThe {} stands in the shallows.\n"
    note = write(docs / "note.md", body.format("heron"))
    with watching(kb, docs, debounce=1.0) as (watcher, log):  # a save's events must not straddle a quiet period
        embedded.texts[:] = []
        # vim: back up by rename, write the new file, drop the backup; others write a temp file and rename it over
        os.rename(note, docs / "note.md~")
        write(docs / ".note.md.swp", "swap")
        note.write_text(body.format("egret"))
        (docs / "note.md~").unlink()
        (docs / ".note.md.swp").unlink()
        wait_until(lambda: len(log.changes) == 2, what="save 1")
        assert paths_for(reader, "egret") == [str(note)]
        tmp = write(docs / "note.md.tmp", body.format("ibis"))
        os.replace(tmp, note)
        wait_until(lambda: len(log.changes) == 3, what="save 2")
        assert paths_for(reader, "ibis") == [str(note)]
        assert [(c.action, c.path) for c in log.changes[1:]] == [("updated", str(note))] * 2  # never removed+added
        assert len(embedded.texts) == 2 and all("Kestrels" not in t for t in embedded.texts)


def test_rename_costs_no_embedding_and_delete_removes(kb, reader, tmp_path, embedded):
    docs = tmp_path / "docs"
    old = write(docs / "release-notes.txt", "Kestrel-9 firmware fixes the battery gauge.\n")
    with watching(kb, docs) as (_, log):
        embedded.texts.clear()
        new = docs / "fleet-notes.txt"
        os.rename(old, new)
        wait_until(lambda: log.has("renamed", new), what="the rename")
        assert log.changes[-1].old_path == str(old) and embedded.texts == []
        assert paths_for(reader, "Kestrel") == [str(new)]
        new.unlink()
        wait_until(lambda: log.has("removed", new), what="the delete")
        assert paths_for(reader, "Kestrel") == [] and reader.status()["documents"] == 0


def test_directory_move_is_renames_and_directory_delete_removes(kb, reader, tmp_path, embedded):
    docs = tmp_path / "docs"
    for name in ("a", "b", "c"):
        write(docs / "inbox" / "deep" / f"{name}.md", f"# {name}\n\nNotes on the {name}-albatross migration.\n")
    with watching(kb, docs) as (_, log):
        embedded.texts.clear()
        shutil.move(docs / "inbox", docs / "archive")
        moved = [docs / "archive" / "deep" / f"{n}.md" for n in ("a", "b", "c")]
        wait_until(lambda: all(log.has("renamed", p) for p in moved), what="three renames")
        assert embedded.texts == [] and not any(c.action in ("added", "removed") for c in log.changes[3:])
        assert sorted(paths_for(reader, "albatross")) == [str(p) for p in moved]
        shutil.rmtree(docs / "archive")
        wait_until(lambda: all(log.has("removed", p) for p in moved), what="three removals")
        assert paths_for(reader, "albatross") == []


def test_ignored_paths_and_the_kbs_own_folder_cause_no_sync(kb, tmp_path):
    # the KB lives inside the watched folder (tmp_path/kb): its own writes must not feed back into syncs
    write(tmp_path / ".deepkbignore", "drafts/\n*.log\n")
    with watching(kb, tmp_path) as (watcher, log):
        ignored = [
            write(tmp_path / ".hidden" / "x.md", "hidden walrus"),
            write(tmp_path / "drafts" / "d.md", "draft walrus"),
            write(tmp_path / "build.log", "log walrus"),
            write(tmp_path / "keep.md~", "backup walrus"),
            write(tmp_path / "file.part", "partial walrus"),
            kb.home / "kb.sqlite",
            kb.home / "vectors.hnsw",
        ]
        assert [p.name for p in ignored if watcher.would_sync(p)] == []
        assert not watcher.would_sync(tmp_path / "drafts", is_dir=True)
        good = write(tmp_path / "keep.md", "# Keep\n\nvisible walrus\n")
        assert watcher.would_sync(good)
        wait_until(lambda: log.has("added", good), what="the visible file")
        assert [c.path for c in log.changes] == [str(good)]  # nothing ignored was indexed on the way


def test_burst_of_200_files_is_indexed_in_a_few_batches(kb, reader, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    with watching(kb, docs, debounce=1.0, max_delay=5.0) as (watcher, log):
        before = watcher.batches
        for i in range(200):
            (docs / f"note-{i:03d}.md").write_text(f"# Note {i}\n\nObservation token obs{i:03d}x about tides.\n")
        wait_until(lambda: len(log.changes) == 200, timeout=40, what="200 changes reported")
        assert reader.status()["documents"] == 200
        assert {c.action for c in log.changes} == {"added"}
        assert watcher.batches - before <= 20  # batched: not one sync per file, even on a loaded machine
        assert paths_for(reader, "obs137x") == [str(docs / "note-137.md")]


def test_search_keeps_working_while_the_watcher_writes(kb, reader, tmp_path):
    docs = tmp_path / "docs"
    write(docs / "seed.md", "# Seed\n\nThe seed document about glaciers.\n")
    paragraph = "Sediment cores from the fjord record {n} centuries of glacial retreat and advance. " * 6
    with watching(kb, docs) as (watcher, log):
        during, errors, stop = [], [], threading.Event()

        def search_loop() -> None:
            while not stop.is_set():
                busy = watcher.busy
                try:
                    hits = reader.search("glaciers sediment", k=3)
                except Exception as exc:  # any failure is the finding
                    errors.append(exc)
                    return
                if busy and watcher.busy and hits:
                    during.append(hits)

        thread = threading.Thread(target=search_loop)
        thread.start()
        try:
            for i in range(20):
                write(
                    docs / f"core-{i}.md", f"# Core {i}\n\n" + "\n\n".join(paragraph.format(n=i + j) for j in range(2))
                )
            target = docs / "core-19.md"
            wait_until(lambda: reader.status()["documents"] == 21, timeout=30, what="21 documents")
        finally:
            stop.set()
            thread.join()
        assert not errors and during, "searches must run (and not fail) while a batch is being written"
        assert target.name in {
            Path(h.path).name for h in reader.search("Core 19 sediment cores fjord", k=10, mode="dense")
        }
        assert reader.index.epoch == reader.store.epoch()  # the reader's vector index followed without a restart


def test_single_writer_lock_between_watch_ingest_and_a_second_watch(kb, kb_home, embedder, tmp_path):
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\nThe otter naps on its back.\n")
    other = KnowledgeBase.open(kb_home, embedder=embedder)
    try:
        with watching(kb, docs):
            with pytest.raises(LockedError, match=rf"process {os.getpid()} \(deepkb watch"):
                other.ingest([docs])
            with pytest.raises(LockedError, match="deepkb watch"):
                Watcher(other, [docs]).start()
            assert other.search("otter", k=1)[0].path == str(docs / "a.md")  # readers never wait
        assert other.ingest([docs]).unchanged == 1  # the lock is released on stop
    finally:
        other.close()


def test_a_bad_file_is_reported_once_and_retried_on_its_next_change(kb, reader, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    with watching(kb, docs) as (watcher, log):
        bad = docs / "bad.md"
        bad.write_bytes(b"\x00\x01\x02" * 100)
        wait_until(lambda: log.skipped, what="the bad file reported")
        assert [s.path for s in log.skipped] == [str(bad)]
        write(docs / "good.md", "# Good\n\nA fine note about puffins.\n")
        wait_until(lambda: log.has("added", docs / "good.md"), what="the good file")
        assert len(log.skipped) == 1  # the bad file was synced again, but not reported again
        gone = docs / "gone.md"
        gone.write_text("# Gone\n\nhere for a moment\n")
        gone.unlink()  # vanishes before the sync reads it
        write(bad, "# Fixed\n\nNow a proper note about gannets.\n")
        wait_until(lambda: log.has("added", bad), what="the fixed file")
        assert paths_for(reader, "gannets") == [str(bad)] and not log.errors
        assert reader.store.document(str(gone)) is None and len(log.skipped) == 1
        assert watcher.running


def test_a_root_that_disappears_keeps_its_documents_and_catches_up_when_back(kb, reader, tmp_path):
    docs, away = tmp_path / "docs", tmp_path / "away"
    keep = write(docs / "keep.md", "# Keep\n\nThe narwhal tusk is a tooth.\n")
    with watching(kb, docs) as (watcher, log):
        doc_id = reader.store.document(str(keep)).id
        os.rename(docs, away)
        wait_until(lambda: any("disappeared" in e for e in log.errors), what="the missing-root notice")
        assert paths_for(reader, "narwhal") == [str(keep)]  # not removed while the root is missing
        write(away / "new.md", "# New\n\nWalruses use their tusks to climb onto ice.\n")
        os.rename(away, docs)
        wait_until(lambda: log.has("added", docs / "new.md"), what="catch-up after the root came back")
        assert reader.store.document(str(keep)).id == doc_id and watcher.running
        write(docs / "later.md", "# Later\n\nBelugas are called sea canaries.\n")  # the folder is watched again
        wait_until(lambda: paths_for(reader, "belugas") == [str(docs / "later.md")], what="a change after return")


def test_cli_watch_prints_each_change_and_stops_cleanly_on_ctrl_c(kb_home, reader, tmp_path):
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\nThe puffin dives for sand eels.\n")
    command = [sys.executable, "-m", "deepkb", "--kb", str(kb_home), "watch", str(docs), "--json", "--debounce", "0.2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: reader.status()["documents"] == 1, timeout=120, what="the catch-up")
        write(docs / "b.md", "# B\n\nThe gannet plunges from thirty metres.\n")
        wait_until(lambda: paths_for(reader, "gannet") == [str(docs / "b.md")], timeout=60, what="the new file")
        proc.send_signal(signal.SIGINT)  # Ctrl-C, to the watch process alone
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert [(x["action"], Path(x["path"]).name, x["catch_up"]) for x in lines] == [
        ("added", "a.md", True),
        ("added", "b.md", False),
    ]
    assert "stopped" in stderr and "Traceback" not in stderr
    with KnowledgeBase.open(kb_home, embedder=reader.embedder) as again, again.writer("test"):  # lock released
        assert again.ingest([docs]).unchanged == 2


def test_watch_help_has_an_example():
    result = CliRunner().invoke(main, ["watch", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output and "deepkb watch" in result.output
