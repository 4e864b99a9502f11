"""`deepkb backup DEST` and `deepkb restore SRC`: thin shells over deepkb.backup."""

from __future__ import annotations

import json
from pathlib import Path

import click

from deepkb.cli._common import console, display_path, kb_option


def _home(ctx: click.Context) -> Path:
    from deepkb.paths import kb_home

    return kb_home(ctx.ensure_object(dict).get("kb"))


def _summary(manifest: dict) -> str:
    from deepkb.storage.errors import human_bytes

    files = manifest["files"]
    return f"{len(files)} files, {human_bytes(sum(f['size'] for f in files.values()))}"


@click.command()
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the backup's manifest as JSON.")
@kb_option
@click.pass_context
def backup(ctx: click.Context, dest: Path, as_json: bool) -> None:
    """Copy the knowledge base (every database, the index, config.toml) into DEST, a new or empty folder.

    Safe while `deepkb watch` or `deepkb serve` are writing: the databases are copied with SQLite's online
    backup API, one consistent snapshot each. Downloaded models are not copied.

    \b
    Example:
        deepkb backup /mnt/backup/deepkb-$(date +%F)
    """
    from deepkb.backup import backup as make_backup

    manifest = make_backup(_home(ctx), dest)
    if as_json:
        click.echo(json.dumps({"dest": str(dest.expanduser().absolute()), **manifest}))
        return
    console.print(f"backed up {_summary(manifest)} to {display_path(str(dest.absolute()))}", soft_wrap=True)


@click.command()
@click.argument("src", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the restored backup's manifest as JSON.")
@kb_option
@click.pass_context
def restore(ctx: click.Context, src: Path, as_json: bool) -> None:
    """Restore a backup made by `deepkb backup` into an empty knowledge-base folder.

    Every file is checked against the backup's recorded sha256 first; a damaged backup is refused.

    \b
    Example:
        deepkb --kb ~/kb-restored restore /mnt/backup/deepkb-2026-03-01
    """
    from deepkb.backup import restore as restore_backup

    home = _home(ctx)
    manifest = restore_backup(src, home)
    if as_json:
        click.echo(json.dumps({"home": str(home), **manifest}))
        return
    console.print(f"restored {_summary(manifest)} into {display_path(str(home))}", soft_wrap=True)
