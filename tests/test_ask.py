"""The ask pipeline: abstention, the no-model fallback, the full answer with the tiny model, and the JSON contract."""

from __future__ import annotations

import json
import re
import socket

import pytest
from click.testing import CliRunner

from deepkb.answer.prompt import NOT_IN_DOCUMENTS, build_prompt, spread_documents
from deepkb.answer.stream import CPU_SOURCE_TOKENS, GET_A_MODEL, AskOptions, ask, cpu_source_tokens
from deepkb.cli import main
from deepkb.llm import LlamaCppLLM, OpenAICompatLLM
from deepkb.retrieval.search import Hit

from conftest import write
from tiny_gguf import ANSWER, THINKING


@pytest.fixture(scope="module")
def llm(tiny_model):
    return LlamaCppLLM(tiny_model, context_size=1024, gpu_layers=0)


@pytest.fixture(autouse=True)
def no_models(tmp_path, monkeypatch):
    """No test sees models a developer pulled into the checkout."""
    monkeypatch.setenv("DEEPKB_MODELS", str(tmp_path / "models"))


def _hits(dense: float = 0.6) -> list[Hit]:
    texts = ["Backups are kept for thirty days.", "Keys rotate yearly.", "Laptops are encrypted.", "Visitors sign in."]
    return [
        Hit(i, f"/docs/policy{i}.md", 2 if i == 1 else None, 3 * i, 3 * i + 2, None, 0.03 / i, t, dense / i)
        for i, t in enumerate(texts, 1)
    ]


def _never() -> LlamaCppLLM:
    raise AssertionError("the model must not be loaded")


class Pieces(list):
    def __call__(self, kind: str, text: str) -> None:
        self.append((kind, text))

    def text(self, kind: str) -> str:
        return "".join(t for k, t in self if k == kind)


def test_abstains_without_calling_the_model_when_nothing_is_relevant():
    pieces = Pieces()
    result = ask("Who won the 1998 world cup?", lambda q, k: _hits(dense=0.08), _never, on_piece=pieces)
    assert result.abstained and result.answer == NOT_IN_DOCUMENTS
    assert result.citations == [] and result.model is None
    assert result.timings.retrieve_ms is not None and result.timings.ttft_ms is None
    assert pieces.text("answer") == NOT_IN_DOCUMENTS


def test_abstains_on_an_empty_knowledge_base():
    result = ask("anything?", lambda q, k: [], _never)
    assert result.abstained and result.to_json()["citations"] == []


def test_threshold_is_a_setting():
    result = ask("backups?", lambda q, k: _hits(dense=0.08), None, AskOptions(min_relevance=0.05))
    assert not result.abstained and result.fallback


def test_no_model_shows_best_passages_with_citations():
    pieces = Pieces()
    result = ask("How long are backups kept?", lambda q, k: _hits(), None, on_piece=pieces)
    assert result.fallback and not result.abstained and result.model is None
    assert result.notice == GET_A_MODEL and "deepkb models pull" in result.notice
    assert result.answer.startswith("[1] Backups are kept for thirty days.")
    assert [(c.n, c.hit.path) for c in result.citations] == [
        (1, "/docs/policy1.md"),
        (2, "/docs/policy2.md"),
        (3, "/docs/policy3.md"),
    ]
    assert pieces.text("notice") == GET_A_MODEL


def test_model_that_fails_to_load_falls_back(tiny_model, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_model.read_bytes()[:4096])
    result = ask("How long are backups kept?", lambda q, k: _hits(), lambda: LlamaCppLLM(broken))
    assert result.fallback and result.model is None
    assert "could not load" in result.notice and str(broken) in result.notice
    assert result.citations[0].hit.path == "/docs/policy1.md"


def test_unreachable_llm_server_falls_back():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = ask("Backups?", lambda q, k: _hits(), lambda: OpenAICompatLLM(f"http://127.0.0.1:{port}"))
    assert result.fallback and result.model is None and result.citations
    assert result.notice.startswith("Cannot reach the LLM server")


