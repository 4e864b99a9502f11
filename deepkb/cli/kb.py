"""Knowledge-base commands: ingest, search, status, remove, reindex. Each calls one KnowledgeBase method."""

from __future__ import annotations

import json
import sys
import time

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deepkb.cli._common import (
    console,
    display_path,
    err_console,
    kb_option,
    location,
    open_kb,
    scope_from,
    scope_options,
)
from deepkb.retrieval.search import snippet


class _IngestProgress:
    """Draws ingest progress: files done of files to read, chunks, chunks per second."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files · {task.fields[chunks]} chunks embedded · {task.fields[rate]}/s"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        )
        self.task = self.bar.add_task("scanning", total=None, chunks=0, rate="-")
        self.chunks = 0
        self.started = time.perf_counter()

    def scanned(self, files_to_read: int, files_total: int) -> None:
        self.bar.update(self.task, description="ingesting", total=files_to_read)

    def file_done(self, path: str, chunks: int) -> None:
        self.bar.update(self.task, advance=1)

    def ocr_page(self, path: str, done: int, total: int) -> None:
        label = f"OCR {display_path(path)} page {done}/{total}" if done < total else "ingesting"
        self.bar.update(self.task, description=label)

    def embedded(self, texts: int) -> None:
        self.chunks += texts
        rate = self.chunks / max(1e-6, time.perf_counter() - self.started)
        self.bar.update(self.task, chunks=self.chunks, rate=f"{rate:.0f}")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the summary.")
@kb_option
@click.pass_context
def ingest(ctx: click.Context, paths: tuple[str, ...], as_json: bool) -> None:
    """Add files and folders to the knowledge base, or bring them up to date.

    Only what changed since the last run is read; only new text is embedded. Renamed files cost no
    re-embedding; files deleted from an ingested folder are removed. Hidden entries and patterns in
    .deepkbignore files are skipped. Exit code 0: all ingested, 1: some files skipped, 2: usage error.

    \b
    Example:
        deepkb ingest ~/notes ~/papers
        deepkb ingest ./docs --json
    """
    kb = open_kb(ctx)
    progress = None if as_json or not err_console.is_terminal else _IngestProgress()
    if progress:
        with progress.bar:
            report = kb.ingest(paths, progress=progress)
    else:
        report = kb.ingest(paths)
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
    sys.exit(1 if report.skipped else 0)


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
        console.print("   " + snippet(hit.text), soft_wrap=False, markup=False)


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
    info = open_kb(ctx).status()
    if as_json:
        click.echo(json.dumps(info))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("knowledge base", info["home"])
    table.add_row("documents", str(info["documents"]))
    table.add_row("chunks", str(info["chunks"]))
    table.add_row(
        "embedding model",
        f"{info['embedding_model']} ({info['embedding_dim'] or '?'}-d, {info['embedding_backend']})",
    )
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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@kb_option
@click.pass_context
def reindex(ctx: click.Context, reembed: bool, embedding_model: str | None, as_json: bool) -> None:
    """Rebuild the vector index from the SQLite catalog (it is a cache; SQLite is the truth).

    \b
    Example:
        deepkb reindex
        deepkb reindex --reembed --embedding-model ~/models/my-minilm
    """
    if embedding_model and not reembed:
        raise click.UsageError("--embedding-model changes the model only together with --reembed.")
    from deepkb.kb import KnowledgeBase

    kb = KnowledgeBase.open(ctx.ensure_object(dict).get("kb"), check_model=not reembed, embedding_model=embedding_model)
    ctx.call_on_close(kb.close)
    result = kb.reindex(reembed=reembed)
    if as_json:
        click.echo(json.dumps(result))
    else:
        console.print(f"indexed {result['chunks']} chunks ({result['embedded']} embedded) in {result['seconds']:.1f} s")
