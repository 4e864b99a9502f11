"""`deepkb doctor`: check everything a knowledge base and its answers depend on, each finding with its fix.

Checks, in order: the database (PRAGMA integrity_check, schema version), the FTS5 keyword index (its own
integrity-check against the chunks table), the vector index (in step with SQLite, vectors that find themselves),
the embedding engine really used (backend, precision, and whether it reproduces the stored vectors), the answer
model (file, loads, architecture, context), llama.cpp's GPU offload, memory (model + KV cache + embedder against
the RAM available now) and disk room. With repair=True what can be rebuilt from SQLite, the truth, is rebuilt:
the vector index and the FTS5 index (and SQLite's own b-tree indexes, by REINDEX).
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deepkb.config import Settings
from deepkb.storage import checks
from deepkb.storage.catalog import DB_FILE, SCHEMA_VERSION
from deepkb.storage.errors import human_bytes

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
RESTORE_HINT = "restore a backup (`deepkb restore BACKUP --kb NEW_FOLDER`) or ingest your folders again into a new --kb"
EMBEDDER_RUNTIME_BYTES = 300_000_000  # torch or OpenVINO and tokenizer around the embedding weights, measured roughly
MIN_FREE_DISK = 500_000_000


@dataclass
class Finding:
    """One check's outcome: ok, warn, fail or skip, what was found, and what to do about it."""

    check: str
    status: str
    detail: str
    fix: str | None = None
    data: dict = field(default_factory=dict)
    repaired: bool = False

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class _Context:
    settings: Settings
    model: str | None
    repair: bool
    db_ok: bool = False
    embedder: object | None = None
    llm_meta: dict = field(default_factory=dict)
    model_bytes: int = 0


def run(settings: Settings, model: str | None = None, repair: bool = False) -> list[Finding]:
    """Every check, in order; one that crashes is reported as a failed check, never raised."""
    ctx = _Context(settings, model, repair)
    findings: list[Finding] = []
    checks: list[tuple[str, Callable[[_Context], Finding]]] = [
        ("database", _database), ("keyword index", _fts), ("vector index", _vector_index),
        ("embedding engine", _embedder), ("answer model", _answer_model), ("gpu offload", _gpu_offload),
        ("memory", _memory), ("disk", _disk), ("ocr", _ocr),
    ]  # fmt: skip
    for name, check in checks:
        try:
            findings.append(check(ctx))
        except Exception as exc:  # a check must report, not stop the others
            findings.append(Finding(name, FAIL, f"the check itself failed ({type(exc).__name__}: {exc})"))
    return findings


# the database -----------------------------------------------------------------------------------------------
def _database(ctx: _Context) -> Finding:
    path = ctx.settings.home / DB_FILE
    if not path.exists():
        return Finding("database", WARN, f"no knowledge base at {ctx.settings.home} yet", "run `deepkb ingest PATH`")
    try:
        version, problems, repaired = checks.integrity(path, repair=ctx.repair)
        if repaired:
            return Finding(
                "database", OK, f"{path} had damaged b-tree indexes; rebuilt by REINDEX",
                data={"problems_before": repaired}, repaired=True,
            )  # fmt: skip
    except sqlite3.DatabaseError as exc:
        return Finding("database", FAIL, f"{path} cannot be read as a database ({exc})", RESTORE_HINT)
    data = {"path": str(path), "bytes": path.stat().st_size, "schema": version, "known_schema": SCHEMA_VERSION}
    if version > SCHEMA_VERSION:
        return Finding("database", FAIL, f"written by a newer deepkb (schema {version})", "upgrade deepkb", data)
    if problems != ["ok"]:
        fix = "run `deepkb doctor --repair`" if checks.only_index_problems(problems) else RESTORE_HINT
        return Finding("database", FAIL, f"integrity_check found: {'; '.join(problems[:3])}", fix, data)
    ctx.db_ok = True
    return Finding("database", OK, f"integrity_check ok, schema {version}, {human_bytes(data['bytes'])}", data=data)


def _fts(ctx: _Context) -> Finding:
    if not ctx.db_ok:
        return Finding("keyword index", SKIP, "the database check did not pass")
    chunks, problem, rebuilt = checks.keyword_index(ctx.settings.home / DB_FILE, repair=ctx.repair)
    if rebuilt:
        return Finding("keyword index", OK, f"was damaged ({problem}); rebuilt from {chunks} chunks", repaired=True)
    if problem:
        return Finding(
            "keyword index", FAIL, f"FTS5 integrity-check failed ({problem})", "run `deepkb doctor --repair`"
        )
    return Finding("keyword index", OK, f"FTS5 integrity-check ok over {chunks} chunks", data={"chunks": chunks})


