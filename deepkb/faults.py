"""Fault injection for the crash-safety tests: DEEPKB_FAULT=name:n[:kind] makes the nth arrival at a named place fail.

kind is `kill` (SIGKILL, the default), `enospc` or `eio` (an OSError: a full disk, a failing disk), `sqlfull`
(SQLite's own "database or disk is full") or `sigint` (Ctrl-C). SQLite's own test suite works this way; without a way to stop at a
chosen instruction, a kill test only ever hits the places where a process spends its time.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
from collections import Counter

_seen: Counter[str] = Counter()
KINDS = ("kill", "enospc", "eio", "sqlfull", "sigint")


def checkpoint(name: str) -> None:
    """A named place where a kill, a full disk or an I/O error must leave the knowledge base consistent."""
    wanted = os.environ.get("DEEPKB_FAULT")
    if not wanted:
        return
    _seen[name] += 1
    target, _, rest = wanted.partition(":")
    count, _, kind = rest.partition(":")
    if target != name or _seen[name] != int(count or 1):
        return
    if kind == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if kind == "eio":
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    if kind == "sqlfull":
        raise sqlite3.OperationalError("database or disk is full")
    if kind == "sigint":  # Ctrl-C: Python raises KeyboardInterrupt here
        os.kill(os.getpid(), signal.SIGINT)
        return
    os.kill(os.getpid(), signal.SIGKILL)


def reset() -> None:
    """Forget how often each place was reached (a test that injects faults in-process, one run after another)."""
    _seen.clear()
