"""Live sync: watch folders and keep the knowledge base in step with them, in batches, from one background thread.

File-system events only say *that* something under a root changed; *what* changed is decided by the same
incremental sync `deepkb ingest` runs (unchanged files are only stat'ed), so renames, directory moves and an
editor's atomic save follow exactly ingest's rules. Events are debounced: a batch starts after a quiet period,
or at the latest `max_delay` seconds after its first event, and everything pending becomes one `kb.ingest()`.
The watcher keeps other processes from writing for its whole life; readers (other threads, other processes) never wait.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from deepkb.errors import DeepKBError, UsageError
from deepkb.ingest.scan import IGNORE_FILE, IgnoreRules, Skipped, UnreadableIgnoreFile, resolve_roots
from deepkb.ingest.sync import Change, IngestReport, Progress

if TYPE_CHECKING:
    from deepkb.kb import KnowledgeBase

log = logging.getLogger(__name__)

# Events that never change what a file holds: reading a file (ours included) opens and closes it, and a folder's
# own "modified" accompanies every create/delete inside it, which is reported on its own.
_NOISE = {"opened", "closed_no_write"}


class _Stopped(Exception):
    """Raised from the progress hooks to abandon a sync when the watcher is stopping (each commit is atomic)."""


class _StopCheck(Progress):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def _check(self) -> None:
        if self.watcher._stopping:
            raise _Stopped

    # Only before a transaction: a file_done hook runs after its commit, whose changes must still be reported.
    def scanned(self, files_to_read: int, files_total: int) -> None:
        self._check()

    def embedded(self, texts: int) -> None:
        self._check()


@dataclass(eq=False)
class _Root:
    """A watched path: a folder (watched recursively) or a single file (its folder watched, one level)."""

    path: Path
    is_file: bool
    watch: object | None = None  # the watchdog ObservedWatch while scheduled
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the watched folder when it was scheduled
    missing: bool = False
    rules: dict[Path, IgnoreRules] = field(default_factory=dict)  # the rules in force in each folder seen

    @property
    def folder(self) -> Path:
        return self.path.parent if self.is_file else self.path


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher, root: _Root) -> None:
        self.watcher, self.root = watcher, root

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.watcher._on_event(self.root, event)


class Watcher:
    """Keeps a KnowledgeBase in step with folders until stopped; the CLI, the TUI and the server all run this.

    Callbacks run on the watcher's worker thread. The watcher holds the KB's lock against other processes from
    start to stop and takes the writer lock for each batch; other threads may search the same KnowledgeBase
    meanwhile (one Storage, one HNSW graph: each commit is applied to the graph they read, no repair needed).
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        paths: Sequence[str | os.PathLike],
        *,
        debounce: float = 0.4,
        max_delay: float = 3.0,
        poll_interval: float = 2.0,
        holder: str = "deepkb watch",
        on_change: Callable[[Change], None] | None = None,
        on_skipped: Callable[[Skipped], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_batch: Callable[[IngestReport], None] | None = None,
    ) -> None:
        self.kb = kb
        self.paths = list(paths)
        self.debounce = debounce  # seconds without events before a batch starts
        self.max_delay = max_delay  # a continuous stream of events is still synced this often
        self.poll_interval = poll_interval  # how often vanished roots are looked for again
        self.holder = holder  # what a second writer is told holds the lock
        self.on_change, self.on_skipped, self.on_error, self.on_batch = on_change, on_skipped, on_error, on_batch
        self.roots: list[_Root] = []
        self.ready = threading.Event()  # set once the catch-up sync is done
        self.catch_up: IngestReport | None = None
        self.batches = 0  # ingest batches run, the catch-up included
        self.busy = False  # a sync is running right now
        self._cond = threading.Condition()
        self._dirty: set[_Root] = set()
        self._first_event = self._last_event = self._not_before = 0.0
        self._stopping = False
        self._retry = 1.0
        self._skips: dict[str, tuple] = {}  # reported bad files: path -> (reason, size, mtime_ns)
        self._observer = None
        self._thread: threading.Thread | None = None
        self._stack = ExitStack()

    # lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> Watcher:
        """Take the writer lock, start watching, and begin the catch-up sync in the background."""
        if self._thread is not None:
            raise RuntimeError("this Watcher was already started")
        from watchdog.observers import Observer

        self.roots = [_Root(p, p.is_file()) for p in resolve_roots(self.paths)]
        self._stack.enter_context(self.kb.storage.hold(self.holder))  # its thread takes writer() per batch
        try:
            self._observer = Observer()
            for root in self.roots:
                self._schedule(root, raise_errors=True)
            self._observer.start()
        except BaseException:
            self._shutdown_observer()
            self._stack.close()
            raise
        self._thread = threading.Thread(target=self._run, name="deepkb-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching, finish or abandon the running batch, save the vector index, release the lock."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._shutdown_observer()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        try:
            if self.kb.index_dirty:
                self.kb.save_index()
        except Exception as exc:  # the index is a cache: the next open repairs it from SQLite
            self._emit(self.on_error, f"could not save the vector index ({exc}); it will be repaired on next use.")
        finally:
            self._stack.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the catch-up sync is done; False if it is not done within the timeout."""
        return self.ready.wait(timeout)

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # observers --------------------------------------------------------------------------------------------
    def _schedule(self, root: _Root, raise_errors: bool = False) -> bool:
        try:
            st = root.folder.stat()
            root.watch = self._observer.schedule(_Handler(self, root), str(root.folder), recursive=not root.is_file)
        except OSError as exc:
            if raise_errors:
                raise DeepKBError(_watch_error(root.folder, exc)) from exc
            self._emit(self.on_error, _watch_error(root.folder, exc))
            return False
        root.identity = (st.st_dev, st.st_ino)
        root.rules.clear()
        return True

    def _unschedule(self, root: _Root) -> None:
        watch, root.watch = root.watch, None
        if watch is not None:
            try:
                self._observer.unschedule(watch)
            except (KeyError, RuntimeError, OSError):  # its emitter already stopped with the folder
                pass

    def _shutdown_observer(self) -> None:
        if self._observer is not None and self._observer.is_alive():
            self._observer.stop()
            self._observer.join()

    def _poll_roots(self) -> None:
        """Notice roots that vanished or were replaced, and watch them again (and catch up) once they are back."""
        for root in self.roots:
            identity = _identity(root.folder)
            if root.watch is not None and identity != root.identity:
                self._unschedule(root)
                identity = _identity(root.folder)
            if root.watch is None and identity is not None and self._schedule(root):
                self._mark_dirty([root])
            present = root.path.exists()
            if root.missing and present:
                root.missing = False
                self._emit(self.on_error, f"{root.path} is back; catching up.")
                self._mark_dirty([root])
            elif not present:
                self._note_missing(root)

    def _note_missing(self, root: _Root) -> None:
        if not root.missing:
            root.missing = True
            self._emit(
                self.on_error,
                f"{root.path} has disappeared; its documents stay in the knowledge base until it comes back.",
            )

    # events ---------------------------------------------------------------------------------------------
    def _on_event(self, root: _Root, event: FileSystemEvent) -> None:
        """Runs on watchdog's dispatch thread: decide quickly whether the event can change the KB."""
        if event.event_type in _NOISE or (event.is_directory and event.event_type == "modified"):
            return
        if event.is_directory and event.event_type in ("moved", "deleted"):
            root.rules.clear()
        paths = [os.fsdecode(p) for p in (event.src_path, event.dest_path) if p]
        if any(self._relevant(root, p, event.is_directory) for p in paths):
            self._mark_dirty([root])

    def would_sync(self, path: str | os.PathLike, is_dir: bool = False) -> bool:
        """Whether a change at path starts a sync (False for hidden, ignored or temp paths, and the KB's own files)."""
        path = os.path.abspath(path)
        return any(self._relevant(root, path, is_dir) for root in self.roots)

    def _relevant(self, root: _Root, path: str, is_dir: bool) -> bool:
        """False for paths a sync would skip anyway: hidden, temp, .deepkbignore'd, or the KB's own folder."""
        if root.is_file:
            return path == str(root.path)
        home = str(self.kb.home)
        if path == home or path.startswith(home + os.sep):
            return False
        try:
            parts = Path(path).relative_to(root.path).parts
        except ValueError:
            return False
        if parts and parts[-1] == IGNORE_FILE:
            root.rules.clear()
            return True
        here, rules = root.path, IgnoreRules()
        for i, name in enumerate(parts):
            if name.startswith("."):
                return False
            if here not in root.rules:
                try:
                    root.rules[here] = rules.below(str(here))
                except UnreadableIgnoreFile:
                    return True  # the sync reports it
            rules = root.rules[here]
            if rules.ignored(str(here / name), name, is_dir if i == len(parts) - 1 else True):
                return False
            here = here / name
        return True

    def _mark_dirty(self, roots: Iterable[_Root], delay: float = 0.0) -> None:
        with self._cond:
            now = time.monotonic()
            if not self._dirty:
                self._first_event = now
            self._dirty.update(roots)
            self._last_event = now
            self._not_before = max(self._not_before, now + delay)
            self._cond.notify_all()

    def _take_batch(self, next_poll: float) -> set[_Root] | None:
        """Wait for the next batch (debounced and capped); an empty set means 'time to poll'; None: stopping."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                if self._dirty:
                    due = max(
                        min(self._last_event + self.debounce, self._first_event + self.max_delay), self._not_before
                    )
                    if due <= now:
                        roots, self._dirty = self._dirty, set()
                        return roots
                else:
                    due = next_poll
                if next_poll <= now:
                    return set()
                self._cond.wait(min(due, next_poll) - now)
            return None

    # the worker -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug, not a file problem: say so instead of dying silently
            log.exception("deepkb watch worker failed")
            self._emit(self.on_error, f"the watcher stopped ({type(exc).__name__}: {exc}).")
        finally:
            self.ready.set()

    def _loop(self) -> None:
        try:
            self.catch_up = self._sync(self.roots)
        finally:
            self.ready.set()
        next_poll = time.monotonic() + self.poll_interval
        while True:
            roots = self._take_batch(next_poll)
            if roots is None:
                return
            if roots:
                self._sync(roots)
            if time.monotonic() >= next_poll:
                self._poll_roots()
                next_poll = time.monotonic() + self.poll_interval

    def _sync(self, roots: Iterable[_Root]) -> IngestReport | None:
        """One batch: one ingest of the roots that changed; nothing that goes wrong here stops the watcher."""
        wanted, present = set(roots), []
        for root in (r for r in self.roots if r in wanted):
            if not root.path.exists():
                self._note_missing(root)
                continue
            if root.missing:
                root.missing = False
                self._emit(self.on_error, f"{root.path} is back; catching up.")
            present.append(root)
        if not present or self._stopping:
            return None
        self.busy = True
        try:
            report = self.kb.ingest([r.path for r in present], progress=_StopCheck(self))
        except _Stopped:
            return None
        except UsageError:  # a root vanished between the check and the scan; the next round notes it
            self._mark_dirty(present, delay=self.debounce)
            return None
        except Exception as exc:  # permissions, a full disk, ...: report, retry later with a growing pause
            log.debug("watch sync failed", exc_info=True)
            why = str(exc) if isinstance(exc, DeepKBError) else f"{type(exc).__name__}: {exc}"
            self._emit(self.on_error, f"sync failed ({why}); retrying in {self._retry:.0f} s.")
            self._mark_dirty(present, delay=self._retry)
            self._retry = min(self._retry * 2, 60.0)
            return None
        finally:
            self.busy = False
        self._retry = 1.0
        self.batches += 1
        self._publish(report)
        return report

    def _publish(self, report: IngestReport) -> None:
        for change in report.changes:
            self._skips.pop(change.path, None)
            self._emit(self.on_change, change)
        for skipped in report.skipped:
            try:
                st = os.stat(skipped.path)
            except OSError:
                continue  # vanished mid-read: its deletion is the next batch's business
            key = (skipped.reason, st.st_size, st.st_mtime_ns)
            if self._skips.get(skipped.path) != key:  # a bad file is reported again only after it changes
                self._skips[skipped.path] = key
                self._emit(self.on_skipped, skipped)
        self._emit(self.on_batch, report)

    def _emit(self, callback: Callable | None, *args: object) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:  # a failing display must not stop the sync
            log.exception("deepkb watch callback failed")


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        st = folder.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if os.path.isdir(folder) else None


def _watch_error(folder: Path, exc: OSError) -> str:
    import errno

    if exc.errno == errno.ENOSPC:
        return (
            f"cannot watch {folder}: the system's limit on watched folders is reached; raise it with "
            "`sudo sysctl fs.inotify.max_user_watches=524288`, or watch fewer folders."
        )
    return f"cannot watch {folder} ({exc.strerror or exc})."
