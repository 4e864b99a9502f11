"""LLM backends: real llama.cpp on a tiny GGUF built by the tests, and the OpenAI-compatible client over SSE."""

from __future__ import annotations

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from deepkb.answer.prompt import build_prompt
from deepkb.answer.stream import (
    CPU_FIRST_CHARACTER_S,
    CPU_PROMPT_OVERHEAD_TOKENS,
    CPU_SOURCE_TOKENS,
    CPU_SOURCE_TOKENS_RANGE,
    FIRST_TOKEN_S,
    cpu_source_tokens,
)
from deepkb.config import Settings
from deepkb.errors import LLMError, ModelLoadError, UsageError
from deepkb.llm import OpenAICompatLLM, Usage, get_backend, open_configured_llm
from deepkb.llm.llama_cpp import LlamaCppLLM, physical_cores
from deepkb.retrieval.search import Hit

from tiny_gguf import ANSWER, THINKING


@pytest.fixture(scope="module")
def llm(tiny_model):
    return LlamaCppLLM(tiny_model, context_size=512, gpu_layers=0)


QUESTION = [
    {"role": "system", "content": "Answer from the sources."},
    {"role": "user", "content": "How long are backups kept?"},
]


def test_streams_tokens_through_the_gguf_chat_template(llm):
    usage = Usage()
    pieces = list(llm.stream_chat(QUESTION, max_tokens=64, temperature=0.6, usage=usage))
    assert len(pieces) > 5  # streamed token by token, not in one block
    assert "".join(pieces) == f"{THINKING}</think>\n\n{ANSWER}"
    assert usage.opens_thinking  # the R1 template from the GGUF metadata ends the prompt with "<think>\n"
    assert usage.prompt_tokens == llm.count_messages(QUESTION)
    assert usage.completion_tokens == llm.count_tokens("".join(pieces))
    assert not hasattr(llm, "last_prompt_tokens")  # per-answer figures live on the answer, not the shared model
    assert llm.name == "tiny-r1" and llm.context_size == 512


def test_respects_max_tokens(llm):
    reply = "".join(llm.stream_chat(QUESTION, max_tokens=4))
    assert llm.count_tokens(reply) == 4


def test_assistant_prefill_skips_the_reasoning(llm):
    messages = [*QUESTION, {"role": "assistant", "content": "<think>\n\n</think>\n\n"}]
    assert llm.render(messages).endswith("<｜Assistant｜><think>\n\n</think>\n\n")  # no doubled <think>
    usage = Usage()
    assert "".join(llm.stream_chat(messages, max_tokens=64, usage=usage)) == ANSWER
    assert not usage.opens_thinking


def test_prompt_is_packed_into_the_token_budget(llm):
    words = " ".join(f"backup{i} retention policy" for i in range(60))  # ~240 tokens per chunk
    hits = [Hit(i, f"/docs/p{i}.md", None, 1, 9, None, 1.0, words) for i in range(1, 30)]
    prompt = build_prompt("How long are backups kept?", hits, llm, answer_tokens=128)
    assert prompt.prompt_tokens == llm.count_messages(prompt.messages)  # counted with the model's own tokenizer
    assert prompt.prompt_tokens + 128 <= llm.context_size
    assert 1 <= len(prompt.sources) < len(hits)
    user = prompt.messages[1]["content"]
    assert all(f"[{n}] /docs/p{n}.md L1-9" in user for n in range(1, len(prompt.sources) + 1))
    reply = "".join(llm.stream_chat(prompt.messages, max_tokens=128))
    assert reply.endswith(ANSWER)  # the model ran with room left for the whole answer


def test_first_chunk_is_truncated_when_it_alone_is_too_big(llm):
    huge = Hit(1, "/docs/huge.md", 3, 1, 900, "Policy", 1.0, "retention " * 2000)
    prompt = build_prompt("How long?", [huge], llm, answer_tokens=128)
    assert prompt.sources == [huge]
    assert prompt.prompt_tokens + 128 <= llm.context_size
    assert "[1] /docs/huge.md p.3 L1-900 (Policy)" in prompt.messages[1]["content"]


def test_prompt_longer_than_the_context_is_refused(llm):
    too_long = [{"role": "user", "content": "word " * 2000}]
    with pytest.raises(LLMError, match="raise --ctx"):
        list(llm.stream_chat(too_long, max_tokens=8))


