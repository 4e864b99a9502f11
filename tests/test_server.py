"""`deepkb serve`: a real server on a loopback port, called with the official openai package and plain HTTP.

The tiny GGUF writes random-weight text, so answers are checked for their structure (chunk shapes, markers that
point to listed sources, usage figures), never for their wording.
"""

from __future__ import annotations

import json
import logging
import re

import pytest
from click.testing import CliRunner

from deepkb.cli import main
from deepkb.errors import UsageError
from deepkb.server.policy import WITHHELD
from deepkb.server.settings import ServerSettings

from conftest import write
from server_harness import running

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

QUESTION = "How long are backups kept?"
MARKER = re.compile(r"\[(\d+)\]")


@pytest.fixture
def docs(kb, tmp_path):
    """A small knowledge base: three short policy documents."""
    folder = tmp_path / "docs"
    write(folder / "backups.md", """
        # Backup retention
        Backups are kept for thirty days. Nightly backups run at 02:00 and are copied off site weekly.
        """)  # fmt: skip
    write(folder / "keys.md", """
        # Key rotation
        Signing keys rotate every year; the security team approves each rotation.
        """)  # fmt: skip
    write(folder / "travel.md", """
        # Travel
        Travel expenses are reimbursed within two weeks of filing the receipts.
        """)  # fmt: skip
    kb.ingest([folder])
    return folder


@pytest.fixture
def settings(kb_home, tiny_model, docs):
    return ServerSettings(port=0, kb=kb_home, model=str(tiny_model), context_size=2048, max_tokens=64, keepalive=0.5)


def _sse(text: str) -> list[dict]:
    """The JSON chunks of an SSE body (comments and [DONE] left out)."""
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def _check_markers(content: str, numbers: set[int]) -> None:
    for n in MARKER.findall(content):
        assert int(n) in numbers, f"[{n}] points to no listed source"


def test_chat_completion_with_the_openai_client(settings, embedder):
    with running(settings, embedder) as srv:
        completion = srv.openai().chat.completions.create(
            model="deepkb", messages=[{"role": "user", "content": QUESTION}], max_tokens=64
        )
    assert completion.object == "chat.completion" and completion.model == "deepkb"
    choice = completion.choices[0]
    assert choice.index == 0 and choice.finish_reason in ("stop", "length")
    assert choice.message.role == "assistant" and choice.message.content
    assert "<think>" not in choice.message.content and "</think>" not in choice.message.content
    reasoning = choice.message.model_extra.get("reasoning_content")
    assert reasoning and reasoning not in choice.message.content  # R1 reasoning apart from the answer
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    sources = completion.model_extra["sources"]  # Open WebUI's shape, numbered as the markers
    assert sources and all(s["document"] and s["source"]["id"] and s["metadata"][0]["path"] for s in sources)
    numbers = {s["metadata"][0]["n"] for s in sources}
    assert numbers == set(range(1, len(sources) + 1))
    _check_markers(choice.message.content, numbers)
    cited = choice.model_extra["sources"]  # the structured field on the choice: cited passages only
    for c in cited:
        assert {"n", "path", "page", "line_start", "line_end", "text"} <= set(c)
        assert sources[c["n"] - 1]["metadata"][0]["chunk_id"] == c["chunk_id"]
    assert {c["n"] for c in cited} == {int(n) for n in MARKER.findall(choice.message.content)}


