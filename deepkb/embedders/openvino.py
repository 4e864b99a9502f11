"""The OpenVINO embedding backend: the same model and the same vectors as sentence-transformers, without torch.

On the first run the checksummed sentence-transformers model is converted once (this step needs torch) into an
OpenVINO IR kept under the deepkb cache (`DEEPKB_CACHE`, else ~/.cache/deepkb), checked there against the torch
model's own vectors, and recorded in a manifest with the IR's sha256. Every later process loads only the IR and the
Rust tokenizer: no torch import (about 9 s cold on this 2-core machine against 0.4 s), a query encodes in about
4 ms instead of 15 ms on one thread, and ingest embeds about 1.2x faster (BENCHMARKS.md). Mean pooling and normalization are done here as sentence-transformers does.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import threading
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from deepkb.checksum import file_sha256
from deepkb.embedders.base import (
    QUERY_TEXTS,
    Embedder,
    KnownModel,
    plain_copy,
    quiet_third_party,
    resolve_model,
    verify_weights,
)
from deepkb.errors import EmbeddingModelError
from deepkb.paths import cache_root

log = logging.getLogger(__name__)

FORMAT = 2  # bump when the IR layout or the manifest changes
PRECISION = "f32"  # the default inference precision, pinned: the same vectors on every CPU (see _request)
PRECISIONS = ("f32", "bf16")  # what a knowledge base may be built with (config: embedding_precision)
IR_FILES = ("model.xml", "model.bin", "tokenizer.json")  # checksummed in the manifest, checked on every load
PROBE_MIN_COSINE = 0.99999  # the converted model must give the torch model's vectors, or it is not used
PROBES = [
    "What does the retention policy say about backups?",
    "deepkb",
    "Mitochondrial DNA mutations accumulate with age in human muscle fibres. " * 40,  # longer than 256 tokens
]


def _import_openvino():
    try:
        import openvino
    except ImportError as exc:
        raise EmbeddingModelError("the openvino embedding backend needs `pip install openvino`.") from exc
    return openvino


@contextmanager
def _no_telemetry():
    """OpenVINO's converter reports usage to Google Analytics unless the user opted out (openvino_telemetry).
    deepkb promises that nothing leaves the machine: while it converts, the converter gets its own no-op stub."""
    patched = []
    try:
        from openvino.tools.ovc import convert_impl, telemetry_stub, telemetry_utils

        for module in (convert_impl, telemetry_utils):
            patched.append((module, module.tm))
            module.tm = telemetry_stub
    except (ImportError, AttributeError):  # another layout: no converter telemetry where we know to look
        pass
    try:
        yield
    finally:
        for module, original in patched:
            module.tm = original


class OpenVINOEmbedder(Embedder):
    """all-MiniLM-L6-v2 (or another mean-pooled BERT-style sentence-transformers model) through OpenVINO on CPU."""

    backend = "openvino"

    def __init__(
        self, name_or_path: str, batch_size: int = 32, *, ir: Path | None = None, precision: str = PRECISION
    ) -> None:
        """Load the IR of a model, converting it first when the cache has none; `ir` opens a given IR folder.

        `precision`: f32 (the torch model's vectors on every CPU) or bf16 (bf16 arithmetic where the CPU has it
        natively: AVX-512 BF16 or AMX; about 1.9x f32's speed here, cosine to f32 above 0.9999; a CPU without it
        computes f32)."""
        super().__init__()
        if precision not in PRECISIONS:
            raise EmbeddingModelError(f"unknown embedding precision {precision!r}; valid: {', '.join(PRECISIONS)}.")
        ov = _import_openvino()
        from tokenizers import Tokenizer

        self.batch_size = batch_size
        self.converted = False  # True when this process made the IR
        if ir is None:
            folder, known = resolve_model(name_or_path, verify=False)
            ir = _ir_folder(folder, known, ov.get_version())
            if not _usable(ir):
                _refuse_if_rejected(ir)
                if known:
                    verify_weights(folder, known)
                try:
                    _convert(folder, ir)
                except ConversionRejected as exc:
                    _remember_rejection(ir, exc)
                    raise
                self.converted = True
            name_or_path = known.name if known else name_or_path
        self.name, self.folder = name_or_path, ir
        self.precision = precision
        manifest = json.loads((ir / "manifest.json").read_text())
        self.dim = int(manifest["dim"])
        self.max_tokens = int(manifest["max_seq_length"]) - 2
        self._core = ov.Core()
        self._model = self._core.read_model(str(ir / "model.xml"))
        self._compiled: dict[int, object] = {}
        self._bf16_checked = False
        self._lock = threading.Lock()  # an infer request serves one call at a time (`deepkb serve` has threads)
        tokenizer = Tokenizer.from_file(str(ir / "tokenizer.json"))
        self._counter = plain_copy(tokenizer)
        tokenizer.no_padding()  # each batch is padded to its longest text in _infer
        tokenizer.enable_truncation(int(manifest["max_seq_length"]))
        self._tokenizer = tokenizer
        self._pad_id = int(manifest["pad_id"])

    def _request(self, threads: int):
        """One compiled model per thread count: 1 for queries (see base.QUERY_TEXTS), 0 = all cores."""
        if threads not in self._compiled:
            # The precision is always given: OpenVINO's CPU plugin would pick bf16 by itself where the CPU has native
            # bf16 (AVX-512 BF16, AMX), and then a knowledge base's vectors would depend on the machine it began on.
            config = {"PERFORMANCE_HINT": "LATENCY", **_HINTS[self.precision]}
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
            compiled = self._core.compile_model(self._model, "CPU", config)
            if self.precision == "bf16" and not self._bf16_checked:
                self._bf16_checked = True
                hint = compiled.get_property("INFERENCE_PRECISION_HINT")
                got = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
                if got not in (
                    "bf16",
                    "bfloat16",
                ):  # said once per process: the knowledge base is bf16, this CPU computes f32
                    log.warning(
                        "this knowledge base is embedded in bf16, and this CPU has no native bf16: it is queried in "
                        "f32 here (cosine to the stored vectors above 0.9999; `deepkb doctor` checks it)."
                    )
            self._compiled[threads] = compiled.create_infer_request()
        return self._compiled[threads]

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch_fast(list(texts))
        with self._lock:
            return self._infer(encodings, self._request(1 if len(texts) <= QUERY_TEXTS else 0))

    def _infer(self, encodings: list, request) -> np.ndarray:
        out = np.empty((len(encodings), self.dim), dtype=np.float32)
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))  # little padding per batch
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            hidden = request.infer({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
            hidden = next(iter(hidden.values()))
            weights = mask[..., None].astype(np.float32)
            out[rows] = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return out

    def _count_uncached(self, texts: list[str]) -> list[int]:
        return [len(e) for e in self._counter.encode_batch_fast(texts, add_special_tokens=False)]


_HINTS: dict[str, dict] = {  # compile options per precision
    "f32": {"INFERENCE_PRECISION_HINT": "f32"},
    "bf16": {"INFERENCE_PRECISION_HINT": "bf16"},
}


@functools.cache
def native_bf16() -> bool:
    """The CPU computes bf16 natively (AVX-512 BF16 or AMX), as OpenVINO's CPU plugin reports it."""
    try:
        return "BF16" in _import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # no OpenVINO, or a plugin that cannot say: f32 is always right
        return False


