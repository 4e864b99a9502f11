"""Benchmark: `deepkb ask` answer speed against raw llama-cpp-python on the same 1.5B-shaped model and prompt.

The model has the exact shape of DeepSeek-R1-Distill-Qwen-1.5B (qwen2, 28 layers, hidden 1536, FFN 8960, 12 heads,
2 KV heads, 151,936-token Qwen2 vocabulary, untied output matrix) quantized to Q4_K_M like the published GGUF, but
random weights: it writes nonsense at the real model's speed, and needs no download. It is built once under
bench/cache/ (about 4 minutes on 2 cores, 3.6 GB of scratch disk, 1.1 GB kept).

The prompt is the one deepkb builds for "What does the retention policy say about backups?" over a knowledge base of
data/. The raw engine is `Llama.create_chat_completion(stream=True)` on the same chat messages; deepkb is
`deepkb.answer.stream.ask` with the LlamaCppLLM backend, as `deepkb ask` runs it: on a CPU the sources are held to
deepkb.answer.stream.cpu_source_tokens() of the prefill speed the earlier runs measured (CPU_SOURCE_TOKENS before the
first; the raw engine gets the prompt of the same budget), and the KV state of the fixed prompt start comes from the on-disk prompt cache
(deepkb/llm/prompt_cache.py). Runs: the first `deepkb ask` ever, every later one, a second question in the same process,
and one run with every retrieved chunk that fits the context, to show what the source budget saves.

    .venv/bin/python bench/llm_speed.py [--quick] [--repeats N] [--tokens 64]

Writes bench/out/llm_speed.json.
"""

from __future__ import annotations

import argparse
import ctypes
import json
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


SENT: dict[str, list[dict]] = {}


def run_deepkb(kb, llm, question: str, max_tokens: int, temperature: float, state: str, **options) -> dict:
    """deepkb.answer.stream.ask as `deepkb ask` calls it; only timestamps are added around its own calls.

    state: "first-run" (empty context, no prompt cache on disk: the very first `deepkb ask`), "next-run" (empty
    context, the prompt cache on disk: every later `deepkb ask`), "same-process" (the previous question's KV
    state still loaded: chat and serve).
    """
    from deepkb.answer.stream import AskOptions, ask

    marks: dict[str, float] = {}

    def retrieve(q: str, n: int):
        hits = kb.search(q, k=n, mode="hybrid")
        marks["retrieved"] = time.perf_counter()
        return hits

    stream_chat = type(llm).stream_chat

    def timed_stream(messages, *args, **kwargs):
        marks["prompt_built"] = time.perf_counter()
        SENT["messages"] = messages  # the raw engine is timed on the very prompt deepkb sent last
        yield from stream_chat(llm, messages, *args, **kwargs)

    llm.stream_chat = timed_stream
    if state != "same-process":
        llm._llama.reset()
    if state == "first-run":
        for saved in llm._prompt_cache.folder.glob("*.kv"):
            saved.unlink()
    _reset_perf(llm._llama)
    stamps = _token_clock(llm._llama)
    try:
        started = time.perf_counter()
        opts = AskOptions(answer_tokens=max_tokens, temperature=temperature, **options)
        result = ask(question, retrieve, lambda: llm, opts, embed=kb.embedder.embed)
        end = time.perf_counter()
    finally:
        del llm.stream_chat
    figures = _figures(llm._llama, stamps, started, end)
    if result.abstained or result.fallback:
        raise SystemExit(f"deepkb did not run the model for {question!r}: {result.notice or result.answer}")
    ms = lambda t: round((t - started) * 1000, 1)  # noqa: E731
    t = result.timings
    return {
        "state": state,
        "retrieve_ms": ms(marks["retrieved"]),
        "prompt_build_ms": round(ms(marks["prompt_built"]) - ms(marks["retrieved"]), 1),
        "prompt_tokens": t.prompt_tokens,
        "cached_prompt_tokens": t.cached_prompt_tokens,
        "deepkb_prefill_ms": t.prefill_ms,  # prompt-cache restore (or save) plus the prefill of the rest
        **figures,
        "first_token_ms": round(figures["ttft_ms"] - ms(marks["prompt_built"]) - (t.prefill_ms or 0), 1),
        "reported_ttft_ms": t.ttft_ms,  # deepkb's own Timings count text, which random weights hold back
        "reported_tokens_per_s": t.tokens_per_s,
        "reported_completion_tokens": t.completion_tokens,
        "retrieved": len(result.citations) + len(result.also_retrieved),
        "source_token_budget": t.source_token_budget,
    }


