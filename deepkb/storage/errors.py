"""Storage failures in words: an sqlite3 or OS error on the KB's own files becomes one sentence with the next step.

Every failure here happens before or inside an SQLite transaction, which then rolls back: what was committed
earlier stays, so each message can say that nothing already indexed was lost.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deepkb.errors import (
    DatabaseDamagedError,
    DeepKBError,
    DiskFullError,
    LockedError,
    ReadOnlyError,
    StorageError,
)

# SQLite's primary result codes (https://www.sqlite.org/rescode.html)
_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 3, 5, 6, 8, 10, 11, 13, 14, 26


def human_bytes(n: float) -> str:
    """1.2 MB, 640 KB: sizes the way people read them (powers of 1000, like df -H)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_bytes(path: Path) -> int | None:
    """Room left for us on the disk holding path (None when it cannot be asked)."""
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def explain(
    exc: BaseException, home: Path, kept: str | None = None, needed_bytes: int | None = None
) -> DeepKBError | None:
    """The domain error for a failure of the KB's storage, or None when exc is something else.

    kept: what the interrupted command had already committed ("kept 12 new or changed files"); needed_bytes: an
    estimate of the room the rest of it needs.
    """
    if isinstance(exc, DeepKBError):
        return exc
    db = home / "kb.sqlite"
    kind = _kind(exc, home)
    detail = str(exc) if isinstance(exc, sqlite3.Error) else (exc.strerror if isinstance(exc, OSError) else None)
    if kind == "full":
        free = free_bytes(home)
        parts = [f"the disk holding {home} is full" + (f" ({human_bytes(free)} left)" if free is not None else "")]
        parts.append(f"{kept}, nothing already indexed was lost" if kept else "nothing already indexed was lost")
        room = f"free at least {human_bytes(needed_bytes)}" if needed_bytes else "free some space"
        parts.append(f"{room} there (or use a --kb folder on another disk) and run the command again")
        return DiskFullError("; ".join(parts) + ".")
    if kind == "readonly":
        return ReadOnlyError(
            f"{home} is on a read-only file system: deepkb writes there (its database journal, the index, a lock); "
            "remount it read-write, or copy the folder somewhere writable and point --kb at the copy."
        )
    if kind == "permission":
        return ReadOnlyError(
            f"no permission to write in {home} (running as user id {os.getuid()}): give this user write access "
            f"(`ls -ld {home}` shows the owner), or point --kb at a folder you own."
        )
    if kind == "busy":
        return LockedError(
            f"the database {db} stayed locked by another program (not deepkb's writer) for 30 s; close whatever "
            "holds it open (an sqlite3 shell, a backup or sync tool) and retry."
        )
    if kind == "damaged":
        return DatabaseDamagedError(
            f"the database {db} is damaged ({detail}); deepkb stopped without changing it. Run `deepkb doctor` to "
            "see what can be repaired, restore a backup (`deepkb restore BACKUP --kb NEW_FOLDER`), or ingest your "
            "folders again into a new --kb folder."
        )
    if kind == "io":
        done = f"; {kept}" if kept else ""
        return StorageError(
            f"the disk holding {home} reported an I/O error ({detail}){done}; check the disk (`dmesg`), then run "
            "`deepkb doctor` before writing to this knowledge base again."
        )
    return None


def _kind(exc: BaseException, home: Path) -> str | None:
    kind = _raw_kind(exc)
    if kind not in ("cannot_open", "readonly"):
        return kind
    # SQLite says "unable to open" or "readonly database" for both: ask the folder which one it is
    try:
        if os.statvfs(home).f_flag & os.ST_RDONLY:
            return "readonly"
    except OSError:
        return None
    if not os.access(home, os.W_OK) or kind == "readonly":  # the folder, or the files in it, are not ours to write
        return "permission"
    return None


def _raw_kind(exc: BaseException) -> str | None:
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        text = str(exc).lower()
        if code == _FULL or "disk is full" in text:
            return "full"
        if code == _READONLY or "readonly" in text:
            return "readonly"
        if code in (_BUSY, _LOCKED) or "locked" in text:
            return "busy"
        if code in (_CORRUPT, _NOTADB) or "malformed" in text or "not a database" in text:
            return "damaged"
        if code in (_PERM, _CANTOPEN) or "unable to open" in text:
            return "cannot_open"
        if code == _IOERR or "disk i/o" in text:
            return "io"
        return None
    if isinstance(exc, OSError):
        return {
            errno.ENOSPC: "full",
            errno.EDQUOT: "full",
            errno.EROFS: "readonly",
            errno.EACCES: "permission",
            errno.EPERM: "permission",
            errno.EIO: "io",
        }.get(exc.errno)
    if isinstance(exc, RuntimeError) and "Cannot open file" in str(exc):  # hnswlib writing its index file
        return "cannot_open"
    return None


@contextmanager
def translated(home: Path) -> Iterator[None]:
    """Turn a storage failure inside the block into its domain error (one sentence); other errors pass through."""
    try:
        yield
    except StorageError:
        raise
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        error = explain(exc, home)
        if error is None or error is exc:
            raise
        raise error from exc
