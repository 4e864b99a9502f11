"""deepkb.embedders: engines chosen by name from one registry, as deepkb.llm chooses LLM backends."""

from __future__ import annotations

import pytest

from deepkb import embedders
from deepkb.embedders.base import Embedder
from deepkb.embedders.openvino import OpenVINOEmbedder
from deepkb.embedders.sentence_transformers import SentenceTransformerEmbedder
from deepkb.errors import EmbeddingModelError


def test_the_registry_names_each_engine_and_auto_picks_one_of_them():
    assert embedders.BACKENDS == {"openvino": OpenVINOEmbedder, "sentence-transformers": SentenceTransformerEmbedder}
    assert all(issubclass(cls, Embedder) and cls.backend == name for name, cls in embedders.BACKENDS.items())
    assert embedders.backend_class("auto") is embedders.BACKENDS[embedders.pick_backend()]


def test_an_unknown_backend_lists_the_valid_names():
    with pytest.raises(EmbeddingModelError, match="valid: auto, openvino, sentence-transformers"):
        embedders.create_embedder("all-MiniLM-L6-v2", "onnx")


def test_the_fixture_embedder_is_one_of_the_registered_engines(embedder):
    assert type(embedder) is embedders.BACKENDS[embedder.backend]
    assert embedders.create_embedder("all-MiniLM-L6-v2", batch_size=embedder.batch_size) is embedder  # loaded once