def run_cli(kb_dir: Path, model: Path, question: str, tree: Path = REPO) -> dict:
    """A whole `deepkb ask` process, as a user runs it: start-up, imports, both models' loading, retrieval, prefill.

    --no-think makes the first token part of the answer, which is printed as it comes (the reasoning is not).
    """
    import subprocess

    cmd = [sys.executable, "-m", "deepkb", "--kb", str(kb_dir), "ask", question, "--model", str(model),
           "--no-think", "--max-tokens", "16", "-v"]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tree)
    process.stdout.read(1)
    first = time.perf_counter()
    _, err = process.communicate()
    end = time.perf_counter()
    if process.returncode != 0:
        raise SystemExit(f"deepkb ask failed: {err.decode()[-500:]}")
    return {
        "first_output_s": round(first - started, 2),
        "total_s": round(end - started, 2),
        "timings_line": err.decode().strip().splitlines()[-1],
    }


def run_cli_series(runs: int, before: Path | None = None) -> dict:
    """Whole `deepkb ask` processes one after another on a knowledge base of data/, as a user runs them: the first
    sizes its sources at CPU_SOURCE_TOKENS, the later ones by the prefill speed the earlier ones measured and the time
    already spent. With `before` (another checkout, e.g. main before a change), its runs alternate with this tree's,
    on the same knowledge base, model and prefill-speed file."""
    from deepkb.answer.stream import CPU_FIRST_CHARACTER_S

    model = build_model()
    trees = {"this tree": REPO, **({"before": before} if before else {})}
    out: dict = {"benchmark": "llm_cli", "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "question": QUESTION,
                 "first_character_target_s": CPU_FIRST_CHARACTER_S, "load_average": [round(os.getloadavg()[0], 2)],
                 "runs": {name: [] for name in trees}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="deepkb-cli-bench-") as tmp:
        from deepkb.kb import KnowledgeBase

        with KnowledgeBase.open(Path(tmp) / "kb") as kb:
            kb.ingest([REPO / "data"])
        for i in range(runs):
            for name, tree in trees.items() if i % 2 == 0 else reversed(trees.items()):
                result = run_cli(Path(tmp) / "kb", model, QUESTION, tree)
                out["runs"][name].append(result)
                print(f"{name} run {i + 1}: {result}", flush=True)
    out["load_average"].append(round(os.getloadavg()[0], 2))
    out["median_first_output_s"] = {
        name: statistics.median(r["first_output_s"] for r in rs[1:] or rs) for name, rs in out["runs"].items()
    }  # the first run of all has no measured prefill speed yet
    return out


