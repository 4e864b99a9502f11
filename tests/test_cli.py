"""The CLI contract: JSON keys other tools rely on, exit codes, one-line errors, help with examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from deepkb.cli import main

from conftest import write


def _deepkb(*args: str, kb: Path, check: bool = True) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess, as a script would call it."""
    result = subprocess.run(
        [sys.executable, "-m", "deepkb", "--kb", str(kb), *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, "COLUMNS": "120"},
    )  # fmt: skip
    if check:
        assert result.returncode in (0, 1), result.stderr
    return result


def _all_commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from _all_commands(command, f"{prefix}{name} ")


def test_every_command_has_help_with_an_example():
    runner = CliRunner()
    commands = dict(_all_commands(main))
    assert {"ingest", "search", "status", "remove", "reindex"} <= set(commands)
    for name, _ in commands.items():
        result = runner.invoke(main, [*name.split(), "--help"])
        assert result.exit_code == 0, name
        assert "Example" in result.output and "deepkb " in result.output, f"`deepkb {name} --help` has no example"


def test_json_contracts_of_ingest_search_status(tmp_path, sample_copy, embedder):
    kb = tmp_path / "kb"
    (sample_copy / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    ingest = _deepkb("ingest", str(sample_copy), "--json", kb=kb)
    assert ingest.returncode == 1  # one file skipped
    report = json.loads(ingest.stdout)
    for key in ("added", "updated", "unchanged", "removed", "renamed", "chunks_embedded"):
        assert isinstance(report[key], int), key
    assert isinstance(report["seconds"], float)
    assert report["added"] == 10
    assert report["skipped"] == [{"path": str(sample_copy / "broken.pdf"), "reason": report["skipped"][0]["reason"]}]
    assert "corrupt PDF" in report["skipped"][0]["reason"]

    runner = CliRunner()  # the entry point was exercised above; the rest runs in-process (model loaded once)

    def cli(*args: str) -> dict:
        result = runner.invoke(main, ["--kb", str(kb), *args])
        assert result.exit_code in (0, 1), result.output  # 1: broken.pdf is still skipped
        return json.loads(result.output)

    search = cli("search", "Where do we gather when the fire alarm sounds?", "-k", "3", "--json")
    assert search["query"] == "Where do we gather when the fire alarm sounds?" and len(search["hits"]) == 3
    for hit in search["hits"]:
        assert Path(hit["path"]).is_absolute()
        assert set(hit) >= {"path", "page", "line_start", "line_end", "heading", "score", "text"}
        assert isinstance(hit["score"], float) and isinstance(hit["text"], str)
    assert any("Assembly Point C" in h["text"] for h in search["hits"])
    pdf = cli("search", "backup.retention_days", "-k", "5", "--json")
    assert any(h["page"] == 3 and h["line_start"] is not None for h in pdf["hits"])

    status = cli("status", "--json")
    assert status["documents"] == 10 and status["chunks"] > 50 and status["embedding_model"] == "all-MiniLM-L6-v2"
    assert status["embedding_backend"] in ("openvino", "sentence-transformers") and status["embedding_dim"] == 384
    assert status["home"] == str(kb.resolve()) and status["roots"] == [str(sample_copy)]
    assert isinstance(status["db_bytes"], int) and isinstance(status["last_ingest"], float)

    again = cli("ingest", str(sample_copy), "--json")
    assert again["unchanged"] == 10 and again["chunks_embedded"] == 0 and len(again["skipped"]) == 1


def test_usage_errors_exit_2_with_one_line(tmp_path):
    result = _deepkb("ingest", str(tmp_path / "does-not-exist"), kb=tmp_path / "kb", check=False)
    assert result.returncode == 2
    assert "does-not-exist: no such file or folder" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_kb_option_works_after_the_command(tmp_path, embedder):
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\nThe aardvark digs at night.\n")
    runner = CliRunner()
    result = runner.invoke(main, ["ingest", str(docs), "--kb", str(tmp_path / "kb2"), "--json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "kb2" / "kb.sqlite").exists()
    found = runner.invoke(main, ["search", "aardvark", "--mode", "keyword", "--kb", str(tmp_path / "kb2"), "--json"])
    assert json.loads(found.output)["hits"][0]["path"] == str(docs / "a.md")


def test_remove_and_reindex_from_the_cli(tmp_path):
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\nThe aardvark digs at night.\n")
    write(docs / "b.md", "# B\n\nThe badger sleeps by day.\n")
    runner = CliRunner()
    kb = ["--kb", str(tmp_path / "kb")]
    assert runner.invoke(main, [*kb, "ingest", str(docs)]).exit_code == 0
    removed = runner.invoke(main, [*kb, "remove", str(docs / "a.md"), "--json"])
    assert json.loads(removed.output) == {"removed": [str(docs / "a.md")]}
    assert json.loads(runner.invoke(main, [*kb, "status", "--json"]).output)["documents"] == 1
    reindexed = runner.invoke(main, [*kb, "reindex", "--json"])
    assert json.loads(reindexed.output)["chunks"] == 1
    nothing = runner.invoke(main, [*kb, "remove", str(docs / "zzz.md")])
    assert nothing.exit_code == 2 and "nothing in the knowledge base" in nothing.output


def test_remove_a_folder_forgets_everything_below_it(tmp_path):
    docs = tmp_path / "docs"
    write(docs / "keep.md", "# Keep\n\nThe kiwi is flightless.\n")
    write(docs / "old" / "a.md", "# A\n\nThe moa was flightless too.\n")
    write(docs / "old" / "deep" / "b.md", "# B\n\nThe dodo was flightless as well.\n")
    write(docs / "older.md", "# Older\n\nA sibling whose name starts like the folder.\n")
    runner = CliRunner()
    kb = ["--kb", str(tmp_path / "kb")]
    assert runner.invoke(main, [*kb, "ingest", str(docs)]).exit_code == 0
    removed = runner.invoke(main, [*kb, "remove", str(docs / "old"), "--json"])
    assert sorted(json.loads(removed.output)["removed"]) == [str(docs / "old" / "a.md"), str(docs / "old/deep/b.md")]
    found = json.loads(runner.invoke(main, [*kb, "search", "flightless", "--mode", "keyword", "--json"]).output)
    assert [h["path"] for h in found["hits"]] == [str(docs / "keep.md")]
    assert (docs / "old" / "a.md").exists()  # the files themselves are not touched


@pytest.mark.parametrize("env_home", [True, False])
def test_kb_home_from_environment_or_flag(tmp_path, monkeypatch, env_home, embedder):
    runner = CliRunner()
    target = tmp_path / "chosen"
    write(tmp_path / "docs" / "a.md", "# A\n\nThe aardvark digs at night.\n")
    if env_home:
        monkeypatch.setenv("DEEPKB_HOME", str(target))
        kb = []
    else:
        kb = ["--kb", str(target)]
    refused = runner.invoke(main, [*kb, "status", "--json"])  # a read-only command creates nothing
    assert refused.exit_code == 1 and "no knowledge base at" in refused.output and not target.exists()
    assert runner.invoke(main, [*kb, "ingest", str(tmp_path / "docs")]).exit_code == 0
    result = runner.invoke(main, [*kb, "status", "--json"])
    assert result.exit_code == 0 and (target / "kb.sqlite").exists()


def test_the_cli_starts_without_heavy_imports():
    code = (
        "import sys, deepkb.cli; heavy = ('numpy', 'torch', 'sentence_transformers', 'llama_cpp', 'watchdog', "
        "'textual', 'hnswlib'); print([m for m in heavy if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
