"""How close the embedding engine runs to this CPU's ceiling: OpenVINO options on the same chunk texts (issue 26).

    .venv/bin/python bench/engine_ceiling.py [--kb bench/cache/ingest-speed/now-bf16-0] [--rounds 2]

The texts are the distinct chunks (heading + text, as deepkb embeds them) of a knowledge base bench/ingest_speed.py
built (its manuals), tokenized once. Each option encodes all of them in batches of 32 sorted by length (deepkb's own
order), after one warm-up batch, `rounds` times interleaved; medians. Options, all on the IR deepkb converted:

- f32 and bf16 with one infer request on all cores (deepkb: LATENCY hint, INFERENCE_PRECISION_HINT pinned);
- bf16 with the THROUGHPUT hint, 2 streams and an AsyncInferQueue of 2 requests;
- int8 weights (per-output-channel symmetric, written into the graph as int8 constants with a multiply, the pattern
  NNCF emits; no new dependency) with dynamic int8 activations (DYNAMIC_QUANTIZATION_GROUP_SIZE 32, or per-token)
  in bf16 or f32, so the fully connected layers can use AVX-512 VNNI.

Reports seconds, tokens/s, the ratio to f32 and the share of the ceilings: tokens/s x 24 MFLOP per token over the
fp32 peak (bench/ingest_speed.fp32_peak) and over the bf16 peak (twice that: VDPBF16PS does two multiply-adds per
fp32 lane). Cosine to the f32 vectors: the smallest and the mean. Writes bench/out/engine_ceiling.json.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
OUT = REPO / "bench" / "out" / "engine_ceiling.json"
KB = REPO / "bench" / "cache" / "ingest-speed" / "now-bf16-0"


def int8_weights(model):
    """Every MatMul with a constant 2-D weight gets int8 weights (per output channel, symmetric) and a scale."""
    import openvino as ov
    from openvino import opset13 as ops

    count = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul" or op.input_value(1).get_node().get_type_name() != "Constant":
            continue
        weight = op.input_value(1).get_node().get_data().astype(np.float32)
        if weight.ndim != 2:
            continue
        axis = 1 if op.get_attributes()["transpose_b"] else 0  # the input dimension
        scale = np.abs(weight).max(axis=axis, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.round(weight / scale), -127, 127).astype(np.int8)
        restored = ops.multiply(ops.convert(ops.constant(q), ov.Type.f32), ops.constant(scale.astype(np.float32)))
        op.input(1).replace_source_output(restored.output(0))
        count += 1
    return model, count


def main() -> None:
    import openvino as ov
    from figures import publish
    from ingest_speed import MFLOP_PER_TOKEN, fp32_peak

    from deepkb.embedders.openvino import OpenVINOEmbedder

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kb", type=Path, default=KB)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not (args.kb / "kb.sqlite").exists():
        raise SystemExit(f"no knowledge base at {args.kb}: run bench/ingest_speed.py first")
    embedder = OpenVINOEmbedder("all-MiniLM-L6-v2", precision="f32")
    with sqlite3.connect(args.kb / "kb.sqlite") as db:
        texts = [(h + "\n\n" if h else "") + t for h, t in db.execute("SELECT heading, text FROM chunks GROUP BY hash")]
    encodings = embedder._tokenizer.encode_batch_fast(texts)
    tokens = sum(len(e.ids) for e in encodings)
    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
    batches = []
    for start in range(0, len(order), 32):
        rows = order[start : start + 32]
        ids = np.zeros((len(rows), max(len(encodings[i].ids) for i in rows)), np.int64)
        mask = np.zeros_like(ids)
        for r, i in enumerate(rows):
            ids[r, : len(encodings[i].ids)], mask[r, : len(encodings[i].ids)] = encodings[i].ids, 1
        batches.append((rows, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}))
    core = ov.Core()
    plain = core.read_model(str(embedder.folder / "model.xml"))
    quantized, n_int8 = int8_weights(core.read_model(str(embedder.folder / "model.xml")))
    latency = {"PERFORMANCE_HINT": "LATENCY"}
    options = {
        "f32, one request (deepkb f32)": (plain, {**latency, "INFERENCE_PRECISION_HINT": "f32"}, 1),
        "bf16, one request (deepkb bf16)": (plain, {**latency, "INFERENCE_PRECISION_HINT": "bf16"}, 1),
        "bf16, 2 streams": (
            plain,
            {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "2", "INFERENCE_PRECISION_HINT": "bf16"},
            2,
        ),  # fmt: skip
        "int8 weights + int8 activations (group 32), bf16": (
            quantized,
            {**latency, "INFERENCE_PRECISION_HINT": "bf16", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "32"},
            1,
        ),
        "int8 weights + int8 activations (per token), bf16": (
            quantized,
            {**latency, "INFERENCE_PRECISION_HINT": "bf16", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "4294967295"},
            1,
        ),  # fmt: skip
        "int8 weights + int8 activations (group 32), f32": (
            quantized,
            {**latency, "INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "32"},
            1,
        ),
    }
    compiled = {name: core.compile_model(m, "CPU", cfg) for name, (m, cfg, _) in options.items()}

    def encode(name: str) -> tuple[float, np.ndarray]:
        out = np.zeros((len(encodings), embedder.dim), np.float32)

        def pool(rows, mask, hidden):
            w = mask[..., None].astype(np.float32)
            v = (hidden * w).sum(1) / w.sum(1)
            out[rows] = v / np.linalg.norm(v, axis=1, keepdims=True)

        streams = options[name][2]
        model = compiled[name]
        model.create_infer_request().infer(batches[0][1])  # warm up
        started = time.perf_counter()
        if streams == 1:
            request = model.create_infer_request()
            for rows, inputs in batches:
                pool(rows, inputs["attention_mask"], next(iter(request.infer(inputs).values())))
        else:
            queue = ov.AsyncInferQueue(model, streams)
            queue.set_callback(lambda req, data: pool(data[0], data[1], req.get_output_tensor(0).data.copy()))
            for rows, inputs in batches:
                queue.start_async(inputs, (rows, inputs["attention_mask"]))
            queue.wait_all()
        return time.perf_counter() - started, out

    seconds: dict[str, list[float]] = {name: [] for name in options}
    vectors: dict[str, np.ndarray] = {}
    names = list(options)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            took, vectors[name] = encode(name)
            seconds[name].append(took)
            print(f"  round {r + 1}: {name}: {took:.1f} s", flush=True)
    peak, peak_how = fp32_peak()
    reference = vectors[names[0]]
    rows = {}
    for name in names:
        s = statistics.median(seconds[name])
        cos = (vectors[name] * reference).sum(1)
        rows[name] = {"seconds": round(s, 2), "tokens_per_s": round(tokens / s),
                      "x_f32": round(statistics.median(seconds[names[0]]) / s, 3),
                      "fp32_peak_share": round(tokens / s * MFLOP_PER_TOKEN * 1e6 / peak, 3),
                      "bf16_peak_share": round(tokens / s * MFLOP_PER_TOKEN * 1e6 / (2 * peak), 3),
                      "min_cos": round(float(cos.min()), 6), "mean_cos": round(float(cos.mean()), 6)}  # fmt: skip
    figures = {"when": time.strftime("%Y-%m-%dT%H:%M"), "chunks": len(texts), "tokens": tokens, "rounds": args.rounds,
               "int8_matmuls": n_int8, "peak_how": peak_how, "rows": rows}  # fmt: skip
    publish(figures, OUT, markdown, REPO)


def markdown(f: dict) -> list[str]:
    lines = [
        f"## The engine against this CPU's ceiling ({f['chunks']:,} manual chunks, {f['tokens']:,} tokens, "
        f"{f['rounds']} rounds interleaved)",
        "",
        "| OpenVINO option | seconds | tokens/s | × f32 | share of fp32 peak | share of bf16 peak | min / mean cosine to f32 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in f["rows"].items():
        lines.append(f"| {name} | {r['seconds']:.1f} | {r['tokens_per_s']:,} | {r['x_f32']:.2f} | "
                     f"{r['fp32_peak_share']:.0%} | {r['bf16_peak_share']:.0%} | {r['min_cos']:.6f} / "
                     f"{r['mean_cos']:.6f} |")  # fmt: skip
    lines += ["", f"Peaks: fp32 {f['peak_how']}; bf16 twice that. 24 MFLOP per token. Measured {f['when'][:10]}. "
              "Reproduce: `.venv/bin/python bench/engine_ceiling.py` (after bench/ingest_speed.py).", ""]  # fmt: skip
    return lines


if __name__ == "__main__":
    main()
