"""Test harness: a real deepkb server (uvicorn on a free loopback port, in a thread) and a stand-in upstream LLM.

The stand-in upstream is outside deepkb (it plays llama.cpp server / vLLM for --llm-url): it streams a reply
at a chosen pace, word by word or in pieces (a looping model: one sentence per piece), can end it as cut at
max_tokens, can hold its streams until the test releases them, and can break mid-reply.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from deepkb.server.app import create_app
from deepkb.server.settings import ServerSettings


@dataclass
class Running:
    """A started server: its URL, the app (for its state) and an HTTP client."""

    url: str
    app: object
    http: httpx.Client

    @property
    def base(self) -> str:
        return self.url + "/v1"

    @property
    def state(self):
        return self.app.state.deepkb

    def openai(self, api_key: str = "unused", timeout: float = 60.0):
        import openai

        return openai.OpenAI(base_url=self.base, api_key=api_key, max_retries=0, timeout=timeout)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """Every sample of /metrics, parsed by prometheus_client: {(name, sorted labels): value}."""
        from prometheus_client.parser import text_string_to_metric_families

        response = self.http.get("/metrics")
        assert response.status_code == 200, response.text
        samples = {}
        for family in text_string_to_metric_families(response.text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def wait_metric(self, name: str, value: float, timeout: float = 20.0, **labels: str) -> None:
        deadline = time.monotonic() + timeout
        while self.metric(name, **labels) != value:
            assert time.monotonic() < deadline, f"{name}{labels} never became {value}"
            time.sleep(0.05)


@contextmanager
def running(
    settings: ServerSettings, embedder=None, wait_ready: bool = True, timeout: float = 90.0, headers: dict | None = None
) -> Iterator[Running]:
    """Start create_app(settings) under uvicorn on a free 127.0.0.1 port; stop it on exit."""
    import uvicorn

    app = create_app(settings, embedder=embedder)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=3, lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, timeout=60.0, headers=headers or {})
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            assert thread.is_alive(), "the server did not start"
            assert time.monotonic() < deadline, "the server did not start in time"
            time.sleep(0.02)
        if wait_ready:
            auth = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
            while http.get("/ready", headers=auth).status_code != 200:
                assert time.monotonic() < deadline, f"never ready: {http.get('/ready', headers=auth).text}"
                time.sleep(0.05)
        yield Running(url, app, http)
    finally:
        http.close()
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


class Upstream:
    """A stand-in OpenAI-compatible chat server: streams `reply` in `pieces`, one every `delay` seconds.

    `pieces=None` streams word by word; `reply` may be changed between requests. `finish_reason`: end with a choice
    that says it ("stop", or "length" for a reply cut at max_tokens). Then the usage and [DONE].
    With `gate` unset, each stream waits for it before its first piece (the test decides when answers flow).
    `break_after`: after that many pieces, send a broken SSE line (an upstream failing mid-reply).
    `reasoning`: sent first as a reasoning model's `reasoning_content` (DeepSeek R1 behind vLLM or llama.cpp server).
    """

    def __init__(self, reply: str = "Backups are kept for thirty days [1].", pieces: int | None = 8, delay: float = 0.0,
                 break_after: int | None = None, finish_reason: str | None = None,
                 reasoning: str | None = None) -> None:  # fmt: skip
        self.reply, self.pieces, self.delay, self.reasoning = reply, pieces, delay, reasoning
        self.break_after, self.finish_reason = break_after, finish_reason
        self.gate = threading.Event()
        self.gate.set()
        self.requests = 0
        self.active = 0
        self.max_active = 0
        self.closed_early = 0
        self._lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                json.loads(self.rfile.read(length))
                upstream._enter()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    upstream.gate.wait(30)
                    pieces = upstream._split()
                    if upstream.reasoning:
                        self._send({"choices": [{"index": 0, "delta": {"reasoning_content": upstream.reasoning}}]})
                    for n, piece in enumerate(pieces):
                        if upstream.break_after is not None and n == upstream.break_after:
                            self.wfile.write(b"data: {broken\n\n")
                            return
                        self._send({"choices": [{"index": 0, "delta": {"content": piece}}]})
                        time.sleep(upstream.delay)
                    if upstream.finish_reason:
                        self._send({"choices": [{"index": 0, "delta": {}, "finish_reason": upstream.finish_reason}]})
                    self._send({"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": len(pieces)}})
                    self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):
                    with upstream._lock:
                        upstream.closed_early += 1
                finally:
                    upstream._leave()

            def _send(self, data: dict) -> None:
                self.wfile.write(b"data: " + json.dumps(data).encode() + b"\n\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def _split(self) -> list[str]:
        words = self.reply.split(" ")
        size = max(1, len(words) // (self.pieces or len(words)))
        return [" ".join(words[i : i + size]) + " " for i in range(0, len(words), size)]

    def _enter(self) -> None:
        with self._lock:
            self.requests += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1

    def __enter__(self) -> Upstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()