def test_full_answer_with_the_tiny_model(llm):
    pieces = Pieces()
    hits = _hits()
    result = ask("How long are backups kept?", lambda q, k: hits[:k], lambda: llm, AskOptions(k=3), on_piece=pieces)
    assert result.answer == ANSWER and result.thinking == THINKING
    assert not result.abstained and not result.fallback and result.model == "tiny-r1"
    assert [(c.n, c.hit) for c in result.citations] == [(1, hits[0])]
    assert result.also_retrieved == hits[1:3]  # retrieved, never cited
    # streamed as it came: the reasoning (whose opening tag was in the prompt) apart from the answer
    assert pieces.text("reasoning").strip() == THINKING
    assert pieces.text("answer").strip() == ANSWER
    t = result.timings
    assert (
        t.prompt_tokens
        == build_prompt("How long are backups kept?", hits[:3], llm, 512, source_tokens=CPU_SOURCE_TOKENS).prompt_tokens
        > 50
    )
    assert (
        t.ttft_ms > 0
        and t.tokens_per_s > 0
        and t.completion_tokens == llm.count_tokens(f"{THINKING}</think>\n\n{ANSWER}")
    )
    data = result.to_json()
    assert "thinking" not in data and "</think>" not in data["answer"]


def test_skip_reasoning_and_show_thinking(llm):
    fast = ask("Backups?", lambda q, k: _hits(), lambda: llm, AskOptions(skip_reasoning=True))
    assert fast.answer == ANSWER and fast.thinking == ""
    shown = ask("Backups?", lambda q, k: _hits(), lambda: llm, AskOptions(show_thinking=True))
    assert shown.to_json()["thinking"] == THINKING


def test_cpu_prompt_keeps_to_the_source_budget_and_lists_the_rest(llm):
    text = " ".join(f"Backups of system {i} are kept for thirty days." for i in range(8))  # ~90 tokens
    hits = [Hit(i, f"/docs/b{i}.md", None, 1, 8, None, 0.1 / i, text, 0.6) for i in range(1, 7)]
    assert llm.runs_on_cpu
    compact = ask("How long are backups kept?", lambda q, k: hits[:k], lambda: llm, AskOptions(k=6, answer_tokens=128))
    roomy = ask(
        "How long are backups kept?",
        lambda q, k: hits[:k],
        lambda: llm,
        AskOptions(6, answer_tokens=128, source_tokens=900),
    )
    expected = build_prompt("How long are backups kept?", hits, llm, 128, source_tokens=CPU_SOURCE_TOKENS)
    assert 2 <= len(expected.sources) < 6  # the CPU budget, not the context, limits the sources
    assert compact.timings.prompt_tokens == expected.prompt_tokens < roomy.timings.prompt_tokens
    # the tiny model cites [1]; every other retrieved hit is listed, whether it made it into the prompt or not
    assert compact.also_retrieved == roomy.also_retrieved == hits[1:]
    assert compact.timings.prefill_ms is not None
    assert roomy.timings.cached_prompt_tokens > 0  # the same process kept the previous question's prompt start
    assert compact.timings.source_token_budget == CPU_SOURCE_TOKENS and roomy.timings.source_token_budget == 900


def test_a_slow_machine_gets_a_smaller_cpu_source_budget(llm, monkeypatch):
    text = " ".join(f"Backups of system {i} are kept for thirty days." for i in range(8))  # ~90 tokens
    hits = [Hit(i, f"/docs/b{i}.md", None, 1, 8, None, 0.1 / i, text, 0.6) for i in range(1, 7)]
    monkeypatch.setattr(llm, "prefill_tokens_per_s", 20.0, raising=False)  # as measured by earlier runs
    slow = ask("How long are backups kept?", lambda q, k: hits[:k], lambda: llm, AskOptions(k=6, answer_tokens=128))
    assert slow.timings.source_token_budget == cpu_source_tokens(20.0) < CPU_SOURCE_TOKENS
    expected = build_prompt("How long are backups kept?", hits, llm, 128, source_tokens=cpu_source_tokens(20.0))
    assert slow.timings.prompt_tokens == expected.prompt_tokens
    assert slow.to_json()["timings"]["source_token_budget"] == cpu_source_tokens(20.0)


