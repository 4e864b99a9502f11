"""`deepkb serve` under load: the bounded queue, 429s, keep-alives, disconnects, parallel upstreams, failures.

Slow generations come from a stand-in upstream LLM server (tests/server_harness.Upstream, outside deepkb) whose
streams the test holds and releases, so every case is decided by events, not by timing.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from deepkb.server.settings import ServerSettings

from conftest import write
from server_harness import Upstream, running

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

QUESTION = "How long are backups kept?"
REQUEST = {"model": "deepkb", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 64}


@pytest.fixture
def docs(kb, tmp_path):
    folder = tmp_path / "docs"
    write(folder / "backups.md", "# Backup retention\nBackups are kept for thirty days, copied off site weekly.\n")
    write(folder / "keys.md", "# Key rotation\nSigning keys rotate every year.\n")
    kb.ingest([folder])
    return folder


def _remote(kb_home, upstream: Upstream, **kw) -> ServerSettings:
    base = dict(port=0, kb=kb_home, llm_url=upstream.url, model="upstream-model", keepalive=0.2, cache_size=0,
                queue_size=1, queue_wait=30.0)  # fmt: skip
    return ServerSettings(**{**base, **kw})


def _wait(condition, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_full_queue_is_refused_with_429_and_retry_after(kb_home, docs, embedder):
    with Upstream() as up, running(_remote(kb_home, up, queue_size=1), embedder) as srv:
        up.gate.clear()  # the upstream holds every stream until released
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(srv.http.post, "/v1/chat/completions", json=REQUEST)
            _wait(lambda: up.active == 1, what="the first generation")
            second = pool.submit(srv.http.post, "/v1/chat/completions", json=REQUEST)
            _wait(lambda: srv.metric("deepkb_queue_depth") == 1, what="a queued request")
            refused = srv.http.post("/v1/chat/completions", json=REQUEST)
            with pytest.raises(openai.RateLimitError):
                srv.openai().chat.completions.create(**REQUEST, stream=True)
            up.gate.set()
            served = [first.result(timeout=30), second.result(timeout=30)]
        rejected = srv.metric("deepkb_queue_rejections_total", reason="full")
    assert [r.status_code for r in served] == [200, 200]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "rate_limit_error" and "busy" in refused.json()["error"]["message"]
    assert rejected == 2


def test_a_wait_past_the_limit_is_refused_and_streams_keep_alive_meanwhile(kb_home, docs, embedder):
    with Upstream() as up, running(_remote(kb_home, up, queue_wait=1.0), embedder) as srv:
        up.gate.clear()
        with ThreadPoolExecutor(1) as pool:
            holder = pool.submit(srv.http.post, "/v1/chat/completions", json=REQUEST)
            _wait(lambda: up.active == 1, what="the first generation")
            waited = srv.http.post("/v1/chat/completions", json=REQUEST)
            streamed = srv.http.post("/v1/chat/completions", json={**REQUEST, "stream": True})
            up.gate.set()
            assert holder.result(timeout=30).status_code == 200
        timeouts = srv.metric("deepkb_queue_rejections_total", reason="timeout")
    assert waited.status_code == 429 and "within 1 s" in waited.json()["error"]["message"]
    assert streamed.status_code == 200 and streamed.headers["x-accel-buffering"] == "no"
    lines = streamed.text.splitlines()
    assert ": keep-alive" in lines  # SSE comments while it waited
    errors = [json.loads(x[6:]) for x in lines if x.startswith('data: {"error"')]
    assert errors and errors[0]["error"]["code"] == "rate_limit_exceeded" and lines[-2] == "data: [DONE]"
    assert timeouts == 2


def test_eight_concurrent_clients_are_all_answered_or_refused(kb_home, docs, embedder, tiny_model):
    settings = ServerSettings(port=0, kb=kb_home, model=str(tiny_model), context_size=2048, max_tokens=48,
                              queue_size=3, queue_wait=60.0, cache_size=0)  # fmt: skip

    def client(i: int) -> str:
        body = {**REQUEST, "messages": [{"role": "user", "content": f"{QUESTION} ({i})"}], "stream": i % 2 == 0}
        try:
            response = httpx.post(srv.base + "/chat/completions", json=body, timeout=60)
        except httpx.TimeoutException:
            return "hung"
        if response.status_code == 429:
            return "refused"
        assert response.status_code == 200, response.text
        if body["stream"]:
            assert response.text.rstrip().endswith("data: [DONE]")
            if "rate_limit_exceeded" in response.text:  # the queue filled between the check and the wait
                return "refused"
        else:
            assert response.json()["choices"][0]["message"]["content"]
        return "answered"

    with running(settings, embedder) as srv:
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(client, range(8)))
        elapsed = time.monotonic() - started
        refused = srv.metric("deepkb_queue_rejections_total", reason="full") + srv.metric(
            "deepkb_queue_rejections_total", reason="timeout"
        )
        in_flight = srv.metric("deepkb_generations_in_flight")
    assert "hung" not in outcomes and outcomes.count("answered") >= 4  # one running + three queued at least
    assert outcomes.count("refused") == refused and in_flight == 0
    assert elapsed < 60


def test_client_disconnect_cancels_the_generation_and_frees_the_model(kb_home, docs, embedder):
    long_reply = " ".join(f"word{i}" for i in range(400))
    with (
        Upstream(reply=long_reply, pieces=400, delay=0.05) as up,
        running(_remote(kb_home, up, queue_size=0), embedder) as srv,
    ):
        with httpx.Client(timeout=30) as client:
            with client.stream("POST", srv.base + "/chat/completions", json={**REQUEST, "stream": True}) as response:
                for line in response.iter_lines():
                    if '"content":"word' in line:
                        break  # a few words in, the client goes away
        srv.wait_metric("deepkb_generations_in_flight", 0, timeout=10)
        cancelled = srv.metric("deepkb_generations_cancelled_total")
        up.delay = 0.0
        started = time.monotonic()
        next_answer = srv.http.post("/v1/chat/completions", json=REQUEST)  # queue size 0: refused if still busy
        waited = time.monotonic() - started
        _wait(lambda: up.closed_early == 1, what="the upstream to see the cancelled stream closed")
    assert cancelled == 1
    assert next_answer.status_code == 200 and waited < 10


def test_search_is_not_queued_behind_generation(kb_home, docs, embedder):
    with Upstream() as up, running(_remote(kb_home, up, queue_size=0), embedder) as srv:
        up.gate.clear()
        with ThreadPoolExecutor(1) as pool:
            holder = pool.submit(srv.http.post, "/v1/chat/completions", json=REQUEST)
            _wait(lambda: up.active == 1, what="the generation")
            assert srv.http.post("/v1/chat/completions", json=REQUEST).status_code == 429  # the model is busy
            started = time.monotonic()
            found = srv.http.post("/v1/search", json={"query": "key rotation"})
            searched = time.monotonic() - started
            up.gate.set()
            holder.result(timeout=30)
    assert found.status_code == 200 and found.json()["hits"] and searched < 5


def test_an_upstream_serves_several_answers_at_once(kb_home, docs, embedder):
    with Upstream() as up, running(_remote(kb_home, up, parallel=3, queue_size=1), embedder) as srv:
        up.gate.clear()
        with ThreadPoolExecutor(4) as pool:
            running_now = [pool.submit(srv.http.post, "/v1/chat/completions", json=REQUEST) for _ in range(3)]
            _wait(lambda: up.active == 3, what="three generations in flight")
            queued = pool.submit(srv.http.post, "/v1/chat/completions", json=REQUEST)
            _wait(lambda: srv.metric("deepkb_queue_depth") == 1, what="the fourth to queue")
            refused = srv.http.post("/v1/chat/completions", json=REQUEST)
            up.gate.set()
            statuses = [f.result(timeout=30).status_code for f in [*running_now, queued]]
    assert statuses == [200] * 4 and refused.status_code == 429 and up.max_active == 3


def test_parallel_needs_an_upstream_which_the_knowledge_base_config_may_name(kb_home, embedder):
    from deepkb.errors import UsageError
    from deepkb.server.app import create_app

    with pytest.raises(UsageError, match="--llm-url"):
        create_app(ServerSettings(kb=kb_home, parallel=4), embedder=embedder)
    (kb_home / "config.toml").write_text('llm_url = "http://127.0.0.1:9/v1"\n')  # setting, not flag
    app = create_app(ServerSettings(kb=kb_home, parallel=4), embedder=embedder)
    assert app.state.deepkb.kb.settings.llm_url == "http://127.0.0.1:9/v1"
    app.state.deepkb.kb.close()


def test_an_upstream_failing_mid_answer_degrades_to_passages_then_the_fallback_model(
    kb_home, docs, embedder, tiny_model
):
    with Upstream(pieces=8, break_after=3) as up, running(_remote(kb_home, up), embedder) as srv:
        answer = srv.http.post("/v1/chat/completions", json=REQUEST).json()
        errors = srv.metric("deepkb_model_errors_total")
        mode = srv.http.get("/ready").json()["mode"]
    content = answer["choices"][0]["message"]["content"]
    assert content.count("The model failed") == 1 and "[1]" in content.split("The model failed")[1]
    assert answer["choices"][0]["sources"] and errors == 1 and mode == "model"  # the upstream is tried again next time

    with (
        Upstream(pieces=8, break_after=3) as up,
        running(_remote(kb_home, up, fallback_model=str(tiny_model)), embedder) as srv,
    ):
        answer = srv.http.post("/v1/chat/completions", json={**REQUEST, "stream": True})
        ready = srv.http.get("/ready").json()
        again = srv.http.post("/v1/chat/completions", json=REQUEST).json()
    assert answer.status_code == 200 and "fallback model" in answer.text and answer.text.rstrip().endswith("[DONE]")
    assert ready["mode"] == "fallback-model" and ready["model"] == tiny_model.stem
    assert again["choices"][0]["message"]["content"] and again["usage"]["completion_tokens"] > 0 and up.requests == 1


def test_queue_grants_slots_in_order_and_a_waiter_that_leaves_holds_nothing():
    import asyncio

    from deepkb.server.queue import GenerationQueue, QueueFull

    async def scenario() -> None:
        queue = GenerationQueue(slots=1, size=2, wait=5.0)
        first = await queue.acquire()
        leaving = asyncio.create_task(queue.acquire())
        staying = asyncio.create_task(queue.acquire())
        await asyncio.sleep(0.01)
        assert queue.busy == 1 and queue.waiting == 2
        with pytest.raises(QueueFull) as refused:
            queue.check()
        assert refused.value.reason == "full" and refused.value.retry_after >= 1
        leaving.cancel()  # its client disconnected while waiting
        await asyncio.sleep(0.01)
        assert queue.waiting == 1
        first.release()
        second = await asyncio.wait_for(staying, 1)
        assert queue.busy == 1 and queue.waiting == 0
        second.release()
        second.release()  # idempotent
        await asyncio.sleep(0.01)
        assert queue.busy == 0

        short = GenerationQueue(slots=1, size=1, wait=0.05)
        held = await short.acquire()
        with pytest.raises(QueueFull) as timed_out:
            await short.acquire()
        assert timed_out.value.reason == "timeout" and short.waiting == 0
        held.release()
        await asyncio.sleep(0.01)
        assert short.busy == 0

    asyncio.run(scenario())


def test_answer_cache_is_bounded_least_recently_used_first():
    from deepkb.server.cache import AnswerCache, CachedAnswer, cache_key

    cache = AnswerCache(2)
    keys = [cache_key([(f"q{i}", "")], "deepkb:m", "7", {"max_tokens": 64}) for i in range(3)]
    assert len(set(keys)) == 3 and cache_key([("q0", "")], "deepkb:m", "8", {"max_tokens": 64}) != keys[0]
    for key in keys[:2]:
        cache.put(key, CachedAnswer(key, ""))
    assert cache.get(keys[0]) is not None  # now the most recently used
    cache.put(keys[2], CachedAnswer(keys[2], ""))
    assert len(cache) == 2 and cache.get(keys[1]) is None and cache.get(keys[0]) is not None
    cache.clear()
    assert len(cache) == 0 and AnswerCache(0).get(keys[0]) is None
