"""Backup and restore of a knowledge-base home: every SQLite database, the vector index and config.toml.

Databases are copied with SQLite's online backup API in one step: the copy is one consistent snapshot, taken
while `deepkb watch` or `deepkb serve` keep writing (WAL readers never block the writer, nor it them). The
vector index is a cache: copied as it is, and repaired from the snapshot on the restored KB's first search if a
write landed in between. A manifest with each file's sha256 lets `restore` refuse a damaged backup.
Downloaded answer models (<home>/models) are not copied: `deepkb models pull` gets them again.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

from deepkb import __version__
from deepkb.checksum import file_sha256
from deepkb.config import CONFIG_FILE
from deepkb.errors import DatabaseDamagedError, UsageError
from deepkb.storage.errors import explain, translated
from deepkb.storage.vectors import INDEX_FILE, SIDECAR_FILE

MANIFEST = "deepkb-backup.json"
PLAIN_FILES = (INDEX_FILE, SIDECAR_FILE, CONFIG_FILE)  # copied byte for byte when present


def backup(home: Path, dest: Path) -> dict:
    """Write a consistent copy of the KB at home into dest (a new or empty folder); returns the manifest."""
    dest = dest.expanduser().absolute()
    if not (home / "kb.sqlite").exists():
        raise UsageError(f"{home} holds no knowledge base (no kb.sqlite); nothing to back up.")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} already exists and is not an empty folder; give a new folder, e.g. {dest}-2.")
    if dest == home or dest.is_relative_to(home):
        raise UsageError(f"{dest} is inside the knowledge base {home}; back it up to another folder.")
    started = time.time()
    files: dict[str, dict] = {}
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for db in sorted(home.glob("*.sqlite")):
            _copy_database(db, dest / db.name)
            files[db.name] = _describe(dest / db.name)
        for name in PLAIN_FILES:
            if _copy_whole(home / name, dest / name):
                files[name] = _describe(dest / name)
    except (sqlite3.Error, OSError) as exc:  # a damaged source is the KB's problem; a full or read-only disk, DEST's
        error = explain(exc, dest)
        if isinstance(error, DatabaseDamagedError):
            error = explain(exc, home)
        if error is None:
            raise
        raise error from exc
    with translated(dest):
        manifest = {
            "deepkb": __version__,
            "created": started,
            "source": str(home),
            "files": files,
            "seconds": round(time.time() - started, 3),
        }
        _write_atomically(dest / MANIFEST, json.dumps(manifest, indent=2).encode())
    return manifest


def restore(src: Path, home: Path) -> dict:
    """Copy a backup made by backup() into home, which must hold no knowledge base yet; returns the manifest."""
    src = src.expanduser().absolute()
    try:
        manifest = json.loads((src / MANIFEST).read_text())
        files: dict[str, dict] = manifest["files"]
    except FileNotFoundError:
        raise UsageError(
            f"{src} is not a deepkb backup (no {MANIFEST}); give the folder `deepkb backup` wrote."
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{src / MANIFEST} cannot be read ({exc}); the backup is damaged.") from exc
    if "kb.sqlite" not in files:
        raise UsageError(f"{src} holds no kb.sqlite; the backup is incomplete.")
    taken = [name for name in files if (home / name).exists()] + (
        ["kb.sqlite"] if (home / "kb.sqlite").exists() else []
    )
    if taken:
        raise UsageError(
            f"{home} already holds a knowledge base ({taken[0]}); restore into an empty folder with --kb NEW_FOLDER, "
            "or move this one aside first."
        )
    for name, info in files.items():
        path = src / name
        if not path.is_file() or path.stat().st_size != info["size"] or file_sha256(path) != info["sha256"]:
            raise UsageError(f"{path} is missing or differs from what the backup recorded; the backup is damaged.")
    with translated(home):
        home.mkdir(parents=True, exist_ok=True)
        for name in files:
            _copy_whole(src / name, home / name)
    return manifest


def _copy_database(source: Path, target: Path) -> None:
    """SQLite's online backup of one database, written under a temporary name and renamed when complete."""
    partial = target.with_name(target.name + ".partial")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # all pages in one step: one snapshot, even while another process writes
            dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file, no -wal beside it
        finally:
            dst.close()
    finally:
        src.close()
    _fsync(partial)
    os.replace(partial, target)


def _copy_whole(source: Path, target: Path) -> bool:
    """Copy a file that is only ever replaced atomically (read once, whole); False when it does not exist."""
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        return False
    _write_atomically(target, data)
    shutil.copystat(source, target)
    return True


def _write_atomically(target: Path, data: bytes) -> None:
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    _fsync(partial)
    os.replace(partial, target)


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _describe(path: Path) -> dict:
    return {"size": path.stat().st_size, "sha256": file_sha256(path)}
