"""Model management against a local stand-in for the Hugging Face Hub (HF_ENDPOINT), not a mock."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepkb.errors import ModelDownloadError, ModelNotFoundError
from deepkb.llm import catalog as models

ENTRY = models.CATALOG[models.DEFAULT_MODEL]
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB standing in for the GGUF
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Serves one file the way huggingface.co's /resolve/ endpoint does: HEAD metadata, GET with Range."""

    def __init__(self, payload: bytes = PAYLOAD) -> None:
        self.payload = payload
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Range header
        self.drop_first_get_after: int | None = None  # close the connection mid-body once, like a network drop
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _headers(self, status: int, start: int) -> None:
                size, sha256 = len(hub.payload), hashlib.sha256(hub.payload).hexdigest()
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{sha256}"')
                self.send_header("X-Linked-Etag", f'"{sha256}"')
                self.send_header("X-Linked-Size", str(size))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(size - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.end_headers()

            def _known(self) -> bool:
                hub.requests.append((self.command, self.path, self.headers.get("Range")))
                if self.path not in _files():
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return False
                return True

            def do_HEAD(self) -> None:
                if self._known():
                    self._headers(200, 0)

            def do_GET(self) -> None:
                if not self._known():
                    return
                rng = self.headers.get("Range")
                start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
                self._headers(206 if rng else 200, start)
                body = hub.payload[start:]
                if hub.drop_first_get_after is not None:
                    body, hub.drop_first_get_after = body[: hub.drop_first_get_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def gets(self) -> list[str | None]:
        """Range headers of the file downloads (huggingface_hub also GETs other /api/ paths now and then)."""
        return [rng for method, path, rng in self.requests if method == "GET" and path in _files()]


def _files() -> tuple[str, ...]:
    """Where the stand-in hub serves the file: the moving branch and the one commit it has."""
    return tuple(f"/{ENTRY.repo_id}/resolve/{rev}/{ENTRY.filename}" for rev in ("main", COMMIT))


def _online(monkeypatch) -> None:
    """Undo HF_HUB_OFFLINE, which loading the embedding model sets for the whole test process."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub(monkeypatch, tmp_path, request):
    server = FakeHub(getattr(request, "param", PAYLOAD))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    _online(monkeypatch)
    monkeypatch.setenv("DEEPKB_MODELS", str(tmp_path / "models"))
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_pull_downloads_into_models_dir(hub, tmp_path):
    path = models.pull(progress=False)
    assert path == tmp_path / "models" / ENTRY.filename
    assert path.read_bytes() == PAYLOAD
    assert hub.gets() == [None]
    assert not list(path.parent.glob("*.incomplete"))
    assert models.pull(progress=False) == path  # already there: no second download
    assert hub.gets() == [None]


def test_pull_json_from_the_cli(hub):
    from deepkb.cli import main

    out = CliRunner().invoke(main, ["models", "pull", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["name"] == models.DEFAULT_MODEL and data["size_bytes"] == len(PAYLOAD)
    assert Path(data["path"]).read_bytes() == PAYLOAD


def test_pull_resumes_an_interrupted_download(hub, tmp_path):
    partial = tmp_path / "models" / (ENTRY.filename + models.PARTIAL_SUFFIX)
    partial.parent.mkdir()
    partial.write_bytes(PAYLOAD[:300_000])  # what an earlier, killed pull left behind
    rows = {r.name: r for r in models.list_models()}
    assert rows[ENTRY.name].partial_bytes == 300_000 and rows[ENTRY.name].path is None

    path = models.pull(progress=False)
    assert path.read_bytes() == PAYLOAD
    assert hub.gets() == ["bytes=300000-"]  # only the missing bytes were fetched
    assert not partial.exists()


BIG = bytes(range(256)) * (96 * 1024)  # 24 MiB: huggingface_hub writes in 10 MiB chunks


@pytest.mark.parametrize("hub", [BIG], indirect=True)
def test_pull_survives_a_dropped_connection(hub):
    hub.drop_first_get_after = 15 * 1024 * 1024
    path = models.pull(progress=False)
    assert path.read_bytes() == BIG
    first, retry = hub.gets()
    resumed_at = int(retry.removeprefix("bytes=").rstrip("-"))
    assert first is None and 0 < resumed_at <= 15 * 1024 * 1024  # the retry asked only for what was missing


def test_corrupt_partial_is_detected_and_deleted(hub, tmp_path):
    partial = tmp_path / "models" / (ENTRY.filename + models.PARTIAL_SUFFIX)
    partial.parent.mkdir()
    partial.write_bytes(b"\0" * 1000)  # not the file's first bytes
    with pytest.raises(ModelDownloadError, match="checksum"):
        models.pull(progress=False)
    assert not partial.exists() and not (partial.parent / ENTRY.filename).exists()


def test_no_network_is_one_sentence_naming_file_url_and_folder(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("DEEPKB_MODELS", str(tmp_path / "models"))
    _online(monkeypatch)
    with pytest.raises(ModelDownloadError) as info:
        models.pull(progress=False)
    message = str(info.value)
    assert ENTRY.filename in message
    assert f"http://127.0.0.1:{port}/{ENTRY.repo_id}/resolve/main/{ENTRY.filename}" in message
    assert str(tmp_path / "models") in message
    assert "\n" not in message and message.endswith(".")
    assert "no connection to" in message and message.count("http://") == 1

    from deepkb.cli import main

    result = CliRunner().invoke(main, ["models", "pull"])
    assert result.exit_code == 1
    assert ENTRY.filename in result.output and "Traceback" not in result.output


def test_list_rm_and_resolution(monkeypatch, tmp_path):
    folder = tmp_path / "models"
    monkeypatch.setenv("DEEPKB_MODELS", str(folder))
    monkeypatch.delenv("DEEPKB_MODEL", raising=False)
    with pytest.raises(ModelNotFoundError, match="deepkb models pull"):
        models.resolve_model()

    folder.mkdir()
    seven = folder / models.CATALOG["deepseek-r1-7b"].filename
    seven.write_bytes(b"7b")
    assert models.resolve_model() == seven  # the default is missing: any pulled catalog model will do
    default = folder / ENTRY.filename
    default.write_bytes(b"1.5b")
    own = folder / "my-own.gguf"
    own.write_bytes(b"mine")
    assert models.resolve_model() == default
    monkeypatch.setenv("DEEPKB_MODEL", str(own))
    assert models.resolve_model() == own  # environment beats the default
    assert models.resolve_model("deepseek-r1-7b") == seven  # an explicit choice beats the environment
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        models.resolve_model(tmp_path / "missing.gguf")

    rows = {r.name: r for r in models.list_models()}
    assert rows[models.DEFAULT_MODEL].is_default and rows[models.DEFAULT_MODEL].size_bytes == 4
    assert rows["my-own.gguf"].path == own  # GGUFs outside the catalog are listed too
    assert rows["deepseek-r1-8b"].path is None

    from deepkb.cli import main

    out = CliRunner().invoke(main, ["models", "list", "--json"])
    assert out.exit_code == 0, out.output
    assert '"downloaded": true' in out.output
    removed = CliRunner().invoke(main, ["models", "rm", "deepseek-r1-7b", "--json"])
    assert removed.exit_code == 0 and not seven.exists()
    assert json.loads(removed.output) == {"removed": [str(seven)]}
    missing = CliRunner().invoke(main, ["models", "rm", "deepseek-r1-7b"])
    assert missing.exit_code == 1 and "not in" in missing.output


def test_models_dir_prefers_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPKB_MODELS", str(tmp_path / "m"))
    assert models.models_dir() == tmp_path / "m"
    monkeypatch.delenv("DEEPKB_MODELS")
    checkout = Path(models.__file__).resolve().parent.parent
    expected = checkout / "models" if (checkout / ".git").exists() else None
    if expected:
        assert models.models_dir() == expected


TAMPERED = PAYLOAD[:-4] + b"EVIL"


@pytest.mark.parametrize("hub", [TAMPERED], indirect=True, ids=["tampered"])
def test_a_tampered_download_is_refused_against_the_pinned_sha256(hub, tmp_path, monkeypatch):
    """The hub (or a mirror, or someone between) serves other bytes with a matching ETag: only the pin catches it."""
    import dataclasses
    import hashlib

    pinned = dataclasses.replace(ENTRY, revision=COMMIT, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    monkeypatch.setitem(models.CATALOG, ENTRY.name, pinned)
    with pytest.raises(ModelDownloadError, match="does not match the SHA-256 deepkb pins"):
        models.pull(progress=False)
    assert not (tmp_path / "models" / ENTRY.filename).exists()
    assert not list((tmp_path / "models").glob("*.incomplete"))
    assert [path for method, path, _ in hub.requests if method == "GET"] == [
        f"/{ENTRY.repo_id}/resolve/{COMMIT}/{ENTRY.filename}"  # the pinned commit, never the moving branch
    ]

    hub.payload = PAYLOAD  # the genuine file at that commit is accepted
    assert models.pull(progress=False).read_bytes() == PAYLOAD