def _median_run(runs: list[dict]) -> dict:
    """The run with the median time to first token (whole, so its breakdown adds up)."""
    ordered = sorted(runs, key=lambda r: r["ttft_ms"])
    return ordered[len(ordered) // 2]


def run(quick: bool = False, repeats: int | None = None, max_tokens: int = 64, temperature: float = 0.6) -> dict:
    """Build (once) the model, then time raw vs deepkb on the same prompt, interleaved, `repeats` times."""
    import llama_cpp

    from deepkb.answer.prompt import build_prompt
    from deepkb.answer.stream import CPU_FIRST_CHARACTER_S, cpu_source_tokens
    from deepkb.kb import KnowledgeBase
    from deepkb.llm import LlamaCppLLM, open_llm, physical_cores

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
        # what `deepkb ask --model PATH` opens, with its prompt cache in the knowledge base's folder
        llm = open_llm(str(model), context_size=4096, cache_dir=Path(tmp) / "kb" / "cache" / "prompts")
        deepkb_load_ms = (time.perf_counter() - t0) * 1000
        assert isinstance(llm, LlamaCppLLM) and llm.runs_on_cpu
        for engine in (raw, llm._llama):  # page the weights in, so no measured run pays for it
            list(engine.create_completion("Warm up", max_tokens=4, stream=True))

        answer_room = min(max_tokens, llm.context_size // 2)
        hits = kb.search(QUESTION, k=6, mode="hybrid")

        def messages() -> list[dict]:
            """The prompt deepkb sent last (its excerpts under the budget of that moment), else whole chunks under
            the budget the prefill speed measured so far gives."""
            if "messages" in SENT:
                return SENT["messages"]
            budget = cpu_source_tokens(llm.prefill_tokens_per_s)
            return build_prompt(QUESTION, hits, llm, answer_room, source_tokens=budget).messages

        run_deepkb(kb, llm, QUESTION, max_tokens, temperature, "next-run")  # the prompt the raw engine gets

        runs: dict[str, list[dict]] = {"raw": [], "first-run": [], "next-run": [], "same-process": []}
        for i in range(repeats):  # raw first, then deepkb first, and so on: a drift in load hits both sides
            print(f"run {i + 1}/{repeats}…", flush=True)
            if i % 2 == 0:
                runs["raw"].append(run_raw(raw, messages(), max_tokens, temperature))
            for state in ("first-run", "next-run"):
                runs[state].append(run_deepkb(kb, llm, QUESTION, max_tokens, temperature, state))
            runs["same-process"].append(run_deepkb(kb, llm, SECOND_QUESTION, max_tokens, temperature, "same-process"))
            if i % 2 == 1:
                runs["raw"].append(run_raw(raw, messages(), max_tokens, temperature))
            for name, done in runs.items():
                print(f"  {name}: {done[-1]}", flush=True)
        # Every retrieved chunk that fits the context (what deepkb sent before the CPU source budget): the cost of a
        # long prompt. One run, prompt cache on disk, so only the sources' tokens differ.
        print("uncapped sources…", flush=True)
        uncapped = run_deepkb(kb, llm, QUESTION, max_tokens, temperature, "next-run", source_tokens=1_000_000)
        print(f"  uncapped: {uncapped}", flush=True)
        llm._llama.reset()
        cli = [run_cli(Path(tmp) / "kb", model, QUESTION) for _ in range(1 if quick else 2)]
        print(f"  cli: {cli}", flush=True)
        llm_speed = llm.prefill_tokens_per_s  # the median of the runs above, as the next `deepkb ask` would read it
        kb.close()

    r = _median_run(runs["raw"])
    first, nxt, same = (_median_run(runs[s]) for s in ("first-run", "next-run", "same-process"))
    # Each deepkb run is compared with the raw run of its own round, so a load change between rounds cancels out.
    speed_ratios = [b["tokens_per_s"] / a["tokens_per_s"] for a, b in zip(runs["raw"], runs["next-run"], strict=True)]
    ttft_ratios = [b["ttft_ms"] / a["ttft_ms"] for a, b in zip(runs["raw"], runs["next-run"], strict=True)]
    figures = {
        "benchmark": "llm_speed",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "quick": quick,
        "machine": f"{os.cpu_count()} CPUs, {threads} threads, llama-cpp-python {llama_cpp.__version__}",
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before and after: noise
        "model": {"file": model.name, "bytes": model.stat().st_size, **SHAPE, "n_ctx": 4096, "quant": "Q4_K_M"},
        "question": QUESTION,
        "second_question": SECOND_QUESTION,
        "cpu_source_tokens": nxt["source_token_budget"],
        "prefill_tokens_per_s_measured": round(llm_speed, 1) if llm_speed else None,
        "first_character_target_s": CPU_FIRST_CHARACTER_S,
        "max_tokens": max_tokens,
        "repeats": repeats,
        "kb_ingest_s": round(ingest_s, 2),
        "raw_load_ms": round(raw_load_ms, 1),
        "deepkb_load_ms": round(deepkb_load_ms, 1),
        "raw": r,
        "first_run": first,
        "next_run": nxt,
        "same_process": same,
        "uncapped": uncapped,
        "cli": min(cli, key=lambda c: c["first_output_s"]),
        "ratio_tokens_per_s": round(statistics.median(speed_ratios), 3),
        "ratio_ttft": round(statistics.median(ttft_ratios), 3),
        "pair_ratios_tokens_per_s": [round(x, 3) for x in speed_ratios],
        "ttft_goal_met": nxt["ttft_ms"] / 1000 < TTFT_GOAL_S,
        "ratio_goal_met": statistics.median(speed_ratios) >= RATIO_GOAL,
        "runs": runs,
    }
    return figures


def markdown(f: dict) -> list[str]:
    """The BENCHMARKS.md section."""
    r, m = f["raw"], f["model"]

    def row(name: str, d: dict) -> str:
        cached = d.get("cached_prompt_tokens") or 0
        prefill = d.get("deepkb_prefill_ms", d["prefill_ms"])
        return (
            f"| {name} | {d.get('prompt_tokens', d['prompt_tokens_decoded'])} | {cached} | {prefill / 1000:.2f} s "
            f"| **{d['ttft_ms'] / 1000:.2f} s** | {d['tokens_per_s']} |"
        )

    n = f["next_run"]
    lines = [
        f"## Answer speed: `deepkb ask` vs raw llama-cpp-python ({m['n_layer']}-layer 1.5B shape, {m['quant']}, "
        f"n_ctx {m['n_ctx']}, CPU)",
        "",
        "| | prompt tokens | reused from KV cache | prefill | time to first token | generation tok/s |",
        "| --- | --- | --- | --- | --- | --- |",
        row("raw `create_chat_completion(stream=True)`, same messages, fresh context", r),
        row("deepkb ask, first run ever (prefills and saves the prompt cache)", f["first_run"]),
        row("deepkb ask, every later run (prompt cache restored from disk)", n),
        row("deepkb ask, next question in the same process (chat, serve)", f["same_process"]),
        row("deepkb ask without the CPU source budget (all that fit, cache restored)", f["uncapped"]),
        "",
        f"Ratio deepkb / raw generation speed: **{f['ratio_tokens_per_s']}** (goal ≥ {RATIO_GOAL}; median over "
        f"{f['repeats']} interleaved round(s)). Time to first token of a typical `deepkb ask`: "
        f"**{n['ttft_ms'] / 1000:.2f} s** (goal < {TTFT_GOAL_S:.0f} s{'' if f['ttft_goal_met'] else ': missed'}); "
        f"deepkb / raw TTFT {f['ratio_ttft']}. Broken down: retrieval {n['retrieve_ms']:.0f} ms, prompt packing "
        f"{n['prompt_build_ms']:.0f} ms ({n['prompt_tokens']} tokens, {n['retrieved']} chunks retrieved, the best "
        f"that fit a budget of {f['cpu_source_tokens']} source tokens sent: what this machine prefills in what is "
        f"left of {f.get('first_character_target_s', 8)} s at the {f.get('prefill_tokens_per_s_measured')} tokens/s "
        "earlier runs measured), prompt-cache restore + prefill of the "
        f"{n['prompt_tokens'] - n['cached_prompt_tokens']} other tokens {n['deepkb_prefill_ms'] / 1000:.2f} s, "
        f"first token {n['first_token_ms'] / 1000:.2f} s. The saved prefix ({n['cached_prompt_tokens']} tokens: "
        "template and system prompt) is the part of every prompt that never changes. Loading the model took "
        f"{f['deepkb_load_ms'] / 1000:.2f} s (not counted above; `deepkb ask` pays it once per run).",
        "",
        f"A whole `deepkb ask --no-think` process, from the command to its first answer character on the terminal "
        f"(Python start, imports, loading MiniLM and the GGUF, retrieval, prefill): **{f['cli']['first_output_s']} s**"
        f" ({f['cli']['total_s']} s in all for 16 tokens; its own timings: {f['cli']['timings_line']}).",
        "",
        "Reproduce: `.venv/bin/python bench/llm_speed.py`",
        "",
        f"The model has the exact shape of DeepSeek-R1-Distill-Qwen-1.5B at Q4_K_M ({m['bytes'] / 1e9:.2f} GB) but "
        "random weights, so it writes nonsense at the real model's speed; the answer's quality is not measured here. "
        f"Both sides generate {f['max_tokens']} tokens at temperature 0.6 from the same chat messages; each row is "
        f"the median of {f['repeats']} interleaved run(s) by time to first token (the uncapped row: one run); only "
        f"the ratios are meant to carry over to other machines. Load average before and after: {f['load_average']} "
        f"on {os.cpu_count()} CPUs: llama.cpp's threads wait on each other at every layer, so other work on the "
        "machine slows prefill and generation several-fold (the ratios hold up better).",
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
    parser.add_argument("--cli", type=int, default=0, help="only time N whole `deepkb ask` processes in a row")
    parser.add_argument("--before", type=Path, default=None, help="with --cli: another checkout to alternate with")
    args = parser.parse_args()
    if args.rebuild and MODEL.exists():
        MODEL.unlink()
    if args.cli:
        figures = run_cli_series(args.cli, args.before)
        out = OUT.with_name("llm_cli.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2) + "\n")
        print(json.dumps(figures["median_first_output_s"]), f"wrote {out.relative_to(REPO)}")
        return
    figures = run(quick=args.quick, repeats=args.repeats, max_tokens=args.tokens)
    publish(figures, OUT, markdown, REPO)


if __name__ == "__main__":
    main()
