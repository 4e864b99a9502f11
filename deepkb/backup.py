"""Backup and restore of a knowledge-base home: every SQLite database, the vector index and config.toml.

Databases are copied with SQLite's online backup API in one step: the copy is one consistent snapshot, taken
while `deepkb watch` or `deepkb serve` keep writing (WAL readers never block the writer, nor it them). The
vector index is a cache: copied as it is, and repaired from the snapshot on the restored KB's first search if a
write landed in between. A manifest with each file's sha256 lets `restore` refuse a damaged backup; a damaged
index alone is rebuilt from the restored database instead. `restore` treats the backup as untrusted input: only
the file names deepkb writes, only regular files, and no setting that sends data off the machine without consent.
Downloaded answer models (<home>/models) are not copied: `deepkb models pull` gets them again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import sys
import tempfile
import time
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

from deepkb import __version__
from deepkb.checksum import file_sha256
from deepkb.config import CONFIG_FILE, REMOTE_SETTINGS
from deepkb.errors import DatabaseDamagedError, DeepKBError, UsageError
from deepkb.paths import CONVERSATIONS_FILE
from deepkb.storage import checks
from deepkb.storage.catalog import DB_FILE
from deepkb.storage.errors import explain, translated
from deepkb.storage.vectors import INDEX_FILE, SIDECAR_FILE

MANIFEST = "deepkb-backup.json"
DATABASES = (DB_FILE, CONVERSATIONS_FILE)  # copied with SQLite's online backup API when present
PLAIN_FILES = (INDEX_FILE, SIDECAR_FILE, CONFIG_FILE)  # copied byte for byte when present
RESTORABLE = frozenset(DATABASES + PLAIN_FILES)  # the only names a backup's manifest may give
DERIVED_FILES = (INDEX_FILE, SIDECAR_FILE)  # a cache of the database: rebuilt when damaged
MAX_MANIFEST_BYTES = 1 << 20
MAX_FILE_BYTES = 1 << 50
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def backup(home: Path, dest: Path) -> dict:
    """Write a consistent copy of the KB at home into dest (a new or empty folder); returns the manifest."""
    dest = dest.expanduser().absolute()
    if not (home / DB_FILE).exists():
        raise UsageError(f"{home} holds no knowledge base (no kb.sqlite); nothing to back up.")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} already exists and is not an empty folder; give a new folder, e.g. {dest}-2.")
    if dest == home or dest.is_relative_to(home):
        raise UsageError(f"{dest} is inside the knowledge base {home}; back it up to another folder.")
    started = time.time()
    files: dict[str, dict] = {}
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for name in DATABASES:
            if (home / name).is_file():
                _copy_database(home / name, dest / name)
                files[name] = _describe(dest / name)
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


def restore(src: Path, home: Path, trust_config: bool = False) -> dict:
    """Copy a backup made by backup() into home, which must hold no knowledge base yet; returns the manifest.

    The backup is untrusted input: its manifest may name only the files deepkb writes, each a regular file in SRC
    whose bytes match the recorded sha256 as they are copied. Anything else refuses the whole restore before a file
    lands in home. Settings that send data off the machine (REMOTE_SETTINGS) are left out of the restored
    config.toml unless trust_config. A damaged vector index (a cache) is rebuilt from the restored database.
    The returned manifest carries `left_out_settings` and `index_rebuilt` besides the backup's own keys.
    """
    src = src.expanduser().absolute()
    home = home.expanduser().absolute()
    manifest = _read_manifest(src)
    files: dict[str, dict] = manifest["files"]
    taken = sorted({name for name in files if os.path.lexists(home / name)} | (
        {DB_FILE} if os.path.lexists(home / DB_FILE) else set()
    ))  # fmt: skip
    if taken:
        raise UsageError(
            f"{home} already holds a knowledge base ({taken[0]}); restore into an empty folder with --kb NEW_FOLDER, "
            "or move this one aside first."
        )
    created = not os.path.lexists(home)
    staging: Path | None = None
    index_rebuilt = False
    left_out: list[str] = []
    try:
        with translated(home):
            home.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=home))
            staged: list[str] = []
            for name, info in files.items():
                problem = _copy_verified(src / name, staging / name, info)
                if problem is None:
                    staged.append(name)
                elif name in DERIVED_FILES:  # a cache: rebuilt from the database below
                    index_rebuilt = True
                else:
                    raise UsageError(
                        f"{src / name} is missing or differs from what the backup recorded ({problem}); the backup "
                        "is damaged, nothing was restored."
                    )
            for name in DATABASES:
                if name in staged and not _is_sqlite(staging / name):
                    raise UsageError(f"{src / name} is not an SQLite database; the backup is damaged, nothing was "
                                     "restored.")  # fmt: skip
            if index_rebuilt or INDEX_FILE not in files:
                for name in DERIVED_FILES:
                    (staging / name).unlink(missing_ok=True)
                staged = [name for name in staged if name not in DERIVED_FILES]
            if CONFIG_FILE in staged and not trust_config:
                left_out = _leave_out_remote(staging / CONFIG_FILE, src / CONFIG_FILE)
            for name in sorted(staged, key=lambda n: n == DB_FILE):  # the database last: a KB only once complete
                os.replace(staging / name, home / name)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(home, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    if index_rebuilt or INDEX_FILE not in files:
        index_rebuilt = _rebuild_index(home) or index_rebuilt
    return {**manifest, "left_out_settings": left_out, "index_rebuilt": index_rebuilt}


def _read_manifest(src: Path) -> dict:
    """The backup's manifest, checked to name only files deepkb writes, each with a size and a sha256."""
    path = src / MANIFEST
    where = f"{path} is not a valid deepkb backup manifest"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UsageError(
            f"{src} is not a deepkb backup (no {MANIFEST}); give the folder `deepkb backup` wrote."
        ) from None
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror}); the backup is damaged.") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{where} (not a regular file); nothing was restored.")
    if st.st_size > MAX_MANIFEST_BYTES:
        raise UsageError(f"{where} ({st.st_size} bytes, more than a manifest holds); nothing was restored.")
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            manifest = json.loads(fh.read(MAX_MANIFEST_BYTES + 1).decode("utf-8"))
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror}); the backup is damaged.") from None
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, or nested deeper than any manifest
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise UsageError(f"{where} ({reason}); nothing was restored.") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise UsageError(f'{where} (no "files" object); nothing was restored.')
    for name, info in files.items():
        if name not in RESTORABLE:
            raise UsageError(
                f"{where}: it names {name!r}, which is not a file deepkb writes ({', '.join(sorted(RESTORABLE))}); "
                "nothing was restored."
            )
        if not (isinstance(info, dict) and type(info.get("size")) is int and 0 <= info["size"] <= MAX_FILE_BYTES
                and isinstance(info.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", info["sha256"])):  # fmt: skip
            raise UsageError(f"{where}: the entry for {name} needs a size and a sha256; nothing was restored.")
    if DB_FILE not in files:
        raise UsageError(f"{src} holds no {DB_FILE}; the backup is incomplete.")
    return manifest


def _copy_verified(source: Path, target: Path, info: dict) -> str | None:
    """Copy one backed-up file, hashing the bytes as they are written; how it is damaged, or None.

    A link or anything but a regular file is no damage but a crafted backup: refused with a UsageError."""
    hostile = f"{source} is not a regular file (a link, a device or a folder); this is not a backup deepkb wrote, "
    try:
        fd = os.open(source, os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block the open
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise UsageError(hostile + "nothing was restored.") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(hostile + "nothing was restored.")
        if st.st_size != info["size"]:
            return f"{st.st_size} bytes, not {info['size']}"
        digest, copied = hashlib.sha256(), 0
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
        with os.fdopen(out, "wb") as dst:
            while (block := fh.read(1 << 20)) and copied <= info["size"]:
                digest.update(block)
                dst.write(block)
                copied += len(block)
            dst.flush()
            os.fsync(dst.fileno())
    if copied != info["size"] or digest.hexdigest() != info["sha256"]:
        target.unlink()
        return "its sha256 differs"
    os.chmod(target, stat.S_IMODE(st.st_mode) & 0o666)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    return None


def _leave_out_remote(config: Path, origin: Path) -> list[str]:
    """Drop the settings that send data off the machine from a restored config.toml; the names dropped."""
    try:
        values = tomllib.loads(config.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{origin} is not valid TOML ({exc}); the backup is damaged, nothing was restored.") from None
    dropped = [name for name in REMOTE_SETTINGS if name in values]
    if dropped:
        kept = {k: v for k, v in values.items() if k not in REMOTE_SETTINGS}
        lines = [
            f"# restored by deepkb {__version__}; left out: {', '.join(dropped)} (they send data off this machine)"
        ]
        lines += [f"{k} = {_toml_value(v)}" for k, v in kept.items()]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dropped


def _toml_value(value: object) -> str:
    """A flat config value written back as TOML (config.toml holds only strings, numbers, booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str, list)):
        return json.dumps(value, ensure_ascii=False)  # a JSON string, number or array reads the same in TOML
    return json.dumps(str(value))


def _rebuild_index(home: Path) -> bool:
    """Build the vector index of a restored KB from its database now, so its first search does not pay for it."""
    from deepkb.config import Settings
    from deepkb.storage.storage import Storage

    try:
        s = Settings.load(home)
    except UsageError:
        s = Settings(home=home)
    storage = Storage(home, m=s.hnsw_m, ef_construction=s.hnsw_ef_construction, ef_search=s.hnsw_ef_search)
    try:
        return storage.sync_index() is not None
    except (OSError, RuntimeError, sqlite3.Error, DeepKBError):  # still a cache: the first search builds it
        return False
    finally:
        storage.close()


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(16) in (b"", b"SQLite format 3\x00")  # an empty file is an empty database to SQLite


def _copy_database(source: Path, target: Path) -> None:
    """SQLite's online backup of one database, written under a temporary name and renamed when complete."""
    partial = target.with_name(target.name + ".partial")
    checks.snapshot(source, partial)
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
