"""Fault injection for the crash-safety tests: DEEPKB_FAULT=name:n kills the process the nth time name is reached.

SQLite's own test suite works this way; without a way to stop at a chosen instruction, a kill test only ever hits
the places where a process spends its time.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_seen: Counter[str] = Counter()


def checkpoint(name: str) -> None:
    """A named place where a kill must leave the knowledge base consistent."""
    wanted = os.environ.get("DEEPKB_FAULT")
    if not wanted:
        return
    _seen[name] += 1
    target, _, count = wanted.partition(":")
    if target == name and _seen[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
