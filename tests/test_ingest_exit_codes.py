"""`deepkb ingest` in a nightly cron job: exit codes a script can rely on, and what Ctrl-C says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import write


def _ingest(kb: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real entry point in a subprocess, stderr not a terminal, as cron runs it."""
    return subprocess.run(
        [sys.executable, "-m", "deepkb", "--kb", str(kb), "ingest", *args], capture_output=True, text=True,
        timeout=300, env={**os.environ, "COLUMNS": "120", **(env or {})},
    )  # fmt: skip


def _source_tree(root: Path) -> Path:
    """What a source checkout holds: text, an image, an archive, an empty __init__.py."""
    write(root / "README.md", "# Tool\n\nRun `tool sync` to copy the notes to the server every night.\n")
    write(root / "tool" / "main.py", "def sync():\n    '''Copy the notes to the server.'''\n    return 0\n")
    (root / "tool" / "__init__.py").write_text("")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (root / "release.tar.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(64))
    return root


def test_unsupported_and_empty_files_are_listed_but_not_failures(tmp_path):
    docs = _source_tree(tmp_path / "src")
    kb = tmp_path / "kb"
    first = _ingest(kb, str(docs))
    assert first.returncode == 0, first.stderr
    for name in ("logo.png", "release.tar.gz", "__init__.py"):
        assert name in first.stderr  # the summary still lists every file left out, with its reason
    assert "unsupported file type" in first.stderr and "empty file" in first.stderr
    report = json.loads(_ingest(kb, str(docs), "--json").stdout)
    assert {Path(s["path"]).name for s in report["skipped"]} == {"logo.png", "release.tar.gz", "__init__.py"}

    strict = _ingest(kb, str(docs), "--strict")
    assert strict.returncode == 1  # for those who want every file accounted for


def test_a_file_that_cannot_be_read_still_fails_the_run(tmp_path):
    docs = _source_tree(tmp_path / "src")
    broken = write(docs / "notes.pdf", "%PDF-1.7 this is not really a PDF")
    result = _ingest(tmp_path / "kb", str(docs))
    assert result.returncode == 1 and broken.name in result.stderr


def test_ctrl_c_says_what_was_stored_and_that_running_again_resumes(tmp_path):
    docs = tmp_path / "docs"
    for i in range(6):
        write(docs / f"note{i}.md", f"# Note {i}\n\nThe vault code for room {i} is kept by the facilities team.\n")
    kb = tmp_path / "kb"
    # Ctrl-C arrives after the first batch was committed (DEEPKB_FAULT sends the SIGINT at that very place).
    stopped = _ingest(kb, str(docs), env={"DEEPKB_FAULT": "committed:1:sigint", "DEEPKB_CHUNKS_PER_COMMIT": "2"})
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr
    line = stopped.stderr.strip().splitlines()[-1]
    assert "interrupted:" in line and "new documents" in line and "run the same command again" in line
    stored = int(line.split("interrupted: ")[1].split(" new documents")[0])
    assert stored >= 1
    again = json.loads(_ingest(kb, str(docs), "--json").stdout)
    assert again["added"] == 6 - stored and again["unchanged"] == stored