def _check_contract(data: dict) -> None:
    assert {"answer", "citations", "model", "abstained", "timings"} <= set(data)
    assert isinstance(data["answer"], str) and isinstance(data["abstained"], bool)
    assert data["model"] is None or isinstance(data["model"], str)
    assert {"retrieve_ms", "prompt_tokens", "ttft_ms", "tokens_per_s"} <= set(data["timings"])
    for c in data["citations"]:
        assert {"n", "path", "page", "line_start", "line_end", "text"} <= set(c)
        assert isinstance(c["n"], int) and isinstance(c["path"], str) and isinstance(c["text"], str)


def test_cli_json_contract(tiny_model, tmp_path, embedder):
    docs = tmp_path / "docs"
    write(docs / "backup.md", "# Backups\n\nBackups are kept for thirty days in the offsite vault.\n")
    write(docs / "keys.md", "# Keys\n\nEncryption keys are rotated every year by the security team.\n")
    kb = ["--kb", str(tmp_path / "kb")]
    runner = CliRunner()
    assert runner.invoke(main, [*kb, "ingest", str(docs)]).exit_code == 0

    answered = runner.invoke(
        main, [*kb, "ask", "How long are backups kept?", "--json", "--model", str(tiny_model), "--ctx", "1024"]
    )
    assert answered.exit_code == 0, answered.output
    data = json.loads(answered.stdout)
    _check_contract(data)
    assert data["answer"] == ANSWER and data["model"] == "tiny-r1" and data["abstained"] is False
    assert data["citations"][0]["n"] == 1 and data["citations"][0]["path"].endswith("backup.md")
    assert data["citations"][0]["line_start"] >= 1 and "thirty days" in data["citations"][0]["text"]
    assert all(
        isinstance(data["timings"][k], (int, float))
        for k in ("retrieve_ms", "prompt_tokens", "ttft_ms", "tokens_per_s", "prefill_ms")
    )
    assert data["timings"]["cached_prompt_tokens"] == 0  # the first run prefills the system prompt, and saves it
    assert len(list((tmp_path / "kb" / "cache" / "prompts").glob("*.kv"))) == 1

    abstained = runner.invoke(main, [*kb, "ask", "Who won the match?", "--json", "--min-relevance", "0.99"])
    data = json.loads(abstained.stdout)
    _check_contract(data)
    assert data["abstained"] is True and data["model"] is None and data["answer"] == NOT_IN_DOCUMENTS

    no_model = runner.invoke(main, [*kb, "ask", "How long are backups kept?", "--json"])
    data = json.loads(no_model.stdout)
    _check_contract(data)
    assert data["model"] is None and data["fallback"] is True and data["citations"]

    streamed = runner.invoke(
        main, [*kb, "ask", "How long are backups kept?", "--model", str(tiny_model), "--ctx", "1024", "-v"]
    )
    assert streamed.exit_code == 0, streamed.output
    assert ANSWER in streamed.output and THINKING not in streamed.output  # reasoning hidden by default
    assert "Sources" in streamed.output and "backup.md L" in streamed.output
    assert "tokens/s" in streamed.output
    assert re.search(r"prompt \d+ tokens, \d+ cached", streamed.output)  # the next run restored it


def test_every_command_has_help_with_an_example():
    runner = CliRunner()
    commands = (
        ["ask"],
        ["chats"],
        ["chats", "show"],
        ["chats", "rm"],
        ["chats", "rename"],
        ["models"],
        ["models", "list"],
    )
    for args in (*commands, ["models", "pull"], ["models", "rm"]):
        result = runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0 and "Example" in result.output, args


def test_a_budgeted_prompt_spreads_over_documents(llm):
    text = " ".join(f"Backups of system {i} are kept for thirty days." for i in range(8))
    a1, a2, a3 = (Hit(i, "/docs/a.md", None, 10 * i, 10 * i + 8, None, 1.0 / i, text, 0.6) for i in (1, 2, 3))
    b1 = Hit(4, "/docs/b.md", None, 1, 8, None, 0.2, text, 0.5)
    assert spread_documents([a1, a2, a3, b1]) == [a1, b1, a2, a3]
    result = ask("Backups?", lambda q, k: [a1, a2, a3, b1], lambda: llm, AskOptions(source_tokens=250))
    # two sources fit: the best chunk of each document, not the two best chunks of one
    assert result.citations[0].hit == a1 and result.also_retrieved == [b1, a2, a3]
    assert result.timings.prompt_tokens == build_prompt("Backups?", [a1, b1], llm, 512).prompt_tokens
