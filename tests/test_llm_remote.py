"""The remote backend (--llm-url) against a stand-in OpenAI-compatible server on 127.0.0.1 that misbehaves."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from deepkb.answer.stream import AskOptions, ask
from deepkb.cli import main
from deepkb.errors import LLMError, UsageError
from deepkb.llm.base import Usage
from deepkb.llm.remote import OpenAICompatLLM
from deepkb.retrieval.search import Hit

from conftest import write

QUESTION = [{"role": "user", "content": "How long are backups kept?"}]


def _sse(*events: object) -> bytes:
    return b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)


def _delta(content: str) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": content}}]}


class StandIn:
    """Serves one scripted reply per request: (status, content type, body chunks, seconds to wait before each)."""

    def __init__(self, status: int = 200, body: bytes = b"", content_type: str = "text/event-stream", delay: float = 0):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                outer.requests.append({"headers": dict(self.headers), "body": json.loads(self.rfile.read(length))})
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.end_headers()
                try:
                    if delay:
                        self.wfile.write(body[:10])  # the start of the reply, then nothing for a while
                        self.wfile.flush()
                        time.sleep(delay)
                    self.wfile.write(body[10:] if delay else body)
                except OSError:  # the client gave up
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def __enter__(self) -> StandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _reply(server: StandIn, **kwargs) -> str:
    return "".join(OpenAICompatLLM(server.url, **kwargs).stream_chat(QUESTION, max_tokens=16))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_sse(_delta("Thirty"), {"error": {"message": "model crashed", "type": "server_error"}}), "reported an error"),
        (_sse({"error": "out of memory"}), "out of memory"),
        (_sse(_delta("Thirty"), "{not json"), "malformed event"),
        (_sse({"choices": [{"delta": "text"}]}), "malformed event"),
        (_sse([1, 2, 3]), "malformed event"),
        (_sse("[DONE]"), "without an answer"),
        (b"", "without an answer"),
    ],
)
def test_broken_streams_become_one_clear_error(body: bytes, message: str):
    with StandIn(body=body) as server, pytest.raises(LLMError, match=message) as info:
        _reply(server)
    assert server.url in str(info.value) and "\n" not in str(info.value)


def test_http_errors_carry_the_servers_message():
    body = json.dumps({"error": {"message": "model 'x' not found", "type": "invalid_request_error"}}).encode()
    with StandIn(status=404, body=body, content_type="application/json") as server:
        with pytest.raises(LLMError, match=r"HTTP 404 \(model 'x' not found\)"):
            _reply(server)


def test_a_server_that_stops_sending_times_out():
    with StandIn(body=_sse(_delta("Thirty"), _delta(" days")), delay=3) as server:
        started = time.perf_counter()
        with pytest.raises(LLMError, match="sent nothing for 0.5 s"):
            _reply(server, timeout=0.5)
        assert time.perf_counter() - started < 2.5


def test_a_json_reply_from_a_server_that_does_not_stream():
    body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "Thirty days [1]."}}]}).encode()
    with StandIn(body=body, content_type="application/json") as server:
        assert _reply(server) == "Thirty days [1]."


def test_usage_reported_by_the_server_is_the_answers(monkeypatch):
    usage_event = {"choices": [], "usage": {"prompt_tokens": 42, "completion_tokens": 2,
                                            "prompt_tokens_details": {"cached_tokens": 30}}}  # fmt: skip
    with StandIn(body=_sse(_delta("Thirty"), _delta(" days."), usage_event, "[DONE]")) as server:
        usage = Usage()
        llm = OpenAICompatLLM(server.url)
        assert "".join(llm.stream_chat(QUESTION, max_tokens=16, usage=usage)) == "Thirty days."
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (42, 2, 30)
    assert not llm.exclusive  # the server runs requests side by side: no lock held around them


def test_the_api_key_goes_only_where_it_was_configured(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-meant-for-openai")
    monkeypatch.setenv("LOCAL_LLM_KEY", "local-secret")
    with StandIn(body=_sse(_delta("ok"), "[DONE]")) as server:
        _reply(server)
        _reply(server, api_key_env="LOCAL_LLM_KEY")
    sent = [r["headers"].get("Authorization") for r in server.requests]
    assert sent == [None, "Bearer local-secret"]
    with pytest.raises(UsageError, match="NOT_SET_ANYWHERE"):
        OpenAICompatLLM("http://127.0.0.1:9", api_key_env="NOT_SET_ANYWHERE")


def test_a_failure_mid_answer_keeps_the_partial_answer():
    hits = [Hit(1, "/docs/b.md", None, 1, 3, None, 1.0, "Backups are kept for thirty days.", 0.6)]
    body = _sse(_delta("Thirty days"), {"error": {"message": "server overloaded"}})
    with StandIn(body=body) as server:
        result = ask("Backups?", lambda q, k: hits, OpenAICompatLLM(server.url), AskOptions(k=1))
    assert result.answer == "Thirty days" and result.error and "server overloaded" in result.notice
    assert not result.fallback


def test_cli_sends_the_key_from_the_named_variable(tmp_path, embedder, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-meant-for-openai")
    monkeypatch.setenv("MY_KEY", "mine")
    docs = tmp_path / "docs"
    write(docs / "backup.md", "# Backups\n\nBackups are kept for thirty days in the offsite vault.\n")
    kb = ["--kb", str(tmp_path / "kb")]
    runner = CliRunner()
    assert runner.invoke(main, [*kb, "ingest", str(docs)]).exit_code == 0
    with StandIn(body=_sse(_delta("Thirty days [1]."), "[DONE]")) as server:
        args = [*kb, "ask", "How long are backups kept?", "--json", "--llm-url", server.url]
        plain = runner.invoke(main, args)
        keyed = runner.invoke(main, [*args, "--llm-api-key-env", "MY_KEY"])
        broken = runner.invoke(main, [*args, "--llm-api-key-env", "UNSET_KEY_VAR"])
    assert plain.exit_code == 0 and json.loads(plain.stdout)["answer"] == "Thirty days [1]."
    assert keyed.exit_code == 0
    assert [r["headers"].get("Authorization") for r in server.requests] == [None, "Bearer mine"]
    assert broken.exit_code == 2 and "UNSET_KEY_VAR" in broken.output and "Traceback" not in broken.output
