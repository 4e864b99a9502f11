"""Benchmark: `deepkb ask` answer speed against raw llama-cpp-python on the same 1.5B-shaped model and prompt.

The model has the exact shape of DeepSeek-R1-Distill-Qwen-1.5B (qwen2, 28 layers, hidden 1536, FFN 8960, 12 heads,
2 KV heads, 151,936-token Qwen2 vocabulary, untied output matrix) quantized to Q4_K_M like the published GGUF, but
random weights: it writes nonsense at the real model's speed, and needs no download. It is built once under
bench/cache/ (about 4 minutes on 2 cores, 3.6 GB of scratch disk, 1.1 GB kept).

The prompt is the one deepkb builds for "What does the retention policy say about backups?" over a knowledge base of
data/. The raw engine is `Llama.create_chat_completion(stream=True)` on the same chat messages; deepkb is
`deepkb.answer.ask` with the LlamaCppLLM backend, as `deepkb ask` runs it. A second question on the same loaded model
shows how much prefill the fixed system prompt saves through llama.cpp's prefix cache.

    .venv/bin/python bench/llm_speed.py [--quick] [--repeats N] [--tokens 64]

Writes bench/out/llm_speed.json.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

CACHE = REPO / "bench" / "cache"
OUT = REPO / "bench" / "out" / "llm_speed.json"
QUESTION = "What does the retention policy say about backups?"
SECOND_QUESTION = "Who approves the rotation of API keys?"
TTFT_GOAL_S = 10.0
RATIO_GOAL = 0.95

# DeepSeek-R1-Distill-Qwen-1.5B's config.json.
SHAPE = {
    "n_layer": 28, "n_embd": 1536, "n_ff": 8960, "n_head": 12, "n_head_kv": 2, "n_vocab": 151936,
    "rope_theta": 10000.0, "n_ctx_train": 131072, "rms_eps": 1e-6,
}  # fmt: skip
MODEL = CACHE / "r1-distill-qwen-1.5b-shape-random-v1-Q4_K_M.gguf"


# the model ---------------------------------------------------------------------------------------------------
def build_model(target: Path = MODEL, log=print) -> Path:
    """The random-weight, 1.5B-shaped Q4_K_M GGUF, built once (F16 first, then llama.cpp's own quantizer)."""
    if target.exists():
        return target
    import llama_cpp

    target.parent.mkdir(parents=True, exist_ok=True)
    f16 = target.with_name(target.stem + ".f16.part")
    started = time.perf_counter()
    log(f"building {target.name}: random F16 weights…")
    _write_f16(f16)
    log(f"  F16 written ({f16.stat().st_size / 1e9:.2f} GB, {time.perf_counter() - started:.0f} s); quantizing…")

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = os.cpu_count() or 1
    part = target.with_name(target.name + ".part")
    code = llama_cpp.llama_model_quantize(str(f16).encode(), str(part).encode(), ctypes.byref(params))
    f16.unlink()
    if code != 0:
        part.unlink(missing_ok=True)
        raise SystemExit(f"llama_model_quantize failed with code {code}")
    part.replace(target)
    log(f"  {target.name}: {target.stat().st_size / 1e9:.2f} GB, built in {time.perf_counter() - started:.0f} s")
    return target


def _write_f16(path: Path) -> None:
    """The model in F16 with the real Qwen2 vocabulary and DeepSeek-R1's chat template."""
    import gguf

    from tiny_gguf import _vocab, r1_qwen2_writer

    s = SHAPE
    tokens, types, merges = _vocab()
    tokens += [f"[PAD{i}]" for i in range(s["n_vocab"] - len(tokens))]  # the model's matrix has padding rows
    types += [int(gguf.TokenType.UNUSED)] * (s["n_vocab"] - len(types))
    # One pool of N(0, 0.02) values; every weight matrix is a view at a random offset, so 3.5 GB of F16 tensors
    # cost 0.5 GB of memory. Speed depends on shapes and quantization types, not on the values.
    rng = np.random.default_rng(0)
    pool = np.empty(s["n_vocab"] * s["n_embd"] + (1 << 20), np.float16)
    step = 1 << 24
    for i in range(0, pool.size, step):
        pool[i : i + step] = rng.standard_normal(min(step, pool.size - i), np.float32) * 0.02

    def weight(*shape: int) -> np.ndarray:
        n = int(np.prod(shape))
        at = int(rng.integers(0, pool.size - n + 1))
        return pool[at : at + n].reshape(shape)

    n_embd, head_dim = s["n_embd"], s["n_embd"] // s["n_head"]
    kv = s["n_head_kv"] * head_dim
    w = r1_qwen2_writer(
        path,
        "DeepSeek-R1-Distill-Qwen-1.5B shape, random weights (deepkb bench)",
        tokens,
        types,
        merges,
        rope_freq_base=s["rope_theta"],
        context_length=s["n_ctx_train"],
        embedding_length=n_embd,
        feed_forward_length=s["n_ff"],
        block_count=s["n_layer"],
        head_count=s["n_head"],
        head_count_kv=s["n_head_kv"],
    )
    ones = np.ones(n_embd, np.float32)
    w.add_tensor("token_embd.weight", weight(s["n_vocab"], n_embd))
    w.add_tensor("output_norm.weight", ones)
    w.add_tensor("output.weight", weight(s["n_vocab"], n_embd))
    for b in range(s["n_layer"]):
        p = f"blk.{b}."
        w.add_tensor(p + "attn_norm.weight", ones)
        w.add_tensor(p + "attn_q.weight", weight(n_embd, n_embd))
        w.add_tensor(p + "attn_k.weight", weight(kv, n_embd))
        w.add_tensor(p + "attn_v.weight", weight(kv, n_embd))
        w.add_tensor(p + "attn_q.bias", weight(n_embd).astype(np.float32))
        w.add_tensor(p + "attn_k.bias", weight(kv).astype(np.float32))
        w.add_tensor(p + "attn_v.bias", weight(kv).astype(np.float32))
        w.add_tensor(p + "attn_output.weight", weight(n_embd, n_embd))
        w.add_tensor(p + "ffn_norm.weight", ones)
        w.add_tensor(p + "ffn_gate.weight", weight(s["n_ff"], n_embd))
        w.add_tensor(p + "ffn_up.weight", weight(s["n_ff"], n_embd))
        w.add_tensor(p + "ffn_down.weight", weight(n_embd, s["n_ff"]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# measuring ---------------------------------------------------------------------------------------------------
def _perf(llama) -> dict:
    """llama.cpp's own counters since the last reset: prompt tokens decoded and generated-token decodes."""
    import llama_cpp

    d = llama_cpp.llama_perf_context(llama._ctx.ctx)
    return {"prefill_tokens": d.n_p_eval, "prefill_ms": d.t_p_eval_ms, "decodes": d.n_eval, "decode_ms": d.t_eval_ms}


def _reset_perf(llama) -> None:
    import llama_cpp

    llama_cpp.llama_perf_context_reset(llama._ctx.ctx)


def _token_clock(llama) -> list[float]:
    """Timestamps of every token the engine samples (text may lag: random weights often emit partial UTF-8)."""
    stamps: list[float] = []
    sample = type(llama).sample

    def timed(*args, **kwargs):
        token = sample(llama, *args, **kwargs)
        stamps.append(time.perf_counter())
        return token

    llama.sample = timed
    return stamps


def _figures(llama, stamps: list[float], started: float, end: float) -> dict:
    """One run's figures; tokens/s counts the tokens after the first over the wall time between them."""
    del llama.sample
    perf = _perf(llama)
    first = stamps[0] if stamps else end
    return {
        "prompt_tokens_decoded": perf["prefill_tokens"],
        "prefill_ms": round(perf["prefill_ms"], 1),
        "prefill_tokens_per_s": round(perf["prefill_tokens"] / perf["prefill_ms"] * 1000, 1)
        if perf["prefill_ms"]
        else None,
        "ttft_ms": round((first - started) * 1000, 1),
        "sampled_tokens": len(stamps),  # llama-cpp-python samples one past max_tokens before it stops
        "tokens_per_s": round((len(stamps) - 1) / (stamps[-1] - first), 2) if len(stamps) > 1 else None,
        "engine_decode_tokens_per_s": round(perf["decodes"] / perf["decode_ms"] * 1000, 2)
        if perf["decode_ms"]
        else None,
    }


def run_raw(llama, messages: list[dict], max_tokens: int, temperature: float) -> dict:
    """Plain llama-cpp-python: a cold chat completion, streamed."""
    llama.reset()  # no prefix cache: the first question of a session
    _reset_perf(llama)
    stamps = _token_clock(llama)
    started = time.perf_counter()
    for _chunk in llama.create_chat_completion(
        messages=messages, max_tokens=max_tokens, temperature=temperature, stream=True
    ):
        pass
    return _figures(llama, stamps, started, time.perf_counter())


def run_deepkb(kb, llm, question: str, max_tokens: int, temperature: float, cold: bool) -> dict:
    """deepkb.answer.ask as `deepkb ask` calls it; only timestamps are added around its own calls."""
    from deepkb.answer import AskOptions, ask

    marks: dict[str, float] = {}

    def retrieve(q: str, n: int):
        hits = kb.search(q, k=n, mode="hybrid")
        marks["retrieved"] = time.perf_counter()
        return hits

    stream_chat = type(llm).stream_chat

    def timed_stream(*args, **kwargs):
        marks["prompt_built"] = time.perf_counter()
        yield from stream_chat(llm, *args, **kwargs)

    llm.stream_chat = timed_stream
    if cold:
        llm._llama.reset()
    _reset_perf(llm._llama)
    stamps = _token_clock(llm._llama)
    try:
        started = time.perf_counter()
        result = ask(question, retrieve, lambda: llm, AskOptions(answer_tokens=max_tokens, temperature=temperature))
        end = time.perf_counter()
    finally:
        del llm.stream_chat
    figures = _figures(llm._llama, stamps, started, end)
    if result.abstained or result.fallback:
        raise SystemExit(f"deepkb did not run the model for {question!r}: {result.notice or result.answer}")
    ms = lambda t: round((t - started) * 1000, 1)  # noqa: E731
    t = result.timings
    return {
        "retrieve_ms": ms(marks["retrieved"]),
        "prompt_build_ms": round(ms(marks["prompt_built"]) - ms(marks["retrieved"]), 1),
        "prompt_tokens": t.prompt_tokens,
        **figures,
        "reported_ttft_ms": t.ttft_ms,  # deepkb's own Timings count text, which random weights hold back
        "reported_tokens_per_s": t.tokens_per_s,
        "reported_completion_tokens": t.completion_tokens,
        "sources": len(result.citations) + len(result.also_retrieved),
    }


def _median_run(runs: list[dict]) -> dict:
    """The run with the median generation speed (whole, so its breakdown adds up)."""
    ordered = sorted(runs, key=lambda r: r["tokens_per_s"] or 0)
    return ordered[len(ordered) // 2]


def run(quick: bool = False, repeats: int | None = None, max_tokens: int = 64, temperature: float = 0.6) -> dict:
    """Build (once) the model, then time raw vs deepkb on the same prompt, interleaved, `repeats` times."""
    import llama_cpp

    from deepkb.kb import KnowledgeBase
    from deepkb.llm import LlamaCppLLM, open_llm, physical_cores
    from deepkb.prompt import build_prompt

    repeats = repeats or (1 if quick else 3)
    model = build_model()
    threads = physical_cores()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="deepkb-llm-bench-") as tmp:
        kb = KnowledgeBase.open(Path(tmp) / "kb")
        t0 = time.perf_counter()
        kb.ingest([REPO / "data"])
        ingest_s = time.perf_counter() - t0
        kb.search("warm up the embedding model", k=1)

        t0 = time.perf_counter()
        raw = llama_cpp.Llama(model_path=str(model), n_ctx=4096, n_threads=threads, verbose=False)
        raw_load_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        llm = open_llm(str(model), context_size=4096)  # what `deepkb ask --model PATH` opens
        deepkb_load_ms = (time.perf_counter() - t0) * 1000
        assert isinstance(llm, LlamaCppLLM)
        for engine in (raw, llm._llama):  # page the weights in, so no measured run pays for it
            list(engine.create_completion("Warm up", max_tokens=4, stream=True))

        hits = kb.search(QUESTION, k=6, mode="hybrid")
        messages = build_prompt(QUESTION, hits, llm, min(max_tokens, llm.context_size // 2)).messages
        raw_runs, deepkb_runs, second_runs = [], [], []
        for i in range(repeats):  # raw first, then deepkb first, and so on: a drift in load hits both sides
            print(f"run {i + 1}/{repeats}…", flush=True)
            if i % 2 == 0:
                raw_runs.append(run_raw(raw, messages, max_tokens, temperature))
            deepkb_runs.append(run_deepkb(kb, llm, QUESTION, max_tokens, temperature, cold=True))
            second_runs.append(run_deepkb(kb, llm, SECOND_QUESTION, max_tokens, temperature, cold=False))
            if i % 2 == 1:
                raw_runs.append(run_raw(raw, messages, max_tokens, temperature))
            for name, runs in (("raw", raw_runs), ("deepkb", deepkb_runs), ("second", second_runs)):
                print(f"  {name}: {runs[-1]}", flush=True)
        # The second question's prompt without the prefix cache, on the raw engine: what the cache saved.
        hits = kb.search(SECOND_QUESTION, k=6, mode="hybrid")
        prompt = build_prompt(SECOND_QUESTION, hits, llm, min(max_tokens, llm.context_size // 2))
        second_cold = run_raw(raw, prompt.messages, 1, temperature)
        kb.close()

    r, d, s = _median_run(raw_runs), _median_run(deepkb_runs), _median_run(second_runs)
    # Each deepkb run is compared with the raw run just before it, so a load change between pairs cancels out.
    speed_ratios = [b["tokens_per_s"] / a["tokens_per_s"] for a, b in zip(raw_runs, deepkb_runs, strict=True)]
    ttft_ratios = [b["ttft_ms"] / a["ttft_ms"] for a, b in zip(raw_runs, deepkb_runs, strict=True)]
    figures = {
        "benchmark": "llm_speed",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "quick": quick,
        "machine": f"{os.cpu_count()} CPUs, {threads} threads, llama-cpp-python {llama_cpp.__version__}",
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before and after: noise
        "model": {"file": model.name, "bytes": model.stat().st_size, **SHAPE, "n_ctx": 4096, "quant": "Q4_K_M"},
        "question": QUESTION,
        "second_question": SECOND_QUESTION,
        "max_tokens": max_tokens,
        "repeats": repeats,
        "kb_ingest_s": round(ingest_s, 2),
        "raw_load_ms": round(raw_load_ms, 1),
        "deepkb_load_ms": round(deepkb_load_ms, 1),
        "raw": r,
        "deepkb": d,
        "second": s,
        "second_cold_raw": second_cold,
        "prefix_saving_ms": round(second_cold["ttft_ms"] - s["ttft_ms"], 1),
        "ratio_tokens_per_s": round(statistics.median(speed_ratios), 3),
        "ratio_ttft": round(statistics.median(ttft_ratios), 3),
        "pair_ratios_tokens_per_s": [round(x, 3) for x in speed_ratios],
        "ttft_goal_met": d["ttft_ms"] / 1000 < TTFT_GOAL_S,
        "ratio_goal_met": statistics.median(speed_ratios) >= RATIO_GOAL,
        "runs": {"raw": raw_runs, "deepkb": deepkb_runs, "second": second_runs},
    }
    return figures


def markdown(f: dict) -> list[str]:
    """The BENCHMARKS.md section."""
    r, d, s, cold = f["raw"], f["deepkb"], f["second"], f["second_cold_raw"]
    m = f["model"]
    lines = [
        f"## Answer speed: `deepkb ask` vs raw llama-cpp-python ({m['n_layer']}-layer 1.5B shape, {m['quant']}, "
        f"n_ctx {m['n_ctx']})",
        "",
        "| | prompt tokens | prefill tok/s | time to first token | generation tok/s |",
        "| --- | --- | --- | --- | --- |",
        f"| raw `create_chat_completion(stream=True)` | {r['prompt_tokens_decoded']} | {r['prefill_tokens_per_s']} "
        f"| {r['ttft_ms'] / 1000:.2f} s | {r['tokens_per_s']} |",
        f"| deepkb ask, first question | {d['prompt_tokens']} | {d['prefill_tokens_per_s']} "
        f"| {d['ttft_ms'] / 1000:.2f} s | {d['tokens_per_s']} |",
        f"| deepkb ask, second question (same model loaded) | {s['prompt_tokens']} "
        f"({s['prompt_tokens'] - s['prompt_tokens_decoded']} cached) | {s['prefill_tokens_per_s']} "
        f"| {s['ttft_ms'] / 1000:.2f} s | {s['tokens_per_s']} |",
        "",
        f"Ratio deepkb / raw generation speed: **{f['ratio_tokens_per_s']}** (goal ≥ {RATIO_GOAL}; median over "
        f"{f['repeats']} back-to-back pair(s)); time to first "
        f"token {d['ttft_ms'] / 1000:.2f} s (goal < {TTFT_GOAL_S:.0f} s{'' if f['ttft_goal_met'] else ': missed'}), "
        f"of which retrieval {d['retrieve_ms']:.0f} ms, prompt packing {d['prompt_build_ms']:.0f} ms, "
        f"prefill of {d['prompt_tokens_decoded']} tokens {d['prefill_ms'] / 1000:.2f} s. "
        f"The second question reuses the cached system prompt ({s['prompt_tokens'] - s['prompt_tokens_decoded']} "
        f"tokens): {s['ttft_ms'] / 1000:.2f} s to first token"
        + f" against {cold['ttft_ms'] / 1000:.2f} s for the same prompt on a fresh cache (raw engine). "
        + f"Loading the model took {f['deepkb_load_ms'] / 1000:.2f} s (not counted above; `deepkb ask` pays it "
        "once per run).",
        "",
        "Reproduce: `.venv/bin/python bench/llm_speed.py`",
        "",
        f"The model has the exact shape of DeepSeek-R1-Distill-Qwen-1.5B at Q4_K_M ({m['bytes'] / 1e9:.2f} GB) but "
        "random weights, so it writes nonsense at the real model's speed; the answer's quality is not measured here. "
        f"Both sides generate {f['max_tokens']} tokens at temperature 0.6 from the same chat messages, the median of "
        f"{f['repeats']} interleaved run(s); only the ratios are meant to carry over to other machines. Load average "
        f"before and after: {f['load_average']} on {os.cpu_count()} CPUs: llama.cpp's threads wait on each other at "
        "every layer, so other work on the machine slows generation several-fold (the ratio holds up better).",
        "",
    ]
    return lines


def main() -> None:
    from figures import publish

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run instead of three")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved raw/deepkb runs (median reported)")
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per answer")
    parser.add_argument("--rebuild", action="store_true", help="build the cached model again")
    args = parser.parse_args()
    if args.rebuild and MODEL.exists():
        MODEL.unlink()
    figures = run(quick=args.quick, repeats=args.repeats, max_tokens=args.tokens)
    publish(figures, OUT, markdown, REPO)


if __name__ == "__main__":
    main()
