"""Benchmark: what the CPU source budget costs — how often the prompt still holds a relevant source.

On a CPU deepkb sends the sources after the best one only up to a token budget, to keep the first answer token under
10 s (bench/llm_speed.py): deepkb.answer.CPU_SOURCE_TOKENS until it has measured the machine, then what the machine
prefills in deepkb.answer.CPU_TTFT_TARGET_S (270-380 tokens on the 2-core machine of BENCHMARKS.md). Fewer sources can leave the answer out of the prompt.
For each SciFact test query this runs deepkb's hybrid search (k=6, as `deepkb ask` does) on bench/run.py's cached
knowledge base and packs the prompt as `deepkb ask` does (under a budget, each document's best chunk first), counting tokens with the Qwen2 tokenizer of
the 1.5B-shaped GGUF of bench/llm_speed.py, under several source budgets. Reported: the share of queries whose
prompt holds at least one relevant abstract, the share of all relevant abstracts that made it in, and the
prompt's size (which sets the prefill time).

    .venv/bin/python bench/context_recall.py

Writes bench/out/context_recall.json.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

OUT = REPO / "bench" / "out" / "context_recall.json"
BUDGETS = (256, 384, 512, 768, None)  # None: every retrieved chunk that fits the context (the GPU behaviour)
K = 6


def run(quick: bool = False, scifact: Path | None = None) -> dict:
    """Prompt recall and size per source budget over the SciFact test queries."""
    from llm_speed import build_model
    from run import CACHE, load_scifact

    from deepkb.answer import AskOptions
    from deepkb.kb import KnowledgeBase
    from deepkb.llm import LlamaCppLLM
    from deepkb.prompt import build_prompt, spread_documents

    folder = scifact or REPO.parent / "shared" / "data" / "scifact"
    if not (folder / "corpus.jsonl").exists() or not (CACHE / "scifact-kb" / "kb.sqlite").exists():
        return {"skipped": "needs SciFact and bench/run.py's cached knowledge base (run bench/run.py first)"}
    _, queries, qrels = load_scifact(folder)
    if quick:
        queries = dict(list(queries.items())[:100])
    started = time.perf_counter()
    kb = KnowledgeBase.open(CACHE / "scifact-kb")
    llm = LlamaCppLLM(build_model(), context_size=4096, gpu_layers=0)  # only its tokenizer is used
    answer_tokens = min(AskOptions.answer_tokens, llm.context_size // 2)
    rows = {str(b): {"any": [], "share": [], "sources": [], "tokens": []} for b in BUDGETS}
    retrieved_any = []
    for qid, text in queries.items():
        hits = kb.search(text, k=K, mode="hybrid")
        relevant = set(qrels[qid])
        retrieved_any.append(any(Path(h.path).stem in relevant for h in hits))
        for budget in BUDGETS:
            candidates = spread_documents(hits) if budget is not None else hits  # as deepkb.answer.ask packs them
            prompt = build_prompt(text, candidates, llm, answer_tokens, source_tokens=budget)
            docs = {Path(h.path).stem for h in prompt.sources} & relevant
            row = rows[str(budget)]
            row["any"].append(bool(docs))
            row["share"].append(len(docs) / len(relevant))
            row["sources"].append(len(prompt.sources))
            row["tokens"].append(prompt.prompt_tokens)
    kb.close()
    return {
        "benchmark": "context_recall",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "queries": len(queries),
        "k": K,
        "seconds": round(time.perf_counter() - started, 1),
        "retrieved_any": round(statistics.mean(retrieved_any), 3),
        "budgets": {
            budget: {
                "queries_with_a_relevant_source": round(statistics.mean(r["any"]), 3),
                "relevant_sources_in_prompt": round(statistics.mean(r["share"]), 3),
                "mean_sources": round(statistics.mean(r["sources"]), 2),
                "median_prompt_tokens": int(statistics.median(r["tokens"])),
            }
            for budget, r in rows.items()
        },
    }


def markdown(f: dict) -> list[str]:
    """The BENCHMARKS.md section."""
    if "skipped" in f:
        return ["## What the CPU source budget costs", "", f"Skipped: {f['skipped']}.", ""]
    from deepkb.answer import CPU_SOURCE_TOKENS

    lines = [
        f"## What the CPU source budget costs (SciFact test, {f['queries']} queries, hybrid top {f['k']})",
        "",
        "| source tokens (the best chunk always in) | sources in the prompt | prompt tokens (median) "
        "| queries with a relevant abstract in the prompt | relevant abstracts in the prompt |",
        "| --- | --- | --- | --- | --- |",
    ]
    for budget, b in f["budgets"].items():
        name = "all that fit (GPU default)" if budget == "None" else budget
        if budget == str(CPU_SOURCE_TOKENS):
            name += " (CPU budget before deepkb has measured the machine)"
        lines.append(
            f"| {name} | {b['mean_sources']} | {b['median_prompt_tokens']} | "
            f"{b['queries_with_a_relevant_source']:.1%} | {b['relevant_sources_in_prompt']:.1%} |"
        )
    lines += [
        "",
        f"The {f['k']} retrieved chunks hold a relevant abstract for {f['retrieved_any']:.1%} of the queries. "
        "Prefill time grows with the prompt's tokens (bench/llm_speed.py), so the CPU budget trades the "
        "difference between its row and the last for a first token in seconds rather than tens of seconds; "
        "deepkb sizes it by the prefill speed earlier runs measured (see the answer-speed section).",
        "",
        "Reproduce: `.venv/bin/python bench/context_recall.py`",
        "",
    ]
    return lines


def main() -> None:
    from figures import publish

    publish(run(), OUT, markdown, REPO)


if __name__ == "__main__":
    main()
