"""`deepkb backup DEST` and `deepkb restore SRC`: thin shells over deepkb.backup."""

from __future__ import annotations

import json
from pathlib import Path

import click

from deepkb.cli._common import console, display_path, kb_option, require_kb


def _home(ctx: click.Context) -> Path:
    return require_kb(ctx).resolve()


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
@click.option(
    "--trust-config",
    is_flag=True,
    help="Keep the backup's llm_url and llm_api_key_env settings (left out by default: they send data off this "
    "machine). Only for a backup you made yourself.",
)
@kb_option
@click.pass_context
def restore(ctx: click.Context, src: Path, as_json: bool, trust_config: bool) -> None:
    """Restore a backup made by `deepkb backup` into an empty knowledge-base folder.

    Every file is checked against the backup's recorded sha256 as it is copied; a damaged or crafted backup
    (a name deepkb does not write, a link, a device) is refused and nothing is written. A damaged vector index
    is rebuilt from the database. Settings that send data off the machine (llm_url, llm_api_key_env) are left
    out of the restored config.toml unless --trust-config.

    \b
    Example:
        deepkb --kb ~/kb-restored restore /mnt/backup/deepkb-2026-03-01
    """
    from deepkb.backup import restore as restore_backup
    from deepkb.paths import given_home

    home = given_home(ctx.ensure_object(dict).get("kb")).resolve()  # created by the restore, removed if refused
    manifest = restore_backup(src, home, trust_config=trust_config)
    if as_json:
        click.echo(json.dumps({"home": str(home), **manifest}))
        return
    console.print(f"restored {_summary(manifest)} into {display_path(str(home))}", soft_wrap=True)
    if manifest["index_rebuilt"]:
        console.print("the backup's vector index was damaged or missing; rebuilt it from the database.")
    if manifest["left_out_settings"]:
        names = ", ".join(manifest["left_out_settings"])
        console.print(
            f"left out {names} from the backup's config.toml (they send data off this machine); set them in "
            f"{display_path(str(home / 'config.toml'))} or with --llm-url/--llm-api-key-env if you trust them, "
            "or restore again with --trust-config.",
            soft_wrap=True,
        )
