"""The sentence-transformers embedding engine: torch on CPU or CUDA, model files resolved locally and checksummed.

On a machine with an NVIDIA GPU and a CUDA build of torch it runs on the GPU (device "cuda"), in the knowledge
base's precision (f32, or bf16 for one built in bf16 by OpenVINO), so a knowledge base moves between machines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepkb.embedders.base import QUERY_TEXTS, Embedder, plain_copy, quiet_third_party, resolve_model
from deepkb.errors import EmbeddingModelError


class SentenceTransformerEmbedder(Embedder):
    """sentence-transformers on CPU or CUDA, model files resolved locally and checksummed."""

    backend = "sentence-transformers"

    fallback_reason: str | None = None  # why "auto" ended here instead of at OpenVINO

    def __init__(
        self, name_or_path: str, batch_size: int = 32, device: str | None = None, precision: str = "f32"
    ) -> None:
        super().__init__()
        if precision not in ("f32", "bf16"):
            raise EmbeddingModelError(f"unknown embedding precision {precision!r}; valid: f32, bf16.")
        self.precision = precision
        quiet_third_party()
        path, known = resolve_model(name_or_path)
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingModelError(
                f"the sentence-transformers embedding backend is not installed ({exc}); run `make install`."
            ) from exc
        self.device = device or default_device()
        try:
            self.model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        except Exception as exc:  # a broken model folder raises many types
            raise EmbeddingModelError(f"cannot load embedding model from {path}: {exc}") from exc
        if precision == "bf16":  # a knowledge base built in bf16 (by OpenVINO on a CPU) is queried in bf16 here too
            import torch

            self.model.to(torch.bfloat16)
        self.name = known.name if known else name_or_path
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.max_tokens = int(self.model.max_seq_length) - 2
        self.batch_size = batch_size
        self.tokenizer = self.model.tokenizer
        backend = getattr(self.tokenizer, "backend_tokenizer", None)  # the fast tokenizer's Rust core
        self._counter = plain_copy(backend) if backend is not None else None

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) > QUERY_TEXTS or self.device.startswith("cuda"):
            return self.model.encode(
                list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
            )
        # A query is too small to split across threads: torch's threads then mostly wait on each other, and when
        # other work shares the CPU one query took 737 ms on 2 threads against 49 ms on 1 (bench/search_latency.py).
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.model.encode(list(texts), convert_to_numpy=True, show_progress_bar=False)
        finally:
            torch.set_num_threads(threads)

    def _count_uncached(self, texts: list[str]) -> list[int]:
        if self._counter is None:
            ids = self.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
            return [len(x) for x in ids]
        encode = getattr(self._counter, "encode_batch_fast", self._counter.encode_batch)
        return [len(e) for e in encode(texts, add_special_tokens=False)]


def default_device() -> str:
    """The device to embed on: "cuda" where torch sees an NVIDIA GPU, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