def _ir_folder(source: Path, known: KnownModel | None, ov_version: str) -> Path:
    """One folder per model weights and OpenVINO version, so an upgrade of either converts again."""
    if known:
        identity = known.weights_sha256
    else:  # a local folder we do not know: its weights' size and mtime stand for them
        weights = source / "model.safetensors"
        stat = weights.stat() if weights.exists() else None
        identity = f"{source.resolve()}|{stat.st_size if stat else 0}|{stat.st_mtime_ns if stat else 0}"
    digest = hashlib.sha256(f"{identity}|{ov_version}|{FORMAT}|{PRECISION}".encode()).hexdigest()[:16]
    name = known.name if known else source.name
    return cache_root() / "embedders" / f"{name}-openvino-{digest}"


class ConversionRejected(EmbeddingModelError):
    """OpenVINO cannot take this model (it does not convert, or its vectors differ from torch's): a fact about the
    model, the OpenVINO version and the precision, remembered so that later processes go straight to the fallback.
    `first_time` is False when the rejection was remembered from an earlier process (nothing to announce again)."""

    def __init__(self, message: str, first_time: bool = True) -> None:
        super().__init__(message)
        self.first_time = first_time


def rejection_file(ir: Path) -> Path:
    """Where a rejected conversion of the model behind `ir` is remembered (beside the IR folder it would be)."""
    return ir.with_name(f"{ir.name}.rejected.json")