def test_corrupt_gguf_is_a_load_error(tiny_model, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_model.read_bytes()[:4096])
    with pytest.raises(ModelLoadError, match="could not load"):
        LlamaCppLLM(broken)


def test_registry_error_lists_valid_backends():
    assert get_backend("llama.cpp") is LlamaCppLLM
    with pytest.raises(UsageError, match=r"llama\.cpp, openai"):
        get_backend("gpt")


def _cpuinfo(rows: list[tuple[int, int, int]]) -> str:
    """/proc/cpuinfo blocks for (processor, physical id, core id)."""
    return "\n\n".join(f"processor\t: {p}\nphysical id\t: {s}\ncore id\t\t: {c}" for p, s, c in rows)


def test_threads_are_physical_cores():
    # 4 logical CPUs on 2 cores (hyperthread pairs 0/2 and 1/3): 2 threads, not 4
    smt = _cpuinfo([(0, 0, 0), (1, 0, 1), (2, 0, 0), (3, 0, 1)])
    assert physical_cores(smt, allowed={0, 1, 2, 3}) == 2
    assert physical_cores(smt, allowed={0, 2}) == 1  # pinned to one core's two hyperthreads
    two_sockets = _cpuinfo([(0, 0, 0), (1, 1, 0)])  # the same core id on two sockets: two cores
    assert physical_cores(two_sockets, allowed={0, 1}) == 2
    assert physical_cores("", allowed={0, 1, 2}) == 3  # no core ids (some VMs, ARM): the allowed CPUs
    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))


class _ChatServer:
    """A stand-in OpenAI-compatible server (outside the product) that streams a scripted SSE reply."""

    def __init__(self, events: list[dict]) -> None:
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                outer.path = self.path
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for event in events:
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _delta(**delta: str) -> dict:
    return {"choices": [{"index": 0, "delta": delta}]}


def test_openai_compatible_server_streams_and_marks_reasoning():
    events = [
        _delta(role="assistant"),
        _delta(reasoning_content="Look at "),
        _delta(reasoning_content="source 1."),
        _delta(content="Thirty "),
        _delta(content="days [1]."),
        {"choices": [], "usage": {"prompt_tokens": 42, "completion_tokens": 5}},
    ]
    server = _ChatServer(events)
    try:
        llm = OpenAICompatLLM(server.url + "/v1/", model="deepseek-r1")
        usage = Usage()
        pieces = list(llm.stream_chat(QUESTION, max_tokens=32, temperature=0.1, stop=["END"], usage=usage))
    finally:
        server.close()
    assert "".join(pieces) == "<think>Look at source 1.</think>Thirty days [1]."
    assert len(pieces) == 4
    assert server.path == "/v1/chat/completions"
    body = server.bodies[0]
    assert body["stream"] is True and body["messages"] == QUESTION and body["model"] == "deepseek-r1"
    assert body["max_tokens"] == 32 and body["stop"] == ["END"]
    assert usage.prompt_tokens == 42  # the server's own count, when it reports usage


def test_unreachable_server_is_one_line_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = OpenAICompatLLM(f"http://127.0.0.1:{port}")
    with pytest.raises(LLMError, match="Cannot reach the LLM server") as info:
        list(llm.stream_chat(QUESTION, max_tokens=8))
    assert "\n" not in str(info.value)


SYSTEM = "You answer questions using only the numbered sources you are given; cite every one like [1] or [2]."


