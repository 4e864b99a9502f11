"""Security (issue 19): a crafted backup, a steering config, a rebinding web page, a planted symlink, a tampered
download, a mistyped --kb and racing threads must never get past deepkb. Each test fails on the unsafe code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepkb.backup import MANIFEST, backup, restore
from deepkb.checksum import file_sha256
from deepkb.cli import main
from deepkb.errors import UsageError
from deepkb.kb import KnowledgeBase

from conftest import REPO, write


def _small_kb(kb, tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\nThe albatross glides for hours over the southern ocean.\n")
    kb.ingest([docs])
    return docs


def _sign(folder: Path, name: str, manifest: dict | None = None) -> dict:
    """Record a file's size and sha256 in the backup's own manifest, as a forger would."""
    manifest = manifest or json.loads((folder / MANIFEST).read_text())
    path = folder / name
    manifest["files"][name] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return manifest


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


# restore: a crafted backup ----------------------------------------------------------------------------------
def test_a_crafted_backup_cannot_write_outside_the_knowledge_base(kb, tmp_path):
    _small_kb(kb, tmp_path)
    bk = tmp_path / "bk"
    backup(kb.home, bk)
    (tmp_path / "PWNED.txt").write_text("owned\n")  # SRC/../PWNED.txt: what the forged entry copies
    manifest = json.loads((bk / MANIFEST).read_text())
    manifest["files"]["../PWNED.txt"] = {"size": 6, "sha256": file_sha256(tmp_path / "PWNED.txt")}
    (bk / MANIFEST).write_text(json.dumps(manifest))
    target = tmp_path / "restored" / "kb"
    with pytest.raises(UsageError, match=r"names '\.\./PWNED\.txt', which is not a file deepkb writes"):
        restore(bk, target)
    assert not (tmp_path / "restored" / "PWNED.txt").exists()
    assert not target.exists()  # nothing written, not even the folder


def test_a_backup_with_a_symlink_or_a_device_is_refused_and_nothing_is_written(kb, tmp_path):
    _small_kb(kb, tmp_path)
    bk = tmp_path / "bk"
    backup(kb.home, bk)
    secret = tmp_path / "secret.txt"
    secret.write_text("api_key = hunter2\n")
    (bk / "config.toml").unlink(missing_ok=True)
    os.symlink(secret, bk / "config.toml")
    _sign(bk, "config.toml")  # the sha256 of what the link points at: the integrity check alone would pass
    target = tmp_path / "restored"
    with pytest.raises(UsageError, match="not a regular file"):
        restore(bk, target)
    assert not target.exists()

    (bk / "config.toml").unlink()
    os.symlink("/dev/zero", bk / "config.toml")
    manifest = json.loads((bk / MANIFEST).read_text())
    manifest["files"]["config.toml"] = {"size": 0, "sha256": "0" * 64}
    (bk / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UsageError, match="not a regular file"):
        restore(bk, target)
    assert not target.exists()


def test_a_restored_config_cannot_steer_answers_to_another_server(kb, tmp_path, monkeypatch):
    _small_kb(kb, tmp_path)
    (kb.home / "config.toml").write_text(
        'embed_batch_size = 16\nllm_url = "http://attacker.example:8080/v1"\nllm_api_key_env = "AWS_SECRET_ACCESS_KEY"\n'
    )
    backup(kb.home, tmp_path / "bk")
    restored = tmp_path / "restored"
    out = CliRunner().invoke(main, ["--kb", str(restored), "restore", str(tmp_path / "bk")])
    assert out.exit_code == 0, out.output
    assert "left out llm_url, llm_api_key_env" in out.output and "--trust-config" in out.output
    with KnowledgeBase.open(restored, check_model=False) as copy:
        assert copy.settings.llm_url == "" and copy.settings.llm_api_key_env == ""
        assert copy.settings.embed_batch_size == 16  # the harmless settings arrive
    trusted = tmp_path / "trusted"
    out = CliRunner().invoke(main, ["--kb", str(trusted), "restore", "--trust-config", str(tmp_path / "bk")])
    assert out.exit_code == 0, out.output
    with KnowledgeBase.open(trusted, check_model=False) as copy:
        assert copy.settings.llm_url == "http://attacker.example:8080/v1"


def test_a_damaged_vector_index_is_rebuilt_on_restore(kb, tmp_path, embedder):
    """Issue 22 item 12: the index is a cache; a flipped bit in it must not make the whole backup unrestorable."""
    _small_kb(kb, tmp_path)
    expected = [(h.path, h.line_start) for h in kb.search("albatross ocean", k=3)]
    bk = tmp_path / "bk"
    backup(kb.home, bk)
    with open(bk / "vectors.hnsw", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\xff\xff\xff\xff")
    out = CliRunner().invoke(main, ["--kb", str(tmp_path / "restored"), "restore", str(bk)])
    assert out.exit_code == 0, out.output
    assert "rebuilt it from the database" in out.output
    assert (tmp_path / "restored" / "vectors.hnsw").read_bytes() != (bk / "vectors.hnsw").read_bytes()
    with KnowledgeBase.open(tmp_path / "restored", embedder=embedder) as copy:
        assert copy.index.state == "loaded"  # rebuilt and saved by the restore, in step with the database
        assert [(h.path, h.line_start) for h in copy.search("albatross ocean", k=3)] == expected


# a mistyped --kb ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [["search", "keys"], ["status"], ["ask", "who rotates keys?"], ["chat"], ["serve", "--port", "0"], ["doctor"],
     ["backup", "BACKUP"], ["chats"], ["remove", "x.md"], ["reindex"]],
    ids=lambda a: a[0],
)  # fmt: skip
def test_a_read_only_command_on_a_mistyped_kb_says_so_and_creates_nothing(tmp_path, args):
    """A real process each: on the old code `serve` and `chat` would start on the new empty folder and never end."""
    typo = tmp_path / "typo"
    args = [str(tmp_path / "bk") if a == "BACKUP" else a for a in args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-m", "deepkb", "--kb", str(typo), *args], capture_output=True, text=True,
                         timeout=120, env=env, stdin=subprocess.DEVNULL)  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert f"no knowledge base at {typo}" in out.stderr and not out.stdout
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert not typo.exists()  # nothing created there
    assert not (tmp_path / "bk").exists()


def test_ingest_creates_the_knowledge_base_the_read_only_commands_then_find(tmp_path, embedder):
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\nThe albatross glides for hours.\n")
    home = tmp_path / "new-kb"
    assert CliRunner().invoke(main, ["--kb", str(home), "ingest", str(docs)]).exit_code == 0
    out = CliRunner().invoke(main, ["--kb", str(home), "status", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["documents"] == 1


# the HTTP server: DNS rebinding, foreign origins, keys -------------------------------------------------------
@pytest.fixture
def served(kb, tmp_path):
    pytest.importorskip("fastapi")
    _small_kb(kb, tmp_path)
    from deepkb.server.settings import ServerSettings

    return ServerSettings(port=0, kb=kb.home, retrieval_only=True)


def test_a_rebinding_host_header_cannot_read_the_knowledge_base(served, embedder):
    from server_harness import running

    with running(served, embedder) as srv:
        port = srv.url.rsplit(":", 1)[1]
        evil = {"Host": f"attacker.example:{port}"}
        for response in (srv.http.get("/v1/documents", headers=evil),
                         srv.http.post("/v1/search", json={"query": "albatross"}, headers=evil)):  # fmt: skip
            assert response.status_code == 403, response.text
            assert response.json()["error"]["code"] == "host_not_allowed"
            assert "albatross" not in response.text and "a.md" not in response.text
        for name in ("127.0.0.1", "localhost", "[::1]"):
            assert srv.http.get("/v1/documents", headers={"Host": f"{name}:{port}"}).status_code == 200, name

        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        async def secret(request):
            return PlainTextResponse("secret passages")

        srv.app.mount("/mcp", Starlette(routes=[Route("/", secret)]))  # a route mounted later (MCP) is covered too
        assert srv.http.get("/mcp/").text == "secret passages"
        assert srv.http.get("/mcp/", headers=evil).status_code == 403


def test_a_foreign_web_page_is_refused_unless_cors_allows_it(served, embedder):
    import dataclasses

    from server_harness import running

    with running(served, embedder) as srv:
        response = srv.http.post("/v1/search", json={"query": "albatross"}, headers={"Origin": "https://evil.example"})
        assert response.status_code == 403 and response.json()["error"]["code"] == "origin_not_allowed"
        assert srv.http.post("/v1/search", json={"query": "albatross"}).status_code == 200  # no browser: no Origin
    allowed = dataclasses.replace(served, cors_origins=("http://localhost:3000",), allowed_hosts=("kb.internal",))
    with running(allowed, embedder) as srv:
        ok = srv.http.post("/v1/search", json={"query": "albatross"},
                           headers={"Origin": "http://localhost:3000", "Host": "kb.internal"})  # fmt: skip
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert srv.http.get("/v1/documents", headers={"Origin": "http://localhost:4000"}).status_code == 403


def test_a_whitespace_api_key_is_refused_and_a_key_file_is_read(tmp_path):
    from deepkb.cli.serve import _api_key
    from deepkb.server.settings import ServerSettings

    with pytest.raises(UsageError, match="empty or only whitespace"):
        ServerSettings(api_key="   ").check()
    with pytest.raises(UsageError, match="empty or only whitespace"):
        ServerSettings(host="0.0.0.0", api_key=" \t").check()
    key_file = tmp_path / "key"
    key_file.write_text("s3cret-key\n")
    assert _api_key(None, key_file) == "s3cret-key"
    (tmp_path / "blank").write_text("  \n")
    with pytest.raises(UsageError, match="is empty"):
        _api_key(None, tmp_path / "blank")
    out = CliRunner().invoke(main, ["serve", "--help"])
    assert "--api-key-file" in out.output and "DEEPKB_API_KEY" in out.output and "ps" in out.output
    home = tmp_path / "kb"
    out = CliRunner().invoke(main, ["--kb", str(home), "serve", "--api-key-file", str(tmp_path / "blank")])
    assert out.exit_code == 2 and "is empty" in out.output


# the TUI's copy fallback ---------------------------------------------------------------------------------------
def test_the_copy_fallback_never_writes_through_a_planted_symlink(tmp_path, monkeypatch):
    import tempfile

    from deepkb.tui.system import clipboard_file

    shared_tmp = tmp_path / "tmp"
    (shared_tmp / "deepkb-clipboard").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("the victim's file\n")
    os.symlink(victim, shared_tmp / "deepkb-clipboard" / "copied.txt")  # planted by another local user
    monkeypatch.setattr(tempfile, "tempdir", str(shared_tmp))
    monkeypatch.delenv("DEEPKB_CLIPBOARD_DIR", raising=False)
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))

    path = clipboard_file("copied answer")
    assert victim.read_text() == "the victim's file\n"
    assert path.read_text() == "copied answer" and path.is_relative_to(runtime)
    assert (path.stat().st_mode & 0o777) == 0o600 and (path.parent.stat().st_mode & 0o777) == 0o700

    path.unlink()
    os.symlink(victim, path)  # even a link in the private folder is replaced, not followed
    assert clipboard_file("again").read_text() == "again" and not path.is_symlink()
    assert victim.read_text() == "the victim's file\n"


# threads of one Storage -----------------------------------------------------------------------------------------
def test_two_threads_of_one_knowledge_base_never_hold_the_writer_lock_together(kb, tmp_path):
    _small_kb(kb, tmp_path)
    inside, spans, errors = threading.Event(), {}, []

    def write(name: str, hold: float) -> None:
        try:
            with kb.writer(name):
                start = time.monotonic()
                inside.set()
                time.sleep(hold)
                spans[name] = (start, time.monotonic())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    first = threading.Thread(target=write, args=("first", 0.4))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=write, args=("second", 0.0))
    second.start()
    first.join(10)
    second.join(10)
    assert not errors
    assert spans["second"][0] >= spans["first"][1]  # the second waited for the first


def test_concurrent_searches_do_not_change_the_shared_index_settings(tmp_path, embedder):
    docs = tmp_path / "docs"
    for i in range(40):
        write(docs / f"n{i}.md", f"# Note {i}\n\nBird number {i} is an albatross with a wingspan of {i + 200} cm.\n")
    kb = KnowledgeBase.open(tmp_path / "small-ef", embedder=embedder, hnsw_ef_search=8)
    kb.ingest([docs])
    index = kb.index
    ef = index.index.ef
    expected = {k: [h.chunk_id for h in kb.search("albatross wingspan", k=k, mode="dense")] for k in (3, 30)}
    assert index.index.ef == ef  # a search with k above ef changed nothing others share
    results, errors = [], []

    def search(k: int) -> None:
        try:
            for _ in range(15):
                results.append((k, [h.chunk_id for h in kb.search("albatross wingspan", k=k, mode="dense")]))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=search, args=(k,)) for k in (3, 30, 3, 30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 60
    assert all(ids == expected[k] for k, ids in results)
    assert index.index.ef == ef == 8
    kb.close()


# fuzz (bench/fuzz_security.py, bounded) ---------------------------------------------------------------------------
def test_hostile_backups_each_end_in_one_clear_line_and_write_nothing_outside():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from fuzz_security import fuzz_restore
    finally:
        sys.path.remove(str(REPO / "bench"))
    result = fuzz_restore(n_random=30, seed=19)
    assert result["cases"] > 120 and result["problems"] == [], result["problems"]
    assert result["outcomes"]["refused"] >= result["cases"] - 10