# the vector index -------------------------------------------------------------------------------------------
def _vector_index(ctx: _Context) -> Finding:
    if not ctx.db_ok:
        return Finding("vector index", SKIP, "the database check did not pass")
    from deepkb.storage.catalog import Store
    from deepkb.storage.vectors import VectorIndex

    store = Store(ctx.settings.home)
    try:
        dim = store.get_meta("embedding_dim")
        if not dim:
            return Finding("vector index", OK, "nothing indexed yet")
        s = ctx.settings
        index = VectorIndex.open(
            s.home, store, int(dim), m=s.hnsw_m, ef_construction=s.hnsw_ef_construction, ef_search=s.hnsw_ef_search
        )
        truth = store.all_vector_ids()
        lost = _self_recall_misses(store, index, truth)
        data = {"state": index.state, "chunks": len(truth), "indexed": len(index.live), "self_recall_misses": lost}
        healthy = index.state in ("loaded", "new") and index.live == truth and not lost
        if healthy:
            return Finding("vector index", OK, f"in step with SQLite ({len(truth)} vectors)", data=data)
        what = {
            "repaired": "lagged behind SQLite (a write after its last save)",
            "rebuilt": "missing or unreadable",
        }.get(index.state, "holds vectors that do not find themselves")
        if ctx.repair:
            index.rebuild(store)
            index.save(store.epoch())
            return Finding("vector index", OK, f"{what}; rebuilt from SQLite ({len(truth)} vectors)", data=data,
                           repaired=True)  # fmt: skip
        return Finding(
            "vector index", WARN, f"{what}; the next search repairs it in memory",
            "run `deepkb doctor --repair` (or `deepkb reindex`) to rebuild and save it", data,
        )  # fmt: skip
    finally:
        store.close()


def _self_recall_misses(store, index, truth: set[int], samples: int = 20) -> int:
    """Stored vectors, asked of the index, must find themselves: a garbled index file does not."""
    if index.state != "loaded" or not truth:
        return 0
    chosen = random.Random(0).sample(sorted(truth), min(samples, len(truth)))
    misses = 0
    for ids, vectors in store.iter_vectors(chosen):
        for vector_id, vector in zip(ids, vectors):
            found = index.query(vector, 3)
            if not found or vector_id not in [i for i, _ in found]:
                misses += 1
    return misses


# the embedding engine ---------------------------------------------------------------------------------------
def _embedder(ctx: _Context) -> Finding:
    from deepkb.embedders import create_embedder, default_precision

    s = ctx.settings
    recorded = _recorded_precision(ctx) if ctx.db_ok else None
    kb_precision = recorded or (
        default_precision(s.embedding_backend, s.embedding_model)
        if s.embedding_precision == "auto"
        else s.embedding_precision
    )
    if recorded and s.embedding_precision not in ("auto", recorded):
        return Finding(
            "embedding engine", FAIL,
            f"the knowledge base was embedded in {recorded}, but embedding_precision says {s.embedding_precision}",
            f"remove the setting, or run `deepkb reindex --reembed --embedding-precision {s.embedding_precision}`",
            {"kb_precision": recorded, "configured_precision": s.embedding_precision},
        )  # fmt: skip
    embedder = create_embedder(s.embedding_model, s.embedding_backend, kb_precision, batch_size=s.embed_batch_size)
    ctx.embedder = embedder
    backend = getattr(embedder, "backend", "?")
    agreement = _agreement_with_stored(ctx, embedder) if ctx.db_ok else None
    precision = _precision(embedder)  # after embedding: OpenVINO compiles on first use
    device = getattr(embedder, "device", None) or getattr(getattr(embedder, "model", None), "device", None)
    data = {"model": getattr(embedder, "name", s.embedding_model), "backend": backend, "precision": precision,
            "kb_precision": kb_precision, "recorded": recorded is not None,
            "device": str(device) if device is not None else None, "dim": getattr(embedder, "dim", None)}  # fmt: skip
    gpu = _gpu_note(data["device"])
    data["gpu"] = gpu
    detail = (
        f"{data['model']} on {backend}" + (f", {precision}" if precision else "") + (f", {device}" if device else "")
        + f"; the knowledge base is embedded in {kb_precision}" + ("" if recorded else " (its default)")
    )  # fmt: skip
    if gpu:
        detail += f"; {gpu}"
    if agreement is not None:
        data["cosine_to_stored_min"] = round(agreement, 6)
        detail += f"; reproduces the stored vectors (cosine ≥ {agreement:.4f})"
        if agreement < 0.99:
            return Finding(
                "embedding engine", FAIL, detail.replace("reproduces", "does not reproduce"),
                "the KB was embedded by another engine or model: run `deepkb reindex --reembed`", data,
            )  # fmt: skip
    return Finding("embedding engine", OK, detail, data=data)