def _chat(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def _logits(llm: LlamaCppLLM) -> np.ndarray:
    """The next-token logits after the latest evaluated token."""
    return np.ctypeslib.as_array(llm._llama._ctx.get_logits(), shape=(llm._llama.n_vocab(),)).copy()


def test_prompt_cache_carries_the_system_prefix_to_the_next_run(tiny_model, tmp_path):
    first = LlamaCppLLM(tiny_model, context_size=512, gpu_layers=0, cache_dir=tmp_path)
    used = Usage()
    reply = "".join(first.stream_chat(_chat("How long are backups kept?"), max_tokens=64, usage=used))
    assert used.cached_tokens == 0 and len(list(tmp_path.glob("*.kv"))) == 1
    assert used.completion_tokens == first.count_tokens(reply)

    second = LlamaCppLLM(tiny_model, context_size=512, gpu_layers=0, cache_dir=tmp_path)  # as a new process would
    used = Usage()
    assert "".join(second.stream_chat(_chat("Who approves key rotation?"), max_tokens=64, usage=used)) == reply
    assert first.count_tokens(SYSTEM) < used.cached_tokens < used.prompt_tokens
    assert used.prefill_ms is not None

    other_ctx = LlamaCppLLM(tiny_model, context_size=256, gpu_layers=0, cache_dir=tmp_path)
    used = Usage()
    list(other_ctx.stream_chat(_chat("Who approves key rotation?"), max_tokens=8, usage=used))
    assert used.cached_tokens == 0  # a state is only reused by the configuration that made it
    assert len(list(tmp_path.glob("*.kv"))) == 2


def test_restored_state_gives_the_logits_of_a_full_prefill(tiny_model, tmp_path):
    messages = _chat("Who approves key rotation?")
    list(LlamaCppLLM(tiny_model, context_size=512, gpu_layers=0, cache_dir=tmp_path).stream_chat(_chat("Hi"), 1))
    restored = LlamaCppLLM(tiny_model, context_size=512, gpu_layers=0, cache_dir=tmp_path)
    tokens = restored._tokenize(restored.render(messages))
    cached, reused = restored._reuse_prefix(tokens, messages)
    assert cached == reused > 16
    restored._llama.eval(tokens[cached:])
    full = LlamaCppLLM(tiny_model, context_size=512, gpu_layers=0)
    full._llama.eval(tokens)
    np.testing.assert_allclose(_logits(restored), _logits(full), atol=1e-5)
    first = LlamaCppLLM(tiny_model, context_size=512, gpu_layers=0, cache_dir=tmp_path / "new")
    ready, reused = first._reuse_prefix(tokens, messages)  # no file yet: the prefix is prefilled once and saved,
    assert ready == cached and reused == 0  # and the rest of the prompt continues from it
    first._llama.eval(tokens[ready:])
    np.testing.assert_allclose(_logits(first), _logits(full), atol=1e-5)
    without = LlamaCppLLM(tiny_model, context_size=512, gpu_layers=0)  # the same suffix with no prefix state
    without._llama.eval(tokens[cached:])
    assert not np.allclose(_logits(without), _logits(full), atol=1e-3)  # so the comparison above can fail


def test_damaged_prompt_cache_is_ignored_and_rewritten(tiny_model, tmp_path):
    list(LlamaCppLLM(tiny_model, context_size=512, gpu_layers=0, cache_dir=tmp_path).stream_chat(_chat("Hi"), 1))
    (saved,) = tmp_path.glob("*.kv")
    data = bytearray(saved.read_bytes())
    data[-100] ^= 0xFF  # one flipped bit in the KV data
    saved.write_bytes(data)
    damaged = LlamaCppLLM(tiny_model, context_size=512, gpu_layers=0, cache_dir=tmp_path)
    used = Usage()
    assert "".join(damaged.stream_chat(_chat("How long?"), max_tokens=64, usage=used)).endswith(ANSWER)
    assert used.cached_tokens == 0  # prefilled instead, and saved again
    again = LlamaCppLLM(tiny_model, context_size=512, gpu_layers=0, cache_dir=tmp_path)
    used = Usage()
    list(again.stream_chat(_chat("How long?"), max_tokens=1, usage=used))
    assert used.cached_tokens > 16


def test_next_question_reuses_the_prefix_in_the_same_process(llm):
    list(llm.stream_chat(_chat("How long are backups kept?"), max_tokens=4))
    used = Usage()
    list(llm.stream_chat(_chat("Who approves key rotation?"), max_tokens=4, usage=used))
    assert llm.count_tokens(SYSTEM) < used.cached_tokens < used.prompt_tokens
    used = Usage()
    list(llm.stream_chat(QUESTION, max_tokens=4, usage=used))  # another system prompt: only the template's start
    assert used.cached_tokens < llm.count_tokens(SYSTEM)


def test_source_budget_keeps_cpu_prompts_compact(llm):
    words = " ".join(f"backup{i} retention" for i in range(6))  # ~30 tokens a source
    hits = [Hit(i, f"/docs/p{i}.md", None, 1, 9, None, 1.0, words) for i in range(1, 8)]
    whole = build_prompt("How long?", hits, llm, answer_tokens=64)
    compact = build_prompt("How long?", hits, llm, answer_tokens=64, source_tokens=100)
    assert len(whole.sources) == len(hits)
    assert 2 <= len(compact.sources) < len(hits) and compact.sources == hits[: len(compact.sources)]
    block = llm.count_tokens(compact.messages[1]["content"].split("Question:")[0])
    assert block <= 100 + 8
    big = Hit(9, "/docs/big.md", None, 1, 90, None, 1.0, words * 5)  # over the budget alone: still goes in whole
    first = build_prompt("How long?", [big, *hits], llm, answer_tokens=64, source_tokens=100)
    assert first.sources == [big] and words * 5 in first.messages[1]["content"]


def test_prefill_speed_is_remembered_for_the_next_process(tiny_model, tmp_path):
    fresh = LlamaCppLLM(tiny_model, context_size=512, gpu_layers=0, cache_dir=tmp_path)
    assert fresh.prefill_tokens_per_s is None  # nothing measured yet: the fixed CPU budget applies
    list(fresh.stream_chat(_chat("Who approves key rotation? " * 8), 1))  # well over MIN_SPEED_TOKENS prefilled
    assert fresh.prefill_tokens_per_s > 0
    later = LlamaCppLLM(tiny_model, context_size=512, gpu_layers=0, cache_dir=tmp_path)
    assert later.prefill_tokens_per_s == fresh.prefill_tokens_per_s
    (tmp_path / "prefill-speed.json").write_text("{not json")  # a damaged file only loses the measurements
    assert LlamaCppLLM(tiny_model, context_size=512, gpu_layers=0, cache_dir=tmp_path).prefill_tokens_per_s is None


def test_cpu_source_budget_follows_the_measured_prefill_speed():
    assert cpu_source_tokens(None) == CPU_SOURCE_TOKENS
    slow, usual, fast = cpu_source_tokens(20.0), cpu_source_tokens(40.0), cpu_source_tokens(70.0)
    assert slow == CPU_SOURCE_TOKENS_RANGE[0] < usual < fast < CPU_SOURCE_TOKENS_RANGE[1]
    # the sources fill the time left before the first answer character is due, after the first token's decode
    assert usual == int(40.0 * (CPU_FIRST_CHARACTER_S - FIRST_TOKEN_S) - CPU_PROMPT_OVERHEAD_TOKENS)
    # what start-up, model loading and retrieval took is not left for the prefill
    assert cpu_source_tokens(70.0, waited_s=3.0) == int(
        70.0 * (CPU_FIRST_CHARACTER_S - FIRST_TOKEN_S - 3.0) - CPU_PROMPT_OVERHEAD_TOKENS
    )
    assert cpu_source_tokens(40.0, waited_s=60.0) == CPU_SOURCE_TOKENS_RANGE[0]  # always room for the best source
    assert cpu_source_tokens(10_000.0) == CPU_SOURCE_TOKENS_RANGE[1]


def test_llm_settings_come_from_config_toml_and_flags_win(tiny_model, tmp_path, monkeypatch):
    home = tmp_path / "kb"
    home.mkdir()
    (home / "config.toml").write_text(f'model = "{tiny_model}"\nllm_context = 768\nllm_threads = 1\ngpu_layers = 0\n')
    settings = Settings.load(home)
    llm = open_configured_llm(settings)
    assert isinstance(llm, LlamaCppLLM) and llm.context_size == 768 and llm.path == tiny_model.resolve()
    assert llm._llama.n_threads == 1 and llm.runs_on_cpu
    monkeypatch.setenv("DEEPKB_LLM_CONTEXT", "1024")
    assert Settings.load(home).llm_context == 1024  # the environment over the file
    assert Settings.load(home, llm_context=512).llm_context == 512  # a flag over both
    monkeypatch.setenv("DEEPKB_LLM_URL", "http://127.0.0.1:9/v1")
    remote = open_configured_llm(Settings.load(home))
    assert isinstance(remote, OpenAICompatLLM) and remote.url == "http://127.0.0.1:9/v1/chat/completions"
    assert remote.model is None  # a GGUF path is no server model name
