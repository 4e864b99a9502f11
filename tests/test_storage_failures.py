"""Storage failures, made to happen: a damaged database, a full disk, a read-only or foreign folder, a lock held by
another program, a KB from a newer deepkb. Each is one line with the next step, exit code 3, nothing indexed lost."""

from __future__ import annotations

import errno
import hashlib
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from deepkb.errors import DatabaseDamagedError, DiskFullError, LockedError, NewerVersionError, ReadOnlyError
from deepkb.kb import KnowledgeBase
from deepkb.storage import catalog as store_module
from deepkb.storage.catalog import SCHEMA_VERSION

from conftest import REPO, write


def _deepkb(*args: str, kb: Path, user: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "deepkb", "--kb", str(kb), *args]
    if user:
        account = pwd.getpwnam(user)
        command = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups", *command]
    env = {**os.environ, "COLUMNS": "300", "PYTHONPATH": str(REPO)}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)


def _one_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    # ingest's progress lines (stderr is not a terminal here) are not part of the error
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith("ingest: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _corpus(root: Path, n: int, prefix: str = "note") -> Path:
    for i in range(n):
        body = "\n\n".join(f"{prefix} {i} paragraph {j}: the falcon {i * 7 + j} nests on cliff {j}." for j in range(6))
        write(root / f"{prefix}{i}.md", f"# {prefix.title()} {i}\n\n{body}\n")
    return root


@pytest.fixture
def built(tmp_path, embedder) -> Path:
    """A small KB, closed, ready to be damaged."""
    home = tmp_path / "kb"
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        kb.ingest([_corpus(tmp_path / "docs", 3)])
    return home


def test_damaged_database_is_one_line_pointing_to_doctor_and_backup(built):
    db = built / "kb.sqlite"
    with open(db, "r+b") as fh:
        fh.write(b"\0garbage!" * 12)
    before = _sha(db)
    for args in (["search", "falcon"], ["status"], ["ingest", str(built.parent / "docs")]):
        result = _deepkb(*args, kb=built)
        assert result.returncode == 3, args
        line = _one_line(result)
        assert "damaged" in line and "deepkb doctor" in line and "deepkb restore" in line, line
    assert _sha(db) == before  # nothing was written to it
    with pytest.raises(DatabaseDamagedError):
        KnowledgeBase.open(built)


def test_newer_schema_is_refused_untouched(built):
    db = built / "kb.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 4}")
    conn.close()
    before = _sha(db)
    result = _deepkb("status", kb=built)
    assert result.returncode == 3
    line = _one_line(result)
    assert "newer deepkb" in line and f"schema {SCHEMA_VERSION + 4}" in line and "upgrade" in line, line
    with pytest.raises(NewerVersionError):
        KnowledgeBase.open(built)
    assert _sha(db) == before


