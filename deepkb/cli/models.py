"""`deepkb models list | pull | rm`: thin shells over deepkb.llm.catalog."""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table

from deepkb.cli._common import console, display_path, err_console, kb_option
from deepkb.llm.catalog import CATALOG, DEFAULT_MODEL


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@click.group()
def models() -> None:
    """Manage the local GGUF models that answer questions.

    Models live in $DEEPKB_MODELS, else ./models in a source checkout, else <KB home>/models.
    Which model answers (`ask`, `chat`, `serve`, `doctor`): --model NAME_OR_PATH.gguf, else DEEPKB_MODEL, else
    the setting `model` in <KB home>/config.toml, else the default (* in `models list`); `models list` shows
    the one in use.

    \b
    Example:
        deepkb models list
        deepkb models pull
        deepkb models rm deepseek-r1-7b
        deepkb ask "..." --model deepseek-r1-7b
        echo 'model = "deepseek-r1-7b"' >> ~/.local/share/deepkb/config.toml
    """


def configured_model(kb: str | None) -> dict:
    """The answer model `ask`, `chat` and `serve` use without --model, and where that choice comes from."""
    import os

    from deepkb.config import CONFIG_FILE, Settings

    settings = Settings.load(kb)
    if os.environ.get("DEEPKB_MODEL"):
        source = "DEEPKB_MODEL"
    elif settings.model:
        source = f"setting `model` in {display_path(str(settings.home / CONFIG_FILE))}"
    else:
        source = "the default"
    return {"model": settings.model or DEFAULT_MODEL, "source": source, "llm_url": settings.llm_url or None}


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@kb_option
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """Show the catalog and what is downloaded, with sizes; * marks the default, and the model in use is named.

    \b
    Example:
        deepkb models list
    """
    from deepkb.llm.catalog import list_models
    from deepkb.paths import models_dir

    directory = models_dir()
    rows = list_models(directory)
    configured = configured_model(ctx.ensure_object(dict).get("kb"))
    if as_json:
        click.echo(
            json.dumps({"models_dir": str(directory), "models": [r.to_json() for r in rows], "configured": configured})
        )
        return
    table = Table(box=None, pad_edge=False)
    for column in ("", "name", "file", "size", "status"):
        table.add_column(column)
    for r in rows:
        if r.path:
            status = "[green]downloaded[/]"
        elif r.partial_bytes:
            status = f"[yellow]partial {_size(r.partial_bytes)}[/] (pull resumes)"
        else:
            status = "[dim]not downloaded[/]"
        size = _size(r.size_bytes) if r.path else f"~{_size(r.size_bytes)}"
        table.add_row("*" if r.is_default else "", r.name, r.filename, size, status)
    console.print(table)
    console.print(f"[dim]models folder: {display_path(str(directory))}[/]", soft_wrap=True)
    if configured["llm_url"]:
        in_use = f"the server at {configured['llm_url']} (setting llm_url)"
    else:
        in_use = f"{configured['model']} ({configured['source']})"
    console.print(f"answer model in use: [bold]{escape(in_use)}[/]", soft_wrap=True)


@models.command()
@click.argument("name", default=DEFAULT_MODEL, type=click.Choice(list(CATALOG)), required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (no progress bar).")
def pull(name: str, as_json: bool) -> None:
    """Download a model from the Hugging Face Hub (default: deepseek-r1-1.5b); an interrupted pull resumes.

    Honours HF_ENDPOINT (a mirror) and HF_TOKEN. Each catalog model is downloaded from the repository commit
    deepkb pins and must match the SHA-256 it pins; a file that does not is deleted, never used.

    \b
    Example:
        deepkb models pull
        deepkb models pull deepseek-r1-7b --json
    """
    from deepkb.llm.catalog import pull as pull_model

    entry = CATALOG[name]
    if not entry.pinned and not as_json:
        err_console.print(f"note: this deepkb pins no SHA-256 for {name} yet; it is checked against the Hub's own.")
    path = pull_model(name, progress=err_console.is_terminal and not as_json)
    if as_json:
        click.echo(json.dumps({"name": name, "path": str(path), "size_bytes": path.stat().st_size,
                               "sha256_pinned": entry.pinned}))  # fmt: skip
        return
    console.print(f"[green]ready[/] {display_path(str(path))}", soft_wrap=True)


@models.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the removed files as JSON.")
def rm(name: str, as_json: bool) -> None:
    """Delete a downloaded model (catalog name or file name), and any partial download of it.

    \b
    Example:
        deepkb models rm deepseek-r1-7b --json
    """
    from deepkb.llm.catalog import remove

    removed = remove(name)
    if as_json:
        click.echo(json.dumps({"removed": [str(p) for p in removed]}))
        return
    for path in removed:
        console.print(f"removed {display_path(str(path))}", soft_wrap=True)