def _recorded_precision(ctx: _Context) -> str | None:
    """The precision the KB's vectors were made in (f32 for a KB built before deepkb recorded it)."""
    meta = checks.embedding_meta(ctx.settings.home / DB_FILE)
    return meta.get("embedding_precision") or ("f32" if meta.get("embedding_model") else None)


def _gpu_note(device: str | None) -> str | None:
    """Where an NVIDIA GPU is, whether the embedder runs on it, and if not, what to install."""
    from deepkb.embedders import gpu_present, torch_cuda

    if device and device.startswith("cuda"):
        return f"embedding runs on the NVIDIA GPU ({device}, torch CUDA {torch_cuda() or '?'})"
    if not gpu_present():
        return None
    if torch_cuda() is None:
        return ("an NVIDIA GPU is here, but torch was built without CUDA, so embedding runs on the CPU; install a "
                "CUDA build of torch (https://pytorch.org/get-started/locally/) to embed on the GPU")  # fmt: skip
    return "an NVIDIA GPU is here, but embedding runs on the CPU (embedding_backend or precision chose it)"


def _precision(embedder) -> str | None:
    """The precision the engine really computes in: what OpenVINO compiled, else torch's dtype, else what it says."""
    for request in (getattr(embedder, "_compiled", None) or {}).values():
        try:
            hint = request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT")
            return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        except Exception:
            break
    try:
        return str(next(embedder.model.parameters()).dtype).removeprefix("torch.")
    except Exception:
        pass
    for attr in ("precision", "inference_precision"):
        if getattr(embedder, attr, None):
            return str(getattr(embedder, attr))
    return None


def _agreement_with_stored(ctx: _Context, embedder) -> float | None:
    """Embed a few stored chunks again: the lowest cosine to their stored vectors (None when nothing is stored)."""
    path = ctx.settings.home / DB_FILE
    if checks.embedding_meta(path).get("embedding_model") != getattr(embedder, "name", None):
        return None
    rows = checks.sample_vectors(path)
    if not rows:
        return None
    fresh = embedder.embed([f"{h}\n{t}" if h else t for t, h, _ in rows])
    stored = np.vstack([np.frombuffer(v, dtype=np.float32) for _, _, v in rows])
    cos = np.sum(fresh * stored, axis=1) / (np.linalg.norm(fresh, axis=1) * np.linalg.norm(stored, axis=1))
    return float(cos.min())


# the answer model -------------------------------------------------------------------------------------------
def _answer_model(ctx: _Context) -> Finding:
    from deepkb.errors import DeepKBError
    from deepkb.llm.catalog import resolve_model

    wanted = ctx.model or ctx.settings.model or None  # --model, else the setting `ask`, `chat` and `serve` use
    if not wanted and ctx.settings.llm_url:
        return Finding("answer model", SKIP, f"answers come from the server at {ctx.settings.llm_url} (llm_url)",
                       data={"llm_url": ctx.settings.llm_url})  # fmt: skip
    try:
        path = resolve_model(wanted)
    except DeepKBError as exc:
        return Finding("answer model", WARN, str(exc), "run `deepkb models pull` (search works without one)")
    ctx.model_bytes = path.stat().st_size
    try:
        import llama_cpp
    except ImportError as exc:
        return Finding(
            "answer model", FAIL, f"llama-cpp-python is not installed ({exc})", "pip install llama-cpp-python"
        )
    try:  # a real load, with a small context: the file is complete and llama.cpp knows its architecture
        llama = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_gpu_layers=0, use_mmap=True, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        fix = "re-download it (`deepkb models rm NAME`, then `deepkb models pull NAME`) or pick another GGUF"
        return Finding("answer model", FAIL, f"llama.cpp cannot load {path} ({exc})", fix)
    meta = dict(llama.metadata)
    if hasattr(llama, "close"):
        llama.close()
    ctx.llm_meta = meta
    arch = meta.get("general.architecture", "?")
    trained = _int(meta.get(f"{arch}.context_length"))
    data = {"path": str(path), "bytes": ctx.model_bytes, "architecture": arch, "trained_context": trained,
            "layers": _int(meta.get(f"{arch}.block_count")), "name": meta.get("general.name")}  # fmt: skip
    detail = f"{path.name} loads: {arch}, {human_bytes(ctx.model_bytes)}, trained context {trained or '?'} tokens"
    return Finding("answer model", OK, detail, data=data)