def _remember_rejection(ir: Path, exc: ConversionRejected) -> None:
    record = {"reason": str(exc), "openvino": _import_openvino().get_version(), "precision": PRECISION}
    try:
        ir.parent.mkdir(parents=True, exist_ok=True)
        rejection_file(ir).write_text(json.dumps(record, indent=2))
    except OSError:  # an unwritable cache only costs the conversion again next time
        pass


def _refuse_if_rejected(ir: Path) -> None:
    try:
        record = json.loads(rejection_file(ir).read_text())
    except (OSError, ValueError):
        return
    raise ConversionRejected(str(record.get("reason", "OpenVINO could not take this model")), first_time=False)


def remembered_rejection(name_or_path: str) -> str | None:
    """The reason OpenVINO was refused for this model on this OpenVINO version, if an earlier process found one."""
    try:
        folder, known = resolve_model(name_or_path, verify=False)
        record = json.loads(rejection_file(_ir_folder(folder, known, _import_openvino().get_version())).read_text())
    except (EmbeddingModelError, OSError, ValueError):
        return None
    return str(record.get("reason", "OpenVINO could not take this model"))


_checked: set[Path] = set()


def _usable(folder: Path) -> bool:
    """The IR is there, whole, and is the files that passed the probe (sha256 checked once per process)."""
    if folder in _checked:
        return True
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("format") != FORMAT or any(
            file_sha256(folder / name) != manifest["sha256"][name] for name in IR_FILES
        ):
            return False
    except (OSError, ValueError, KeyError):
        return False
    _checked.add(folder)
    return True


def _convert(source: Path, target: Path) -> None:
    """sentence-transformers model -> OpenVINO IR, kept only when its vectors match torch's on the probe texts."""
    ov = _import_openvino()
    quiet_third_party()
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbeddingModelError(
            f"converting the embedding model for OpenVINO needs torch and sentence-transformers ({exc}); "
            "run `make install` or `pip install sentence-transformers`."
        ) from exc

    model = SentenceTransformer(str(source), device="cpu", local_files_only=True)
    kinds = [type(module).__name__ for module in model]
    transformer, pooling = model[0], model[1] if len(model) > 1 else None
    mode = getattr(pooling, "pooling_mode", None)
    if mode is None and hasattr(pooling, "get_pooling_mode_str"):  # sentence-transformers < 6
        mode = pooling.get_pooling_mode_str()
    if mode not in ("mean", ("mean",)) or kinds[2:] not in ([], ["Normalize"]):
        raise ConversionRejected(f"{source}: only mean-pooled models convert to OpenVINO.")
    bert = transformer.auto_model.eval()

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    example = {name: torch.ones((2, 8), dtype=torch.long) for name in ("input_ids", "attention_mask", "token_type_ids")}
    example["attention_mask"][1, 5:] = 0  # trace the padded path: a batch of unequal texts
    work = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        with torch.no_grad(), warnings.catch_warnings(), _no_telemetry():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes: the probe below is the real check
            try:
                converted = ov.convert_model(LastHidden(), example_input=example)
            except Exception as exc:  # the converter raises many types for graphs it cannot take
                raise ConversionRejected(f"{source}: OpenVINO cannot convert this model ({exc}).") from exc
        ov.save_model(converted, str(work / "model.xml"), compress_to_fp16=False)
        shutil.copy2(source / "tokenizer.json", work / "tokenizer.json")
        tokenizer = transformer.tokenizer
        manifest = {
            "format": FORMAT,
            "source": str(source),
            "dim": int(getattr(model, "get_embedding_dimension", model.get_sentence_embedding_dimension)()),
            "max_seq_length": int(model.max_seq_length),
            "pad_id": int(tokenizer.pad_token_id or 0),
            "openvino": ov.get_version(),
            "torch": torch.__version__,
            "sha256": {name: file_sha256(work / name) for name in IR_FILES},
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
        expected = model.encode(PROBES, convert_to_numpy=True, normalize_embeddings=True)
        got = OpenVINOEmbedder(str(source), ir=work).embed(PROBES)
        cosine = float(np.min(np.sum(expected * got, axis=1)))
        if cosine < PROBE_MIN_COSINE:
            raise ConversionRejected(
                f"{source}: the OpenVINO conversion drifts from torch's vectors (cosine {cosine:.6f}, "
                f"{PRECISION} inference); not used."
            )
        manifest["probe_min_cosine"] = cosine
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if target.exists():  # another process converted meanwhile: keep one
            shutil.rmtree(target, ignore_errors=True)
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