def test_streamed_chunks_are_openai_shaped_with_source_events(settings, embedder):
    with running(settings, embedder) as srv:
        stream = srv.openai().chat.completions.create(
            model="deepkb", messages=[{"role": "user", "content": QUESTION}], max_tokens=64, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        chunks = list(stream)
        with srv.http.stream(
            "POST", "/v1/chat/completions",
            json={"model": "deepkb", "messages": [{"role": "user", "content": "When do nightly backups run?"}],
                  "stream": True, "max_tokens": 64},
        ) as raw:  # fmt: skip
            body = raw.read().decode()
            headers = raw.headers
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    with_choices = [c for c in chunks if c.choices]
    assert all(c.choices[0].index == 0 for c in with_choices)
    assert with_choices[0].choices[0].delta.role == "assistant"
    finished = [c for c in with_choices if c.choices[0].finish_reason]
    assert len(finished) == 1 and finished[0] is with_choices[-1]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0  # include_usage: a last usage chunk
    content = "".join(c.choices[0].delta.content or "" for c in with_choices)
    reasoning = "".join(c.choices[0].delta.model_extra.get("reasoning_content") or "" for c in with_choices)
    assert content and reasoning and "</think>" not in content
    events = [c.model_extra["event"] for c in chunks if c.model_extra.get("event")]
    assert events and all(e["type"] == "source" for e in events)
    for event in events:
        data = event["data"]
        assert set(data) >= {"source", "document", "metadata"} and set(data["source"]) >= {"id", "name"}
        assert set(data["metadata"][0]) >= {"source", "name", "page", "line_start", "line_end"}
    _check_markers(content, {e["data"]["metadata"][0]["n"] for e in events})

    assert headers["content-type"].startswith("text/event-stream") and headers["x-accel-buffering"] == "no"
    assert body.rstrip().endswith("data: [DONE]")
    raw_chunks = _sse(body)
    assert raw_chunks[-1]["usage"]["total_tokens"] > 0  # without include_usage the finish chunk carries usage
    assert raw_chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_follow_up_sees_the_whole_conversation_and_norag_answers_alone(settings, embedder):
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": "Thirty days [1].\n\nSources:\n[1] docs/backups.md L1-2"},
        {"role": "user", "content": [{"type": "text", "text": "And where are they copied?"}]},
    ]
    with running(settings, embedder) as srv:
        client = srv.openai()
        follow_up = client.chat.completions.create(model="deepkb", messages=messages, max_tokens=64)
        norag = client.chat.completions.create(
            model="deepkb-norag", messages=[{"role": "user", "content": "Title for this chat?"}], max_tokens=16
        )
        norag_stream = list(client.chat.completions.create(
            model="deepkb-norag", messages=[{"role": "user", "content": "Tags?"}], max_tokens=16, stream=True
        ))  # fmt: skip
    assert follow_up.choices[0].message.content and follow_up.model_extra["sources"]
    assert norag.choices[0].message.content is not None and norag.model_extra["sources"] == []
    assert norag.usage.completion_tokens > 0
    assert not any(c.model_extra.get("event") for c in norag_stream)
    assert norag_stream[-1].choices[0].finish_reason


def test_models_search_and_documents(settings, embedder, kb_home):
    with running(settings, embedder) as srv:
        models = [m.id for m in srv.openai().models.list()]
        found = srv.http.post("/v1/search", json={"query": "key rotation", "k": 2}).json()
        keyword = srv.http.post("/v1/search", json={"query": "receipts", "k": 1, "mode": "keyword"}).json()
        documents = srv.http.get("/v1/documents").json()
        one = srv.http.get("/v1/models/deepkb-norag").json()
    assert models == ["deepkb", "deepkb-norag"] and one["id"] == "deepkb-norag"
    cli = CliRunner().invoke(main, ["--kb", str(kb_home), "search", "key rotation", "-k", "2", "--json"])
    assert found == json.loads(cli.output)  # the same hits as `deepkb search --json`
    assert found["hits"][0]["also_in"] == []  # a passage's twins (deepkb.retrieval.twins): none here
    assert found["hits"][0]["path"].endswith("keys.md")
    assert keyword["mode"] == "keyword" and keyword["hits"][0]["path"].endswith("travel.md")
    assert documents["object"] == "list"
    assert sorted(d["path"].rsplit("/", 1)[1] for d in documents["data"]) == ["backups.md", "keys.md", "travel.md"]
    assert all(d["chunks"] >= 1 for d in documents["data"])


def test_health_ready_and_metrics(settings, embedder, kb):
    with running(settings, embedder) as srv:
        assert srv.http.get("/health").json() == {"status": "ok"}
        ready = srv.http.get("/ready").json()
        assert ready["ready"] and ready["mode"] == "model" and ready["model"]
        srv.openai().chat.completions.create(model="deepkb", messages=[{"role": "user", "content": QUESTION}])
        srv.http.post("/v1/search", json={"query": "travel"})
        m = srv.metrics()
        counts = kb.store.counts()
        srv.state.host.loaded.clear()  # as while the model loads
        starting = srv.http.get("/ready")
        refused = srv.http.post(
            "/v1/chat/completions", json={"model": "deepkb", "messages": [{"role": "user", "content": "hi"}]}
        )
        srv.state.host.loaded.set()
    assert (
        m[("deepkb_http_requests_total", (("method", "POST"), ("route", "/v1/chat/completions"), ("status", "200")))]
        == 1
    )
    assert m[("deepkb_http_requests_total", (("method", "POST"), ("route", "/v1/search"), ("status", "200")))] == 1
    assert m[("deepkb_http_request_duration_seconds_count", (("route", "/v1/chat/completions"),))] == 1
    assert m[("deepkb_time_to_first_token_seconds_count", ())] == 1
    assert m[("deepkb_generation_tokens_per_second_count", ())] == 1
    assert m[("deepkb_queue_wait_seconds_count", ())] == 1 and m[("deepkb_queue_depth", ())] == 0
    assert m[("deepkb_documents", ())] == counts["documents"] and m[("deepkb_chunks", ())] == counts["chunks"]
    assert m[("deepkb_mode", (("mode", "model"),))] == 1 and m[("deepkb_mode", (("mode", "retrieval-only"),))] == 0
    assert m[("deepkb_ready", ())] == 1 and m[("deepkb_cache_misses_total", ())] == 1
    assert starting.status_code == 503 and starting.json()["ready"] is False
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "not_ready"


