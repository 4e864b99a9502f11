"""What every standalone bench does with its figures: keep them as JSON and print its BENCHMARKS.md section."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def publish(figures: dict, out: Path, markdown: Callable[[dict], list[str]], repo: Path) -> None:
    """Write bench/out/<name>.json and print the markdown section made from it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print("\n".join(markdown(figures)))
    print(f"wrote {out.relative_to(repo)}")


def sentence_transformer(name: str = "all-MiniLM-L6-v2"):
    """The raw engine the issue names: sentence-transformers' own model object, from the checked files deepkb uses
    (deepkb itself may run them through OpenVINO: see deepkb.embedders.pick_backend)."""
    from sentence_transformers import SentenceTransformer

    from deepkb.embedders import resolve_model

    return SentenceTransformer(str(resolve_model(name)[0]), local_files_only=True)


class RawOpenVINO:
    """deepkb's own engine called directly, as a user of OpenVINO would: the IR deepkb converted (the same files),
    compiled in f32, the Rust tokenizer, each batch padded to its longest text in the given order, mean pooling.
    This is "raw" in the tables that measure deepkb's overhead over its engine."""

    def __init__(self, name: str = "all-MiniLM-L6-v2") -> None:
        import json

        import openvino as ov
        from tokenizers import Tokenizer

        from deepkb.embedders import create_embedder

        folder = create_embedder(name, "openvino").folder  # converts once if the cache has no IR yet
        manifest = json.loads((folder / "manifest.json").read_text())
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(int(manifest["max_seq_length"]))
        self.tokenizer.enable_padding(pad_id=int(manifest["pad_id"]))
        compiled = ov.Core().compile_model(str(folder / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        self.request = compiled.create_infer_request()

    def encode(self, texts: list[str], batch_size: int = 32):
        import numpy as np

        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer.encode_batch(texts[start : start + batch_size])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            hidden = next(iter(self.request.infer({"input_ids": ids, "attention_mask": mask,
                                                   "token_type_ids": np.zeros_like(ids)}).values()))  # fmt: skip
            pooled = (hidden * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)
