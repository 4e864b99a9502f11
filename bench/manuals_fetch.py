"""Fetch the real-manual corpus of bench/manuals.py from Debian's doc packages, reproducibly.

    .venv/bin/python bench/manuals_fetch.py

`apt-get download` the pinned packages into bench/cache/manuals/debs, `dpkg -x` them, and copy the chosen
documents into bench/cache/manuals/docs (git-ignored) under flat names; man pages are rendered to plain text with
`man -l` the way a user would save them. Documents of seven shapes: PDF reference manuals (gnuplot, bash's
reference), AsciiDoc plain text (git's user manual and command pages), reST sources (Python's library docs), HTML pages
(PostgreSQL, SQLite with its site navigation), one long single-page HTML reference (bash.html), Markdown (rsync's NEWS)
and man pages (rendered text).
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = REPO / "bench" / "cache" / "manuals"
DOCS = ROOT / "docs"

# package=version: the versions the questions' page and line spans were written against (Debian 12, bookworm).
PACKAGES = {
    "gnuplot-doc": "5.4.4+dfsg1-2",
    "git-doc": "1:2.39.5-0+deb12u3",
    "python3.11-doc": "3.11.2-6+deb12u8",
    "postgresql-doc-15": "15.18-0+deb12u1",
    "rsync": "3.2.7-1+deb12u6",
    "findutils": "4.9.0-4",
    "tar": "1.34+dfsg-1.2+deb12u1",
    "bash-doc": "5.2.15-2",
    "sqlite3-doc": "3.40.1-2+deb12u2",
}
SQLITE_PAGES = (
    "lang_upsert", "pragma", "foreignkeys", "wal", "datatype3", "lang_datefunc", "autoinc", "lang_vacuum", "fts5",
    "lang_with", "windowfunctions", "json1", "lang_altertable", "partialindex", "lang_returning", "cli",
    "lang_transaction", "lang_corefunc", "limits",
)  # fmt: skip
GIT_PAGES = ("git-stash", "git-bisect", "git-rebase", "git-reset", "git-worktree", "git-clean", "git-tag", "git-log",
             "gitignore", "git-revert", "git-restore")  # fmt: skip
# source path inside the extracted packages -> name in docs/
FILES = {
    "usr/share/doc/gnuplot/gnuplot.pdf": "gnuplot.pdf",
    "usr/share/doc/git-doc/user-manual.txt": "git-user-manual.txt",
    "usr/share/doc/python3.11/html/_sources/library/argparse.rst.txt": "python-argparse.rst.txt",
    "usr/share/doc/python3.11/html/_sources/library/sqlite3.rst.txt": "python-sqlite3.rst.txt",
    "usr/share/doc/python3.11/html/_sources/library/logging.rst.txt": "python-logging.rst.txt",
    **{
        f"usr/share/doc/postgresql-doc-15/html/{name}.html": f"pg-{name}.html"
        for name in (
            "sql-createindex", "sql-vacuum", "app-pgdump", "indexes-types", "textsearch-controls", "sql-copy",
            "ddl-partitioning", "routine-vacuuming", "transaction-iso", "app-psql",
        )
    },
    "usr/share/doc/bash/bash.html": "bash.html",
    "usr/share/doc/bash/bashref.pdf": "bashref.pdf",
    **{f"usr/share/doc/sqlite3/{name}.html": f"sqlite-{name}.html" for name in SQLITE_PAGES},
    **{f"usr/share/doc/git-doc/{name}.txt": f"{name}.txt" for name in GIT_PAGES},
}  # fmt: skip
GZIPPED = {"usr/share/doc/rsync/NEWS.md.gz": "rsync-NEWS.md"}
MAN_PAGES = {
    "usr/share/man/man1/rsync.1.gz": "rsync.1.txt",
    "usr/share/man/man1/find.1.gz": "find.1.txt",
    "usr/share/man/man1/tar.1.gz": "tar.1.txt",
}


def unpack(packages: dict[str, str], root: Path) -> Path:
    """`apt-get download` the pinned Debian packages into root/debs and `dpkg -x` them into root/root (returned)."""
    debs, tree = root / "debs", root / "root"
    debs.mkdir(parents=True, exist_ok=True)
    specs = [f"{name}={version}" for name, version in packages.items()]
    subprocess.run(["apt-get", "download", *specs], cwd=debs, check=True, capture_output=True)
    shutil.rmtree(tree, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(tree)], check=True)
    return tree


def fetch() -> Path:
    """Download, extract and copy; returns the docs folder. Does nothing when it is already complete."""
    wanted = [*FILES.values(), *MAN_PAGES.values(), *GZIPPED.values()]
    if DOCS.exists() and all((DOCS / name).exists() for name in wanted):
        return DOCS
    tree = unpack(PACKAGES, ROOT)
    DOCS.mkdir(parents=True, exist_ok=True)
    for source, name in FILES.items():
        shutil.copyfile(tree / source, DOCS / name)
    for source, name in GZIPPED.items():
        (DOCS / name).write_bytes(gzip.decompress((tree / source).read_bytes()))
    env = {**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8", "MAN_KEEP_FORMATTING": ""}
    for source, name in MAN_PAGES.items():
        rendered = subprocess.run(["man", "-l", str(tree / source)], env=env, check=True, capture_output=True).stdout
        plain = subprocess.run(["col", "-bx"], input=rendered, check=True, capture_output=True).stdout
        (DOCS / name).write_bytes(plain)
    return DOCS


if __name__ == "__main__":
    folder = fetch()
    for path in sorted(folder.iterdir()):
        print(f"{path.stat().st_size:>9}  {path.relative_to(REPO)}")
    sys.exit(0)