def test_answer_cache_hits_then_an_ingest_invalidates_it(settings, embedder, kb, docs):
    request = {"model": "deepkb", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 64}
    with running(settings, embedder) as srv:
        first = srv.http.post("/v1/chat/completions", json=request)
        second = srv.http.post("/v1/chat/completions", json=request)
        streamed = srv.http.post("/v1/chat/completions", json={**request, "stream": True})
        other = srv.http.post("/v1/chat/completions", json={**request, "temperature": 0.1})
        hits = srv.metric("deepkb_cache_hits_total")
        write(docs / "new.md", "# Archive\nArchived backups are kept for a year.\n")
        kb.ingest([docs])  # another writer: the KB version changes
        after = srv.http.post("/v1/chat/completions", json=request)
    assert first.headers["x-deepkb-cache"] == "miss" and second.headers["x-deepkb-cache"] == "hit"
    a, b = first.json(), second.json()
    assert a["choices"][0]["message"] == b["choices"][0]["message"] and a["sources"] == b["sources"]
    assert streamed.headers["x-deepkb-cache"] == "hit"
    chunks = _sse(streamed.text)
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        == (a["choices"][0]["message"]["content"])
    )
    assert len([c for c in chunks if "event" in c]) == len(a["sources"])
    assert other.headers["x-deepkb-cache"] == "miss"  # other parameters, another answer
    assert hits == 2 and after.headers["x-deepkb-cache"] == "miss"


def test_watching_syncs_changes_and_clears_the_cache(settings, embedder, docs, monkeypatch):
    import dataclasses

    from deepkb.storage.vectors import VectorIndex

    repairs: list[int] = []
    real_repair = VectorIndex.repair
    monkeypatch.setattr(VectorIndex, "repair", lambda self, *a, **kw: repairs.append(1) or real_repair(self, *a, **kw))
    request = {"model": "deepkb", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 64}
    with running(dataclasses.replace(settings, watch=(str(docs),)), embedder) as srv:
        srv.http.post("/v1/chat/completions", json=request)
        assert srv.metric("deepkb_cache_entries") == 1
        assert srv.state.watcher.wait_ready(30)
        # one knowledge base per process: the watcher writes through the storage the server reads
        assert srv.state.watcher.kb is srv.state.kb
        graph = srv.state.kb.storage.sync_index()
        repairs.clear()
        write(docs / "laptops.md", "# Laptops\nLaptops are encrypted with full-disk encryption.\n")
        srv.wait_metric("deepkb_watch_events_total", 1, action="added")
        assert srv.metric("deepkb_cache_entries") == 0
        assert srv.http.post("/v1/chat/completions", json=request).headers["x-deepkb-cache"] == "miss"
        found = srv.http.post("/v1/search", json={"query": "laptop encryption", "k": 1}).json()
        ready = srv.http.get("/ready").json()
        assert srv.state.kb.storage.sync_index() is graph  # the same HNSW graph, not a second one
    assert found["hits"][0]["path"].endswith("laptops.md")
    assert repairs == []  # the reader saw the watcher's commit without repairing its index from SQLite
    assert ready["watching"] == [str(docs)]


def test_api_key_on_every_route_but_health(settings, embedder, caplog):
    import dataclasses

    key = "s3cret-key-1234"
    caplog.set_level(logging.DEBUG)
    with running(dataclasses.replace(settings, api_key=key), embedder, headers={}) as srv:
        assert srv.http.get("/health").status_code == 200
        for method, path in (("GET", "/ready"), ("GET", "/metrics"), ("GET", "/v1/models"), ("POST", "/v1/search"),
                             ("GET", "/v1/documents"), ("POST", "/v1/chat/completions")):  # fmt: skip
            assert srv.http.request(method, path).status_code == 401, path
        wrong = srv.http.get("/v1/models", headers={"Authorization": "Bearer s3cret-key-123"})
        right = srv.http.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        with pytest.raises(openai.AuthenticationError):
            srv.openai(api_key="nope").models.list()
        answer = srv.openai(api_key=key).chat.completions.create(
            model="deepkb", messages=[{"role": "user", "content": QUESTION}], max_tokens=32
        )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert right.status_code == 200 and answer.choices[0].message.content
    assert key not in caplog.text


