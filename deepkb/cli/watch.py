"""`deepkb watch`: a thin shell over deepkb.watch.Watcher that prints each change until Ctrl-C."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import TYPE_CHECKING

import click

from deepkb.cli._common import console, display_path, err_console, kb_option, open_kb

if TYPE_CHECKING:
    from deepkb.ingest.sync import IngestReport, Skipped


class _Printer:
    """Turns the watcher's callbacks into one line per change (text or JSON)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.ready = threading.Event()  # the watcher's: set once its catch-up is done

    def batch(self, report: IngestReport) -> None:
        catch_up = not self.ready.is_set()
        stamp = time.strftime("%H:%M:%S")
        single = len(report.changes) == 1
        for change in report.changes:
            if self.as_json:
                line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "catch_up": catch_up, **_change_json(change)}
                line.update(batch_seconds=report.seconds, batch_chunks_embedded=report.chunks_embedded)
                click.echo(json.dumps(line))
                continue
            what = display_path(change.path)
            if change.action == "renamed" and change.old_path:
                what = f"{display_path(change.old_path)} → {what}"
            detail = [] if change.action == "removed" else [f"{change.chunks} chunks"]
            if single:
                if change.action in ("added", "updated"):
                    detail.append(f"{report.chunks_embedded} embedded")
                detail.append(f"{report.seconds:.1f} s")
            suffix = f" ({', '.join(detail)})" if detail else ""
            console.print(f"[dim]{stamp}[/] {_COLOURS[change.action]} {what}{suffix}", soft_wrap=True, highlight=False)
        if len(report.changes) > 1 and not self.as_json and not catch_up:
            console.print(
                f"[dim]{stamp}[/] {len(report.changes)} changes, {report.chunks_embedded} chunks embedded, "
                f"{report.seconds:.1f} s",
                soft_wrap=True,
            )

    def skipped(self, skipped: Skipped) -> None:
        if self.as_json:
            click.echo(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "action": "skipped",
                                   "path": skipped.path, "reason": skipped.reason}))  # fmt: skip
        else:
            stamp = time.strftime("%H:%M:%S")
            err_console.print(
                f"[dim]{stamp}[/] [yellow]skipped[/] {display_path(skipped.path)}: {skipped.reason}", soft_wrap=True
            )

    def error(self, message: str) -> None:
        err_console.print(f"[yellow]warning:[/] {message}", soft_wrap=True)


_COLOURS = {"added": "[green]added[/]", "updated": "[cyan]updated[/]", "renamed": "[magenta]renamed[/]",
            "removed": "[red]removed[/]"}  # fmt: skip


def _change_json(change) -> dict:
    return {"action": change.action, "path": change.path, "old_path": change.old_path, "chunks": change.chunks}


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per change, one per line.")
@click.option(
    "--debounce", type=click.FloatRange(0.05, 60), default=0.4, show_default=True,
    help="Seconds without file events before a batch of changes is synced.",
)  # fmt: skip
@kb_option
@click.pass_context
def watch(ctx: click.Context, paths: tuple[str, ...], as_json: bool, debounce: float) -> None:
    """Keep the knowledge base in step with folders until Ctrl-C.

    First catches up with whatever changed while nothing was watching, then syncs every change as it
    happens: added, updated, renamed (no re-embedding) and removed files, one line each. Hidden files,
    editor temp files and .deepkbignore patterns are ignored. Only one writer at a time: while this runs,
    `deepkb ingest` on the same knowledge base is refused; `deepkb search` and `deepkb ask` keep working.

    \b
    Example:
        deepkb watch ~/notes ~/papers
        deepkb watch ./docs --json
    """
    from deepkb.watch import Watcher

    kb = open_kb(ctx, create=True)
    printer = _Printer(as_json)
    watcher = Watcher(
        kb, paths, debounce=debounce, on_batch=printer.batch, on_skipped=printer.skipped, on_error=printer.error
    )
    printer.ready = watcher.ready
    watcher.start()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        err_console.print(f"catching up with {', '.join(display_path(str(r.path)) for r in watcher.roots)} …")
        while not watcher.wait_ready(0.5):
            pass
        _summary(watcher.catch_up)
        while watcher.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        err_console.print("stopping …")
        watcher.stop()
        signal.signal(signal.SIGTERM, previous)
    err_console.print("stopped; the knowledge base is saved.")


def _summary(report: IngestReport | None) -> None:
    if report is None:
        err_console.print("[yellow]catch-up did not finish[/]; watching for changes (Ctrl-C to stop)")
        return
    counts = ", ".join(
        f"{n} {label}" for label, n in (("added", report.added), ("updated", report.updated),
                                        ("renamed", report.renamed), ("removed", report.removed))
        if n
    ) or "nothing changed"  # fmt: skip
    err_console.print(
        f"caught up: {counts}; {report.unchanged} unchanged, {report.chunks_embedded} chunks embedded, "
        f"{report.seconds:.1f} s. Watching for changes (Ctrl-C to stop)."
    )


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops the watcher as cleanly as Ctrl-C does."""
    raise KeyboardInterrupt
