"""Which files a sync looks at: the roots resolved, the folders walked, hidden entries and ignore rules left out.

Ignore rules are gitignore-like and live in `.deepkbignore` files (see README, Ingest); editor and download
leftovers and dependency folders are always left out.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from deepkb.errors import UsageError

IGNORE_FILE = ".deepkbignore"
DEFAULT_IGNORES = ["*~", "*.swp", "*.swo", "*.part", "*.tmp", "*.crdownload", "__pycache__/", "node_modules/"]


@dataclass
class Skipped:
    """A file that was not ingested, and why."""

    path: str
    reason: str


def resolve_roots(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Absolute, de-duplicated roots; a path that does not exist is a usage error."""
    if not paths:
        raise UsageError("give at least one file or folder to ingest, e.g. `deepkb ingest ~/notes`.")
    roots: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        if not path.exists():
            raise UsageError(f"{raw}: no such file or folder.")
        path = path.resolve()
        if path not in roots:
            roots.append(path)
    return roots


def scan(
    roots: Sequence[Path], skip: Sequence[Path] = (), skipped: list[Skipped] | None = None
) -> Iterator[tuple[str, os.stat_result]]:
    """Files under the roots with their stat: hidden entries, the KB's own folder and ignore patterns left out."""
    skip_set = {str(p.resolve()) for p in skip}
    for root in roots:
        if root.is_file():
            yield str(root), root.stat()
        else:
            yield from _walk(str(root), [], skip_set, skipped)


def _walk(
    folder: str, active: list[tuple[str, tuple[str, bool]]], skip: set[str], skipped: list[Skipped] | None
) -> Iterator[tuple[str, os.stat_result]]:
    """One folder's files (sorted by name), then its subfolders'; symlinked folders are not followed.

    The roots are resolved and links to folders are not entered, so every folder path here is already its real
    path: the KB's own folder is recognised by string, without a resolve() per folder. One stat per file.
    """
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        if skipped is not None:
            skipped.append(Skipped(folder, f"unreadable folder ({exc.strerror})"))
        return
    if any(e.name == IGNORE_FILE for e in entries):
        active = active + [(folder, rule) for rule in read_ignore_rules(Path(folder))]
    folders = []
    for entry in entries:
        name = entry.name
        if name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            if not entry.is_symlink() and entry.path not in skip and not _ignored(entry.path, name, True, active):
                folders.append(entry.path)
            continue
        if _ignored(entry.path, name, False, active):
            continue
        try:
            st = entry.stat()
        except OSError:
            continue  # a dangling link or a file gone since listing
        if stat.S_ISREG(st.st_mode):
            yield entry.path, st
    for path in folders:
        yield from _walk(path, active, skip, skipped)


def read_ignore_rules(folder: Path) -> list[tuple[str, bool]]:
    lines: list[str] = []
    try:
        lines = (folder / IGNORE_FILE).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        pass
    rules = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line[1:], False) if line.startswith("!") else (line, True))
    return rules


def is_ignored(path: Path, is_dir: bool, active: list[tuple[str, tuple[str, bool]]]) -> bool:
    """gitignore-like: `name`, `*.log`, `dir/`, `sub/path`, `!keep`; the last matching rule wins."""
    return _ignored(str(path), path.name, is_dir, active)


def _ignored(path: str, name: str, is_dir: bool, active: list[tuple[str, tuple[str, bool]]]) -> bool:
    result = bool(_DEFAULT_ANY.match(name) or (is_dir and _DEFAULT_DIRS.match(name)))
    for base, (pattern, ignore) in active:
        if _match(path, name, is_dir, base, pattern):
            result = ignore
    return result


def _match(path: str, name: str, is_dir: bool, base: str, pattern: str) -> bool:
    if pattern.endswith("/"):
        if not is_dir:
            return False
        pattern = pattern.rstrip("/")
    if "/" in pattern:
        rel = os.path.relpath(path, base)
        return fnmatch.fnmatch(rel, pattern.lstrip("/"))
    return fnmatch.fnmatch(name, pattern)


# The default patterns, matched against every entry's name: one regular expression each for files and folders.
_DEFAULT_ANY = re.compile("|".join(fnmatch.translate(p) for p in DEFAULT_IGNORES if not p.endswith("/")))
_DEFAULT_DIRS = re.compile("|".join(fnmatch.translate(p.rstrip("/")) for p in DEFAULT_IGNORES if p.endswith("/")))
