""".deepkbignore follows gitignore (one implementation, used by ingest and watch); an unreadable one is reported."""

from __future__ import annotations

from pathlib import Path

from deepkb.ingest.scan import Skipped, scan

from conftest import write


def _found(root: Path, skipped: list[Skipped] | None = None) -> list[str]:
    return sorted(str(Path(p).relative_to(root)) for p, _ in scan([root], skipped=skipped))


def test_gitignore_semantics(tmp_path):
    root = tmp_path / "docs"
    for name in ("a.md", "keep.md", "x", "sub/x", "sub/deep/x", "docs/a.txt", "docs/sub/b.txt", "sub/keep.md",
                 "build/out.md", "sub/build/out.md", "only/file.md", "notes.txt"):  # fmt: skip
        write(root / name, "text\n")
    write(root / ".deepkbignore", "# comment\n*.md\n!keep.md\ndocs/*.txt\n**/x\n/build/\n")
    assert _found(root) == [
        "docs/sub/b.txt",  # `*` does not cross `/`: docs/*.txt leaves docs/sub/b.txt alone
        "keep.md",  # `!keep.md` re-includes what `*.md` left out, at any depth
        "notes.txt",
        "sub/keep.md",
    ]


def test_anchored_and_folder_patterns(tmp_path):
    root = tmp_path / "docs"
    for name in ("build/a.txt", "sub/build/b.txt", "logs", "sub/logs/c.txt", "x", "a/x"):
        write(root / name, "text\n")
    write(root / ".deepkbignore", "/build/\nlogs/\n**/x\n")
    # /build/ is anchored to this folder; logs/ matches folders only (the file `logs` stays); **/x matches x on top
    assert _found(root) == ["logs", "sub/build/b.txt"]


def test_a_deeper_file_overrides_and_is_relative_to_its_folder(tmp_path):
    root = tmp_path / "docs"
    for name in ("a.log", "sub/a.log", "sub/b.log", "sub/inner/c.log"):
        write(root / name, "text\n")
    write(root / ".deepkbignore", "*.log\n")
    write(root / "sub" / ".deepkbignore", "!a.log\n!inner/c.log\n")
    assert _found(root) == ["sub/a.log", "sub/inner/c.log"]


def test_an_unreadable_ignore_file_leaves_its_folder_out_and_says_so(tmp_path):
    root = tmp_path / "docs"
    write(root / "open" / "a.md", "text\n")
    write(root / "private" / "secret.md", "text\n")
    (root / "private" / ".deepkbignore").mkdir()  # cannot be read as a file, even by root
    write(root / "latin" / "b.md", "text\n")
    (root / "latin" / ".deepkbignore").write_bytes(b"caf\xe9.md\n")
    skipped: list[Skipped] = []
    assert _found(root, skipped) == ["open/a.md"]
    assert [(Path(s.path).name, s.reason) for s in skipped] == [
        ("latin", "unreadable folder (its .deepkbignore is not UTF-8 text)"),
        ("private", "unreadable folder (its .deepkbignore cannot be read: Is a directory)"),
    ]