def test_binding_beyond_loopback_needs_a_key(kb_home, monkeypatch):
    with pytest.raises(UsageError, match="API key|--api-key"):
        ServerSettings(host="0.0.0.0", kb=kb_home).check()
    ServerSettings(host="0.0.0.0", api_key="k").check()
    ServerSettings(host="::1").check()
    monkeypatch.delenv("DEEPKB_API_KEY", raising=False)
    result = CliRunner().invoke(main, ["--kb", str(kb_home), "serve", "--host", "0.0.0.0", "--retrieval-only"])
    assert result.exit_code == 2 and "--api-key" in result.output and "Traceback" not in result.output


def test_missing_server_extra_is_one_line(kb_home, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the [server] extra were not installed
    result = CliRunner().invoke(main, ["--kb", str(kb_home), "serve"])
    assert result.exit_code == 2 and "deepkb[server]" in result.output and "Traceback" not in result.output


def test_each_malformed_request_gets_a_4xx_in_openai_shape(settings, embedder):
    import dataclasses

    chat = "/v1/chat/completions"
    user = [{"role": "user", "content": "hi"}]
    cases = [
        ("invalid JSON", "POST", chat, {"content": b'{"model": "deepkb", "messages": [', "headers": {"Content-Type": "application/json"}}, 400),
        ("not an object", "POST", chat, {"json": ["deepkb"]}, 400),
        ("missing messages", "POST", chat, {"json": {"model": "deepkb"}}, 400),
        ("missing model", "POST", chat, {"json": {"messages": user}}, 400),
        ("unknown model", "POST", chat, {"json": {"model": "gpt-4", "messages": user}}, 404),
        ("messages not a list", "POST", chat, {"json": {"model": "deepkb", "messages": "hi"}}, 400),
        ("empty messages", "POST", chat, {"json": {"model": "deepkb", "messages": []}}, 400),
        ("unknown role", "POST", chat, {"json": {"model": "deepkb", "messages": [{"role": "wizard", "content": "x"}]}}, 400),
        ("temperature not a number", "POST", chat, {"json": {"model": "deepkb", "messages": user, "temperature": "hot"}}, 400),
        ("negative max_tokens", "POST", chat, {"json": {"model": "deepkb", "messages": user, "max_tokens": -1}}, 400),
        ("n above 1", "POST", chat, {"json": {"model": "deepkb", "messages": user, "n": 2}}, 400),
        ("ends with the assistant", "POST", chat, {"json": {"model": "deepkb", "messages": [*user, {"role": "assistant", "content": "x"}]}}, 400),
        ("empty question", "POST", chat, {"json": {"model": "deepkb", "messages": [{"role": "user", "content": "  "}]}}, 400),
        ("too many messages", "POST", chat, {"json": {"model": "deepkb", "messages": user * 5}}, 400),
        ("oversized body", "POST", chat, {"json": {"model": "deepkb", "messages": [{"role": "user", "content": "x" * 5000}]}}, 413),
        ("oversized chunked body", "POST", chat, {"content": iter([b'{"model": "deepkb", "messages": [', b" " * 5000, b"]}"]), "headers": {"Content-Type": "application/json"}}, 413),
        ("empty search", "POST", "/v1/search", {"json": {"query": "   "}}, 400),
        ("search k of 0", "POST", "/v1/search", {"json": {"query": "keys", "k": 0}}, 400),
        ("unknown search mode", "POST", "/v1/search", {"json": {"query": "keys", "mode": "magic"}}, 400),
        ("unknown route", "GET", "/v1/nothing", {}, 404),
        ("wrong method", "GET", chat, {}, 405),
    ]  # fmt: skip
    small = dataclasses.replace(settings, max_messages=4, max_body_bytes=4000)
    with running(small, embedder) as srv:
        for name, method, path, kwargs, status in cases:
            response = srv.http.request(method, path, **kwargs)
            assert response.status_code == status, (name, response.text)
            error = response.json()["error"]
            assert error["message"] and error["type"], name
        with pytest.raises(openai.NotFoundError):
            srv.openai().chat.completions.create(model="gpt-4", messages=user)
        with pytest.raises(openai.BadRequestError):
            srv.openai().chat.completions.create(model="deepkb", messages=[])
        assert srv.http.get("/health").status_code == 200  # still up
        assert srv.openai().chat.completions.create(model="deepkb", messages=user, max_tokens=16).choices
        bad_requests = sum(v for (name, labels), v in srv.metrics().items()
                           if name == "deepkb_http_requests_total" and dict(labels)["status"].startswith("4"))  # fmt: skip
    assert bad_requests == len(cases) + 2


def test_sources_footer_for_text_only_clients(settings, embedder):
    import dataclasses

    with running(dataclasses.replace(settings, sources_footer=True), embedder) as srv:
        answer = srv.openai().chat.completions.create(model="deepkb", messages=[{"role": "user", "content": QUESTION}])
    content = answer.choices[0].message.content
    cited = answer.choices[0].model_extra["sources"]
    if cited:  # the footer lists exactly the cited passages
        head, _, listing = content.rpartition("\n\nSources:\n")
        assert head and [line.split("]")[0] + "]" for line in listing.splitlines()] == [f"[{c['n']}]" for c in cited]
    else:
        assert "Sources:" not in content


def test_blocklisted_answer_is_withheld_and_counted(settings, embedder, tmp_path):
    import dataclasses

    from tiny_gguf import ANSWER, THINKING

    blocklist = write(
        tmp_path / "blocklist.txt", f"# words the answer may not hold\n{ANSWER.split()[-2]}\n/{THINKING.split()[1]}/\n"
    )
    request = {"model": "deepkb", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 64}
    with running(dataclasses.replace(settings, blocklist=blocklist), embedder) as srv:
        whole = srv.http.post("/v1/chat/completions", json=request).json()
        streamed = srv.http.post("/v1/chat/completions", json={**request, "stream": True}).text
        withheld = srv.metric("deepkb_answers_withheld_total")
    assert whole["choices"][0]["message"]["content"] == WITHHELD
    assert whole["choices"][0]["finish_reason"] == "content_filter"
    chunks = [c for c in _sse(streamed) if c["choices"]]
    text = "".join(
        (c["choices"][0]["delta"].get("content") or "") + (c["choices"][0]["delta"].get("reasoning_content") or "")
        for c in chunks
    )
    assert WITHHELD in text and ANSWER.split()[-2] not in text and THINKING.split()[1] not in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert withheld == 2


def test_model_that_fails_to_load_degrades_to_the_fallback_then_to_passages(settings, embedder, tiny_model, tmp_path):
    import dataclasses

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_model.read_bytes()[:4096])
    ask = {"model": "deepkb", "messages": [{"role": "user", "content": QUESTION}]}
    with running(dataclasses.replace(settings, model=str(broken), fallback_model=str(tiny_model)), embedder) as srv:
        ready = srv.http.get("/ready").json()
        answer = srv.http.post("/v1/chat/completions", json=ask).json()
        mode = srv.metric("deepkb_mode", mode="fallback-model")
    assert ready["mode"] == "fallback-model" and "broken.gguf" in ready["reason"] and mode == 1
    assert answer["choices"][0]["message"]["content"] and answer["usage"]["completion_tokens"] > 0

    for degraded in (
        dataclasses.replace(settings, model=str(broken)),
        dataclasses.replace(settings, retrieval_only=True),
    ):
        with running(degraded, embedder) as srv:
            ready = srv.http.get("/ready").json()
            answer = srv.http.post("/v1/chat/completions", json=ask).json()
            errors = srv.metric("deepkb_model_errors_total")
        assert ready["ready"] and ready["mode"] == "retrieval-only" and ready["model"] is None
        content = answer["choices"][0]["message"]["content"]
        assert "[1]" in content and answer["choices"][0]["sources"][0]["n"] == 1  # the best passages, cited
        assert answer["sources"] and answer["usage"]["completion_tokens"] == 0
        assert errors == (0 if degraded.retrieval_only else 1)


def test_cors_is_off_unless_origins_are_listed(settings, embedder):
    import dataclasses

    preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip
    with running(settings, embedder) as srv:
        closed = srv.http.options("/v1/chat/completions", headers=preflight)
        plain = srv.http.get("/v1/models", headers={"Origin": "http://localhost:3000"})
    listed = dataclasses.replace(settings, cors_origins=("http://localhost:3000",), api_key="k")
    with running(listed, embedder) as srv:
        opened = srv.http.options("/v1/chat/completions", headers=preflight)  # browsers send no key on a preflight
        allowed = srv.http.get("/v1/models", headers={"Origin": "http://localhost:3000", "Authorization": "Bearer k"})
        other = srv.http.get("/v1/models", headers={"Origin": "http://evil.example", "Authorization": "Bearer k"})
    assert "access-control-allow-origin" not in closed.headers and "access-control-allow-origin" not in plain.headers
    assert opened.status_code == 200 and opened.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "access-control-allow-origin" not in other.headers