def _gpu_offload(ctx: _Context) -> Finding:
    try:
        import llama_cpp
    except ImportError:
        return Finding("gpu offload", SKIP, "llama-cpp-python is not installed")
    supported = bool(llama_cpp.llama_supports_gpu_offload())
    layers = _int(ctx.llm_meta.get(f"{ctx.llm_meta.get('general.architecture')}.block_count"))
    on_gpu = (layers + 1 if layers else None) if supported else 0  # the repeating blocks plus the output layer
    data = {"supported": supported, "model_layers": layers, "layers_on_gpu": on_gpu}
    if supported:
        where = f"all {on_gpu} layers of the model run on the GPU" if layers else "every layer runs on the GPU"
        return Finding("gpu offload", OK, f"llama.cpp was built with GPU offload: {where}", data=data)
    if any(Path(node).exists() for node in ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu", "/dev/kfd")):
        return Finding(
            "gpu offload",
            WARN,
            "this machine has a GPU, but llama.cpp was built for the CPU only: 0 layers run on the GPU",
            'reinstall it with CUDA: CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir '
            "llama-cpp-python",
            data,
        )
    return Finding("gpu offload", OK, "no GPU here; llama.cpp runs every layer on the CPU", data=data)


# memory and disk --------------------------------------------------------------------------------------------
def _memory(ctx: _Context) -> Finding:
    available = _mem_available()
    if available is None:
        return Finding("memory", SKIP, "this system does not say how much memory is available")
    context = _context_size()
    kv = _kv_cache_bytes(ctx.llm_meta, context)
    embedder = _embedder_bytes(ctx)
    need = ctx.model_bytes + kv + embedder
    data = {"available": available, "model": ctx.model_bytes, "kv_cache": kv, "kv_context": context,
            "embedder": embedder, "needed": need}  # fmt: skip
    detail = (
        f"answer model {human_bytes(ctx.model_bytes)} + KV cache {human_bytes(kv)} ({context} tokens) + embedder "
        f"{human_bytes(embedder)} = {human_bytes(need)}; {human_bytes(available)} available"
        if ctx.model_bytes
        else f"no answer model; embedder {human_bytes(embedder)}; {human_bytes(available)} available"
    )
    if need > available:
        return Finding("memory", FAIL, detail, "use a smaller model (`deepkb models list`), a shorter --context, "
                       "or close other programs", data)  # fmt: skip
    if need > 0.85 * available:
        return Finding("memory", WARN, detail + " (tight)", "close other programs or use a smaller model", data)
    return Finding("memory", OK, detail, data=data)


def _disk(ctx: _Context) -> Finding:
    home = ctx.settings.home
    free = shutil.disk_usage(home).free
    used = sum(p.stat().st_size for p in home.iterdir() if p.is_file())
    data = {"free": free, "kb_bytes": used}
    detail = f"{human_bytes(free)} free on the disk holding {home}; the knowledge base takes {human_bytes(used)}"
    if free < max(MIN_FREE_DISK, used):
        return Finding("disk", WARN, detail, "free some space: an ingest needs room for new chunks and SQLite's "
                       "journal, and a backup as much as the knowledge base", data)  # fmt: skip
    return Finding("disk", OK, detail, data=data)


def _mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def _context_size() -> int:
    try:
        from deepkb import llm

        return int(getattr(llm, "DEFAULT_CONTEXT_SIZE", 4096))
    except Exception:
        return 4096


def _kv_cache_bytes(meta: dict, context: int) -> int:
    """f16 K and V for every layer: 2 x layers x context x kv_heads x head_dim x 2 bytes."""
    arch = meta.get("general.architecture")
    if not arch:
        return 0
    layers = _int(meta.get(f"{arch}.block_count"))
    heads = _int(meta.get(f"{arch}.attention.head_count"))
    kv_heads = _int(meta.get(f"{arch}.attention.head_count_kv")) or heads
    width = _int(meta.get(f"{arch}.embedding_length"))
    head_dim = _int(meta.get(f"{arch}.attention.key_length")) or (width // heads if heads else 0)
    return 2 * layers * context * kv_heads * head_dim * 2


def _embedder_bytes(ctx: _Context) -> int:
    from deepkb.embedders import resolve_model

    try:
        folder, _ = resolve_model(ctx.settings.embedding_model, verify=False)
        weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    except Exception:
        weights = 0
    return weights + EMBEDDER_RUNTIME_BYTES


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


def _ocr(ctx: _Context) -> Finding:
    """Optional: tesseract reads scanned PDF pages (pages without a text layer); without it they are skipped."""
    from deepkb.loaders.ocr import tesseract, tesseract_version

    exe = tesseract()
    if exe is None:
        fix = "`sudo apt install tesseract-ocr` (macOS: `brew install tesseract`), then `deepkb ingest` again"
        detail = f"tesseract is not installed: scanned PDF pages (no text layer) are skipped; to OCR them: {fix}"
        return Finding("ocr", SKIP, detail, fix)
    version = tesseract_version(exe)
    return Finding("ocr", OK, f"{version or 'tesseract'} ({exe}) OCRs scanned PDF pages", data={"tesseract": exe})