def test_lock_held_by_another_program(built, embedder, monkeypatch, tmp_path):
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT", 0.3)
    other = sqlite3.connect(built / "kb.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # e.g. an sqlite3 shell in the middle of a transaction
    try:
        with KnowledgeBase.open(built, embedder=embedder) as kb:
            assert kb.search("falcon nests", k=1)  # readers never wait (WAL)
            with pytest.raises(LockedError, match="locked by another program.*retry"):
                kb.ingest([_corpus(tmp_path / "more", 1, prefix="extra")])
    finally:
        other.execute("ROLLBACK")
        other.close()
    with KnowledgeBase.open(built, embedder=embedder) as kb:
        assert kb.status()["documents"] == 3


# -- file systems made for the test: needs root (mount) ------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs; yields (folder, remount) and unmounts it afterwards."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "tmpfs"
    folder.mkdir()

    def mount(size: str) -> Path:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
        if done.returncode:
            pytest.skip(f"this machine does not allow mounting a tmpfs: {done.stderr.decode().strip()}")
        return folder

    def remount(options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)

    yield mount, remount
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_full_disk_keeps_what_was_stored_and_says_how_much_room(tmpfs, tmp_path, embedder, monkeypatch):
    mount, _ = tmpfs
    home = mount("1500k") / "kb"
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        kb.ingest([_corpus(tmp_path / "first", 3)])
    free = shutil.disk_usage(home).free
    filler = home.parent / "filler"
    filler.write_bytes(b"\0" * (free - 160_000))  # leave room for a few batches, not for all of them
    more = _corpus(tmp_path / "more", 40, prefix="record")
    monkeypatch.setenv("DEEPKB_CHUNKS_PER_COMMIT", "6")
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        with pytest.raises(DiskFullError) as caught:
            kb.ingest([more])
    message = str(caught.value)
    assert "is full" in message and "nothing already indexed was lost" in message
    assert "still to do" in message and "free at least" in message, message
    assert "\n" not in message
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        assert kb.store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert len(kb.store.documents_under([str(tmp_path / "first")])) == 3
        assert kb.search("falcon 19", k=1, mode="keyword")[0].path.endswith("note2.md")
    filler.unlink()
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        report = kb.ingest([more])
        assert report.added + report.unchanged == 40
        assert kb.status()["documents"] == 43
        duplicates = "SELECT count(*) FROM (SELECT doc_id, ord FROM chunks GROUP BY doc_id, ord HAVING count(*) > 1)"
        assert kb.store.db.execute(duplicates).fetchone()[0] == 0
        assert kb.index.live == kb.store.all_vector_ids()


def test_full_disk_from_the_cli_is_one_line(tmpfs, tmp_path):
    mount, _ = tmpfs
    home = mount("600k") / "kb"
    result = _deepkb("ingest", str(_corpus(tmp_path / "big", 120)), kb=home)
    assert result.returncode == 3
    line = _one_line(result)
    assert "is full" in line and "free at least" in line, line


def test_index_that_does_not_fit_is_not_saved_half(tmpfs, tmp_path, embedder):
    """hnswlib writes a truncated file on a full disk without a word: the old index must stay in place."""
    import numpy as np

    from deepkb.storage.vectors import INDEX_FILE, SIDECAR_FILE, VectorIndex

    mount, _ = tmpfs
    home = mount("100k")
    index = VectorIndex(home, 8)
    index.add([1, 2], np.eye(2, 8, dtype=np.float32))
    index.save(1)
    saved = (home / INDEX_FILE).read_bytes(), (home / SIDECAR_FILE).read_bytes()
    index.add(list(range(3, 2003)), np.random.default_rng(0).normal(size=(2000, 8)).astype(np.float32))
    with pytest.raises(OSError) as caught:
        index.save(2)
    assert caught.value.errno == errno.ENOSPC
    assert ((home / INDEX_FILE).read_bytes(), (home / SIDECAR_FILE).read_bytes()) == saved
    assert sorted(p.name for p in home.iterdir()) == [INDEX_FILE, SIDECAR_FILE]  # no partial file takes the room


def test_read_only_mount(tmpfs, tmp_path, embedder):
    mount, remount = tmpfs
    home = mount("2m") / "kb"
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        kb.ingest([_corpus(tmp_path / "docs", 2)])
    remount("ro")
    with pytest.raises(ReadOnlyError, match="read-only file system.*copy"):
        KnowledgeBase.open(home, embedder=embedder)
    result = _deepkb("search", "falcon", kb=home)
    assert result.returncode == 3
    assert "read-only" in _one_line(result)
    remount("rw")
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        assert kb.status()["documents"] == 2


def test_folder_of_another_user(tmp_path, embedder):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("running as another user needs root and setpriv")
    base = Path(tempfile.mkdtemp(prefix="deepkb-perm-"))  # tmp_path's parents are private to root
    try:
        base.chmod(0o755)
        home = base / "kb"
        with KnowledgeBase.open(home, embedder=embedder) as kb:
            kb.ingest([_corpus(tmp_path / "docs", 1)])
        os.chmod(home, 0o755)
        for name in os.listdir(home):
            os.chmod(home / name, 0o644)
        before = _sha(home / "kb.sqlite")
        result = _deepkb("status", kb=home, user="nobody")
        if "No module named" in result.stderr or "error while loading shared libraries" in result.stderr:
            pytest.skip(f"the user nobody cannot run this Python here: {result.stderr.strip().splitlines()[-1]}")
        assert result.returncode == 3, result.stderr
        line = _one_line(result)
        assert "no permission to write" in line and "--kb" in line, line
        assert _sha(home / "kb.sqlite") == before
    finally:
        shutil.rmtree(base)
