"""`deepkb doctor [--json] [--repair]`: a thin shell over deepkb.doctor."""

from __future__ import annotations

import json
import sys

import click

from deepkb.cli._common import console, kb_option, require_kb

_MARKS = {"ok": "[green]  ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]", "skip": "[dim]skip[/]"}


@click.command()
@click.option("--repair", is_flag=True, help="Rebuild what can be rebuilt from SQLite: the vector and FTS5 indexes.")
@click.option("--model", "model", help="The answer model to check (catalog name or .gguf path; default: as `ask`).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every finding.")
@kb_option
@click.pass_context
def doctor(ctx: click.Context, repair: bool, model: str | None, as_json: bool) -> None:
    """Check the knowledge base and everything answering depends on; each problem comes with its fix.

    Database and FTS5 integrity, the vector index against SQLite, the embedding engine and its precision, the
    answer model, llama.cpp's GPU offload, memory and disk. Exit code 0: no failure, 1: a check failed.

    \b
    Example:
        deepkb doctor
        deepkb doctor --repair
        deepkb doctor --json
    """
    from deepkb.config import Settings
    from deepkb.doctor import run

    require_kb(ctx)
    settings = Settings.load(ctx.ensure_object(dict).get("kb"))
    findings = run(settings, model=model, repair=repair)
    failed = any(f.status == "fail" for f in findings)
    if as_json:
        click.echo(
            json.dumps({"home": str(settings.home), "ok": not failed, "findings": [f.to_json() for f in findings]})
        )
    else:
        for f in findings:
            repaired = " [green](repaired)[/]" if f.repaired else ""
            console.print(f"{_MARKS[f.status]} [bold]{f.check}[/]: {f.detail}{repaired}", soft_wrap=True)
            if f.fix and f.status in ("warn", "fail"):
                console.print(f"     [dim]fix:[/] {f.fix}", soft_wrap=True)
    sys.exit(1 if failed else 0)
