"""The reader of a sync: each changed file read once and hashed once, then loaded and chunked, in a thread of its
own while the caller (deepkb.ingest.sync) embeds and stores the files before it."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deepkb.errors import LoadError
from deepkb.ingest.chunker import chunk_units
from deepkb.ingest.scan import Skipped
from deepkb.loaders import load
from deepkb.types import Chunk

if TYPE_CHECKING:
    from deepkb.ingest.sync import _Plan, _Run

# Bump when loaders or the chunker change what they produce: older documents are then re-chunked on the next
# sync (their unchanged chunk texts keep their stored vectors).
# 5: man pages, mbox and Maildir were plain text before; scanned PDF pages are OCR'd; headings of the text's own
# syntax; HTML lines with their own source lines; no PDF heading from the page before.
# 6: an HTML admonition's heading ("Note") labels its box, not the rest of the section; a DocBook reference page's
# name heads its sections; a chunk never spans more than types.MAX_GAP source lines without text (SQLite's syntax
# diagrams).
# 7: a chunk never ends on a lead-in (an HTML definition list's term), which starts the next
# chunk once the open one is half full.
# 8: an HTML definition list's entry stands under its terms in the heading path ("set [-abef…] > -e"), and a
# chunk's heading is what its paragraphs' paths share.
# 9: so does a man page's tagged paragraph, rendered to text ("OPTIONS > --delete").
# 10: a heading whose section is empty (SQLite's "1. Syntax" over a dropped diagram) does not head the chunk of the
# section after it, which had no heading path at all ("1. Syntax" and "2. Description" share nothing); a PDF page's
# printed number alone on its first or last line is not text (a chunk "113" of its own); terms whose definition is
# longer than a chunk stay with its first lines (bash's bind: five synopsis lines were a chunk of their own); an
# AsciiDoc labeled list's term on its own line ("Testing partial commits::") is a term too.
# 11: SQLite's hidden <h> headings head their entries (pragma.html: "List Of PRAGMAs > PRAGMA integrity_check").
# 12: a PDF's running heads that change with the chapter ("Chapter 3: Basic Shell Features 6") are not text.
# 13: AsciiDoc's markup lines (block anchors `[[id]]`, `[verse]`, `include::...[]`) are not text.
# 14: a PDF bookmark whose title is not on its page takes its place by the outline's order, not the page's top.
# 15: an HTML term in a block of its own inside <dt> (SQLite: <dt><p><b>abs(X)</b></dt>) is still a term.
# 16: a PDF's table of contents pages are not text.
# 17: reST object descriptions (`.. method:: execute(sql, parameters=(), /)`) are entries under their signature.
# 18: reST/plain-text table borders, labels and index directives, a rendered man page's header and footer lines, a
#     PDF's back-of-book index pages and an HTML page's <title> set again before its first heading are not text;
#     AsciiDoc labeled lists are entries under their terms; a section title goes on with the term that opens it.
# 19: a text file with AsciiDoc's listing blocks, directives (`ifdef::x[]`) or list continuations is read as AsciiDoc
#     even with few titles and anchors (git's howtos and included pages): none of its listing lines is a title. roff:
#     a macro definition ends at ".  ." too (Asciidoctor's pages were "no text"), a line ending in "\\" goes on with
#     the next, an escaped space stays in its argument and macro arguments are read in copy mode. A chunk neither
#     starts nor ends on a blank line of a code block it cuts. A PDF without bookmarks takes a numbered line for a
#     title only in the order of the numbers (not a list item, a code line's number or a contents entry).
PIPELINE_VERSION = 19


@dataclass
class _Pending:
    path: str
    stat: os.stat_result
    sha256: str
    fields: dict
    chunks: list[Chunk]
    action: str


@dataclass
class _Read:
    """One candidate file as the reader thread leaves it: read and hashed once, and loaded and chunked unless its
    content may be stored already (then `data` is kept, in case it is not after all)."""

    path: str
    st: os.stat_result
    sha256: str = ""
    data: bytes | None = None
    pending: _Pending | None = None
    skipped: Skipped | None = None
    failure: bool = False  # remember the skip reason as this file version's load failure
    warning: Skipped | None = None


class _Reader:
    """Reads, hashes, loads and chunks the next files in a thread while the caller embeds and stores earlier ones.

    Each file is read once and hashed once. The thread touches no database (SQLite connections stay with their
    thread); it works at most `ahead` files in front of the caller, so memory stays bounded."""

    def __init__(self, run: _Run, plan: _Plan, ahead: int = 64) -> None:
        self.run, self.plan = run, plan
        self.seconds = 0.0  # the thread's own time reading, loading and chunking
        self.waited = 0.0  # the caller's time waiting for the next file: the engine idles then
        self._queue: queue.Queue = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="deepkb-ingest-reader", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[_Read]:
        while True:
            started = time.perf_counter()
            item = self._queue.get()
            self.waited += time.perf_counter() - started
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a put() on a full queue
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for path, st in self.plan.candidates.items():
                if self._stop.is_set():
                    return
                started = time.perf_counter()
                item = read_file(self.run, path, st, self.plan.same_content_possible(path))
                self.seconds += time.perf_counter() - started
                if not self._put(item):
                    return
            self._put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it in its own thread
            self._put(exc)


def read_file(run: _Run, path: str, st: os.stat_result, maybe_stored: set[str] = frozenset()) -> _Read:
    """Read one file once, hash it, and (unless its hash is in `maybe_stored`) load and chunk it."""
    item = _Read(path, st)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return item  # vanished between the scan and now: the next sync removes it
    except OSError as exc:
        item.skipped = Skipped(path, f"unreadable ({exc.strerror or exc})")
        return item
    item.sha256 = hashlib.sha256(data).hexdigest()
    if item.sha256 in maybe_stored:
        item.data = data
    else:
        _load(run, item, data)
    return item


def _load(run: _Run, item: _Read, data: bytes) -> None:
    """Load and chunk the bytes read; a bad file becomes a Skipped entry to remember."""
    path, st = item.path, item.st
    try:
        progress = run.progress
        on_ocr = (lambda done, total: progress.ocr_page(path, done, total)) if progress else None
        doc = load(Path(path), data, on_ocr)
    except Exception as exc:  # LoadError, or a parser bug on one odd file: neither may stop the run
        reason = str(exc) if isinstance(exc, LoadError) else f"could not parse ({type(exc).__name__}: {exc})"
        item.skipped, item.failure = Skipped(path, reason), True
        return
    note = doc.failure_note()
    if note:
        item.warning = Skipped(path, f"{note}; the other {doc.part_name}s are indexed")
    embedder = run.embedder
    s = run.settings
    chunks = chunk_units(doc.units, embedder.count_tokens, embedder.max_tokens, s.chunk_tokens, s.overlap_tokens)
    fields = {
        "path": path,
        "size": len(data),
        "mtime_ns": st.st_mtime_ns,
        "sha256": item.sha256,
        "kind": doc.kind,
        "title": doc.title,
        "encoding": doc.encoding,
        "pages": doc.pages,
        "empty_pages": json.dumps(doc.empty_pages) if doc.empty_pages else None,
        "ingested_at": time.time(),
        "pipeline": PIPELINE_VERSION,
    }
    if len(data) != st.st_size:  # written to while we read it: record what we read, resync on the next change
        fields["mtime_ns"] = 0
    item.pending = _Pending(path, st, item.sha256, fields, chunks, "added")
