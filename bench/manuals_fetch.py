"""Fetch the real-manual corpus of bench/manuals.py from Debian's doc packages, reproducibly.

    .venv/bin/python bench/manuals_fetch.py

`apt-get download` the pinned packages into bench/cache/manuals/debs, `dpkg -x` them, and copy the chosen
documents into bench/cache/manuals/docs (git-ignored) under flat names; man pages are rendered to plain text with
`man -l` the way a user would save them. Documents of five shapes: a PDF reference manual (gnuplot), a long
AsciiDoc plain-text manual (git's user manual), reST sources (Python's library docs), HTML pages (PostgreSQL) and
man pages (rendered text).
"""

from __future__ import annotations

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
}
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
}  # fmt: skip
MAN_PAGES = {
    "usr/share/man/man1/rsync.1.gz": "rsync.1.txt",
    "usr/share/man/man1/find.1.gz": "find.1.txt",
    "usr/share/man/man1/tar.1.gz": "tar.1.txt",
}


def fetch() -> Path:
    """Download, extract and copy; returns the docs folder. Does nothing when it is already complete."""
    wanted = [*FILES.values(), *MAN_PAGES.values()]
    if DOCS.exists() and all((DOCS / name).exists() for name in wanted):
        return DOCS
    debs, tree = ROOT / "debs", ROOT / "root"
    debs.mkdir(parents=True, exist_ok=True)
    specs = [f"{name}={version}" for name, version in PACKAGES.items()]
    subprocess.run(["apt-get", "download", *specs], cwd=debs, check=True, capture_output=True)
    shutil.rmtree(tree, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(tree)], check=True)
    DOCS.mkdir(parents=True, exist_ok=True)
    for source, name in FILES.items():
        shutil.copyfile(tree / source, DOCS / name)
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
