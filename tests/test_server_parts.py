"""The server's parts, each as a client or an operator meets it: how an OpenAI message history becomes a
conversation, citation shapes, response objects, /metrics, errors, and the model host that degrades instead of
dying (the whole server is tested against real uvicorn in test_server.py and test_server_queue.py)."""

from __future__ import annotations

import json
import logging

import pytest

pytest.importorskip("fastapi")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from deepkb.answer.citations import Citation  # noqa: E402
from deepkb.answer.stream import AskResult  # noqa: E402
from deepkb.config import Settings  # noqa: E402
from deepkb.retrieval.search import Hit  # noqa: E402
from deepkb.server.chat import BadRequest, Outcome, conversation  # noqa: E402
from deepkb.server.engine import ModelHost  # noqa: E402
from deepkb.server.guard import ApiError, error_response  # noqa: E402
from deepkb.server.metrics import Metrics  # noqa: E402
from deepkb.server.render import ChunkWriter, completion  # noqa: E402
from deepkb.server.schema import ChatMessage  # noqa: E402
from deepkb.server.settings import ServerSettings  # noqa: E402
from deepkb.server.sources import footer, numbered_sources, source_data, strip_footer  # noqa: E402


def _hit(chunk_id: int, path: str = "/docs/policy.pdf", page: int | None = 3) -> Hit:
    return Hit(chunk_id=chunk_id, path=path, page=page, line_start=12, line_end=18, heading="Backups",
               text="Backups are kept for 35 days.", score=0.9)  # fmt: skip


def test_a_message_history_becomes_the_question_and_earlier_turns():
    messages = [
        ChatMessage(role="system", content="You are helpful."),  # front-ends' system prompts: deepkb has its own
        ChatMessage(role="user", content="How long are backups kept?"),
        ChatMessage(role="assistant", content="35 days [1].\n\nSources:\n[1] policy.pdf p.3 L12-18"),
        ChatMessage(role="user", content=[{"type": "text", "text": "and who approves"}, {"type": "text", "text": "a change?"}]),
    ]  # fmt: skip
    question, turns = conversation(messages)
    assert question == "and who approves\na change?"
    assert turns == [("How long are backups kept?", "35 days [1].")]  # the Sources footer is not the answer
    with pytest.raises(BadRequest, match="last message must be the user"):
        conversation(messages[:3])
    with pytest.raises(BadRequest, match="empty"):
        conversation([ChatMessage(role="user", content="  ")])


def test_citations_in_the_shapes_clients_show():
    data = source_data(1, _hit(7))
    assert data["source"] == {"id": "/docs/policy.pdf#chunk-7", "name": "policy.pdf p.3 L12-18"}
    assert data["document"] == ["Backups are kept for 35 days."]
    assert data["metadata"][0]["page_number"] == 3 and data["metadata"][0]["line_start"] == 12
    assert data["metadata"][0]["page"] == 2  # 0-based, as Open WebUI reads it
    text = "Kept 35 days [1]." + footer(
        [{"n": 1, "path": "/docs/policy.pdf", "page": 3, "line_start": 12, "line_end": 18}]
    )
    assert "Sources:\n[1] " in text and "p.3" in text
    assert strip_footer(text) == "Kept 35 days [1]."
    result = AskResult("q", "Kept [2].", citations=[Citation(2, _hit(9))], also_retrieved=[_hit(8), _hit(10)])
    assert [(n, h.chunk_id) for n, h in numbered_sources(result)][:2] == [(1, 8), (2, 9)]  # [2] stays hit 9


def test_response_objects_are_openai_shaped():
    out = Outcome()
    out.content, out.prompt_tokens, out.completion_tokens = "Kept 35 days [1].", 100, 7
    body = completion("deepkb", out)
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == "Kept 35 days [1]."
    assert body["usage"] == {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107}
    writer = ChunkWriter("deepkb", include_usage=True)
    frame = writer.delta({"content": "Kept"})
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    chunk = json.loads(frame[len(b"data: ") :])
    assert chunk["object"] == "chat.completion.chunk" and chunk["choices"][0] == {
        "index": 0, "delta": {"content": "Kept"}, "finish_reason": None}  # fmt: skip
    error = error_response(
        ApiError(429, "the queue is full; retry later", "rate_limit_error", headers={"Retry-After": "5"})
    )
    assert error.status_code == 429 and error.headers["retry-after"] == "5"
    assert json.loads(error.body)["error"]["message"] == "the queue is full; retry later"


def test_metrics_render_in_prometheus_text_format():
    metrics = Metrics()
    metrics.requests.labels(route="/v1/search", method="POST", status="200").inc()
    metrics.rejections.labels(reason="full").inc()
    metrics.set_mode("retrieval-only")
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    assert families["deepkb_http_requests"].samples[0].labels["route"] == "/v1/search"
    modes = {s.labels["mode"]: s.value for s in families["deepkb_mode"].samples}
    assert modes == {"loading": 0, "model": 0, "fallback-model": 0, "retrieval-only": 1}


def test_a_model_that_cannot_load_degrades_to_retrieval_only(tmp_path, caplog):
    metrics = Metrics()
    llm_settings = Settings(home=tmp_path, model=str(tmp_path / "missing.gguf"))
    host = ModelHost(ServerSettings(), llm_settings, metrics)
    with caplog.at_level(logging.WARNING):
        host.load()
    assert host.loaded.is_set() and host.llm is None and host.mode == "retrieval-only"
    assert "missing.gguf" in host.reason
    assert metrics.model_errors._value.get() == 1
    asked = ModelHost(ServerSettings(retrieval_only=True), llm_settings, Metrics())
    asked.load()
    assert asked.mode == "retrieval-only" and "--retrieval-only" in asked.reason
