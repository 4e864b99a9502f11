"""Knowledge-base commands: ingest, search, status, remove, reindex. Each calls one KnowledgeBase method."""

from __future__ import annotations

import json
import sys
import time

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deepkb.cli._common import (
    also_in,
    console,
    display_path,
    err_console,
    kb_option,
    location,
    open_kb,
    require_kb,
    scope_from,
    scope_options,
)
from deepkb.display import snippet


class _IngestProgress:
    """Ingest progress a user can believe: files done of files to read, chunks, tokens/s and the time left.

    On a terminal a live bar; otherwise (cron, a pipe, a log file) one plain line every `every` seconds and a last
    one at the end, so a long run is never silent. The time left is the bytes still to read at the bytes-per-second
    of the files done so far (a PDF holds fewer tokens per byte than text, so it is an estimate, and says so)."""

    def __init__(self, live: bool, every: float = 10.0, clock=time.monotonic) -> None:
        self.live, self.every, self.clock = live, every, clock
        self.files = self.files_total = self.chunks = self.tokens = 0
        self.bytes_done = self.bytes_total = 0
        self.sizes: dict[str, int] = {}
        self.started = self.last_line = clock()
        self.bar = None
        if live:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("files · {task.fields[line]}"),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            )
            self.task = self.bar.add_task("scanning", total=None, line="")

    def scanned(self, files_to_read: int, files_total: int) -> None:
        self.files_total = files_to_read
        self.started = self.last_line = self.clock()
        if self.bar:
            self.bar.update(self.task, description="ingesting", total=files_to_read)
        else:
            err_console.print(f"ingest: {files_to_read} of {files_total} files to read", soft_wrap=True)

    def to_read(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.bytes_total = sum(sizes.values())

    def file_done(self, path: str, chunks: int) -> None:
        self.files += 1
        self.bytes_done += self.sizes.get(path, 0)
        self._show()

    def ocr_page(self, path: str, done: int, total: int) -> None:
        label = f"OCR {display_path(path)} page {done}/{total}" if done < total else "ingesting"
        self.bar.update(self.task, description=label)

    def embedded(self, texts: int) -> None:
        self.chunks += texts

    def tokens_embedded(self, tokens: int) -> None:
        self.tokens += tokens
        self._show()

    def line(self) -> str:
        """files and chunks done, tokens/s, time left"""
        elapsed = max(self.clock() - self.started, 1e-6)
        parts = [f"{self.chunks:,} chunks embedded", f"{self.tokens / elapsed:,.0f} tokens/s"]
        if self.bytes_done and self.bytes_total > self.bytes_done:
            left = elapsed * (self.bytes_total - self.bytes_done) / self.bytes_done
            parts.append(f"about {_duration(left)} left")
        return " · ".join(parts)

    def _show(self) -> None:
        if self.bar:
            self.bar.update(self.task, completed=self.files, line=self.line())
            return
        now = self.clock()
        if now - self.last_line >= self.every:
            self.last_line = now
            self.print_line()

    def print_line(self) -> None:
        if not self.bar:
            err_console.print(f"ingest: {self.files} of {self.files_total} files · {self.line()}", soft_wrap=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


# Reasons for leaving a file out that say what the file is, not that something failed: a nightly
# `deepkb ingest ~/src` meets images, archives and empty __init__.py files every night.
NOT_TEXT_REASONS = ("unsupported file type", "empty file", "no text")


def is_failure(reason: str) -> bool:
    """A skipped file that could not be read (or parsed), as opposed to one that holds no text to index."""
    return not reason.startswith(NOT_TEXT_REASONS)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the summary.")
@click.option("--strict", is_flag=True, help="Exit 1 also when files were skipped as unsupported or empty.")
@kb_option
@click.pass_context
def ingest(ctx: click.Context, paths: tuple[str, ...], as_json: bool, strict: bool) -> None:
    """Add files and folders to the knowledge base, or bring them up to date.

    Only what changed since the last run is read; only new text is embedded. Renamed files cost no
    re-embedding; files deleted from an ingested folder are removed. Hidden entries and patterns in
    .deepkbignore files are skipped. Exit code 0: all ingested (unsupported and empty files are listed as
    skipped, not failed), 1: some files could not be read (with --strict: or were skipped at all),
    2: usage error, 130: interrupted (what was stored stays; run it again to go on).

    \b
    Example:
        deepkb ingest ~/notes ~/papers
        deepkb ingest ./docs --json
        deepkb ingest ~/src --strict      # in cron: fail on any file left out
    """
    kb = open_kb(ctx, create=True)
    # --json is for scripts: its one object is the whole output; otherwise progress, also without a terminal
    progress = None if as_json else _IngestProgress(live=err_console.is_terminal)
    before = kb.store.counts()
    try:
        if progress and progress.bar:
            with progress.bar:
                report = kb.ingest(paths, progress=progress)
        else:
            report = kb.ingest(paths, progress=progress)
            if progress and progress.files_total:
                progress.print_line()
    except KeyboardInterrupt:
        _interrupted(kb, before)
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        for skipped in report.skipped:
            err_console.print(f"[yellow]skipped[/] {display_path(skipped.path)}: {skipped.reason}", soft_wrap=True)
        for warning in report.warnings:
            err_console.print(f"[yellow]partly read[/] {display_path(warning.path)}: {warning.reason}", soft_wrap=True)
        table = Table(show_header=False, box=None, pad_edge=False)
        for label, value in (
            ("added", report.added), ("updated", report.updated), ("renamed", report.renamed),
            ("removed", report.removed), ("unchanged", report.unchanged), ("skipped", len(report.skipped)),
            ("chunks embedded", report.chunks_embedded), ("chunks reused", report.chunks_reused),
        ):  # fmt: skip
            table.add_row(label, f"[bold]{value}[/]" if value else "0")
        table.add_row("time", f"{report.seconds:.1f} s")
        console.print(table)
    failed = [s for s in report.skipped if is_failure(s.reason)]
    sys.exit(1 if failed or (strict and report.skipped) else 0)


def _interrupted(kb, before: dict) -> None:
    """Ctrl-C during ingest: say what this run stored (every finished batch is committed) and how to go on."""
    try:
        after = kb.store.counts()
        stored = (
            f"{after['documents'] - before['documents']} new documents and {after['chunks'] - before['chunks']} "
            "new chunks are stored"
        )
    except Exception:  # noqa: BLE001  (the counts are a courtesy; the message must come out)
        stored = "every batch finished before it is stored"
    err_console.print(
        f"interrupted: {stored}; run the same command again to go on where it stopped (nothing is embedded twice).",
        soft_wrap=True,
    )
    sys.exit(130)


@click.command()
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, help="How many results.")
@click.option(
    "--mode", type=click.Choice(["hybrid", "dense", "keyword"]), default="hybrid", show_default=True,
    help="hybrid fuses meaning (dense vectors) and exact words (BM25).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the full chunk texts.")
@scope_options
@kb_option
@click.pass_context
def search(
    ctx: click.Context, query: str, k: int, mode: str, as_json: bool, in_paths: tuple[str, ...], types: str | None
) -> None:
    """Find the passages that best match QUERY, with their file, page and lines.

    \b
    Example:
        deepkb search "how do I rotate the keys" -k 5
        deepkb search "NWR-4417" --mode keyword --json
        deepkb search "refund policy" --in ~/contracts --type pdf,docx
    """
    scope = scope_from(in_paths, types)
    kb = open_kb(ctx)
    hits = kb.search(query, k=k, mode=mode, scope=scope)
    if as_json:
        click.echo(json.dumps({"query": query, "mode": mode, "hits": [h.to_json() for h in hits]}))
        return
    if not hits:
        err_console.print(
            "no results"
            + ("" if kb.store.counts()["chunks"] else ": the knowledge base is empty; run `deepkb ingest PATH` first")
        )
        return
    for rank, hit in enumerate(hits, start=1):
        where = location(hit.page, hit.line_start, hit.line_end)
        console.print(
            f"[bold cyan]{rank}.[/] [bold]{display_path(hit.path)}[/] {where}  [dim]{hit.score:.4f}[/]", soft_wrap=True
        )
        if hit.heading:
            console.print(f"   [magenta]{hit.heading}[/]", soft_wrap=True)
        # A joined passage is shown from its best chunk on: the part that matched, not the chunk before it.
        lead = "… " if hit.best_start else ""
        console.print("   " + lead + snippet(hit.text[hit.best_start :]), soft_wrap=False, markup=False)
        if hit.also_in:
            console.print("   " + also_in(hit.also_in), style="dim", soft_wrap=True, markup=False)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@kb_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show what the knowledge base holds and where it lives.

    \b
    Example:
        deepkb status
        deepkb status --json
    """
    from deepkb.retrieval.abstain import reads_many_languages

    info = open_kb(ctx).status()
    info["embedding_languages"] = "many" if reads_many_languages(info["embedding_model"]) else "english"
    if as_json:
        click.echo(json.dumps(info))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("knowledge base", info["home"])
    table.add_row("documents", str(info["documents"]))
    table.add_row("chunks", str(info["chunks"]))
    table.add_row(
        "embedding model",
        f"{info['embedding_model']} ({info['embedding_dim'] or '?'}-d, {info['embedding_backend']}, "
        f"{info['embedding_precision']})",
    )
    table.add_row(
        "languages",
        "many (a multilingual embedding model)" if info["embedding_languages"] == "many" else
        "English only: questions in another script are declined; see the README for a multilingual model",
    )  # fmt: skip
    table.add_row("folders", "\n".join(display_path(r) for r in info["roots"]) or "-")
    if info["documents_with_empty_pages"]:
        table.add_row("PDFs with textless pages", str(info["documents_with_empty_pages"]))
    if info["last_ingest"]:
        table.add_row("last ingest", time.strftime("%Y-%m-%d %H:%M", time.localtime(info["last_ingest"])))
    console.print(table)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the removed paths as JSON.")
@kb_option
@click.pass_context
def remove(ctx: click.Context, paths: tuple[str, ...], as_json: bool) -> None:
    """Forget documents; a folder forgets everything below it. The files themselves are not touched.

    \b
    Example:
        deepkb remove ~/papers/old.pdf
    """
    removed = open_kb(ctx).remove(paths)
    if as_json:
        click.echo(json.dumps({"removed": removed}))
        return
    for path in removed:
        console.print(f"removed {display_path(path)}", soft_wrap=True)


@click.command()
@click.option("--reembed", is_flag=True, help="Embed every chunk again (after changing the embedding model).")
@click.option("--embedding-model", help="With --reembed: the model to switch to (name or local folder).")
@click.option(
    "--embedding-precision", type=click.Choice(["f32", "bf16"]),
    help="With --reembed: the precision to embed in from now on (recorded in the knowledge base).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@kb_option
@click.pass_context
def reindex(
    ctx: click.Context, reembed: bool, embedding_model: str | None, embedding_precision: str | None, as_json: bool
) -> None:
    """Rebuild the vector index from the SQLite catalog (it is a cache; SQLite is the truth).

    \b
    Example:
        deepkb reindex
        deepkb reindex --reembed --embedding-model ~/models/my-minilm
        deepkb reindex --reembed --embedding-precision f32
    """
    if (embedding_model or embedding_precision) and not reembed:
        raise click.UsageError("--embedding-model and --embedding-precision change the model only with --reembed.")
    from deepkb.kb import KnowledgeBase

    require_kb(ctx)
    kb = KnowledgeBase.open(
        ctx.ensure_object(dict).get("kb"), check_model=not reembed, embedding_model=embedding_model,
        embedding_precision=embedding_precision,
    )  # fmt: skip
    ctx.call_on_close(kb.close)
    result = kb.reindex(reembed=reembed)
    if as_json:
        click.echo(json.dumps(result))
    else:
        console.print(f"indexed {result['chunks']} chunks ({result['embedded']} embedded) in {result['seconds']:.1f} s")
