"""Which files a sync looks at: the roots resolved, the folders walked, hidden entries and ignore rules left out.

Ignore rules follow gitignore and live in `.deepkbignore` files (see README, Ingest); editor and download
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

import pathspec

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
            yield from _walk(str(root), IgnoreRules(), skip_set, skipped)


def _walk(
    folder: str, rules: IgnoreRules, skip: set[str], skipped: list[Skipped] | None
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
        try:
            rules = rules.below(folder)
        except UnreadableIgnoreFile as exc:  # its rules may hide private files: leave the folder out, say why
            if skipped is not None:
                skipped.append(Skipped(folder, f"unreadable folder ({exc})"))
            return
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
            if not entry.is_symlink() and entry.path not in skip and not rules.ignored(entry.path, name, True):
                folders.append(entry.path)
            continue
        if rules.ignored(entry.path, name, False):
            continue
        try:
            st = entry.stat()
        except OSError:
            continue  # a dangling link or a file gone since listing
        if stat.S_ISREG(st.st_mode):
            yield entry.path, st
    for path in folders:
        yield from _walk(path, rules, skip, skipped)


class UnreadableIgnoreFile(Exception):
    """A .deepkbignore that exists but cannot be read; the message says why."""


class IgnoreRules:
    """The ignore rules in force in one folder: the defaults, then each .deepkbignore from the root down.

    Each file follows gitignore (via pathspec): its patterns are relative to its folder, `*` does not cross `/`,
    `**/x` matches x at any depth, `dir/` matches folders only, `!keep.md` re-includes; the last matching pattern
    wins, and a deeper file's patterns win over a shallower one's. scan and watch both ask this class.
    """

    def __init__(self, chain: tuple[tuple[str, pathspec.PathSpec], ...] = ()) -> None:
        self.chain = chain

    def below(self, folder: str) -> IgnoreRules:
        """These rules plus the folder's own .deepkbignore (raises UnreadableIgnoreFile)."""
        spec = read_ignore_file(Path(folder))
        return IgnoreRules((*self.chain, (folder.rstrip(os.sep) + os.sep, spec))) if spec else self

    def ignored(self, path: str, name: str, is_dir: bool) -> bool:
        result = bool(_DEFAULT_ANY.match(name) or (is_dir and _DEFAULT_DIRS.match(name)))
        for base, spec in self.chain:
            if not path.startswith(base):
                continue
            rel = path[len(base) :].replace(os.sep, "/") + ("/" if is_dir else "")
            include = spec.check_file(rel).include
            if include is not None:
                result = include
        return result


def read_ignore_file(folder: Path) -> pathspec.PathSpec | None:
    """A folder's .deepkbignore compiled with gitignore rules; None when it has none."""
    path = folder / IGNORE_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnreadableIgnoreFile(f"its {IGNORE_FILE} cannot be read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise UnreadableIgnoreFile(f"its {IGNORE_FILE} is not UTF-8 text") from exc
    return pathspec.GitIgnoreSpec.from_lines(lines)


# The default patterns, matched against every entry's name: one regular expression each for files and folders.
_DEFAULT_ANY = re.compile("|".join(fnmatch.translate(p) for p in DEFAULT_IGNORES if not p.endswith("/")))
_DEFAULT_DIRS = re.compile("|".join(fnmatch.translate(p.rstrip("/")) for p in DEFAULT_IGNORES if p.endswith("/")))
