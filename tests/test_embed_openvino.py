"""The OpenVINO backend: converted once from the checksummed model, the torch vectors, nothing sent anywhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deepkb import embedders as embedder_module
from deepkb import paths
from deepkb.checksum import file_sha256
from deepkb.embedders import create_embedder, pick_backend
from deepkb.errors import EmbeddingModelError
from deepkb.ingest.chunker import chunk_units
from deepkb.loaders import load

pytest.importorskip("openvino")
from deepkb.embedders import openvino as embed_openvino  # noqa: E402
from deepkb.embedders.openvino import OpenVINOEmbedder  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "data"
QUERIES = ["How long are backups kept?", "incremental sync after a rename", "Which port does the server use?"]


@pytest.fixture(scope="module")
def both():
    """The same model through both backends (the torch one only for the comparison)."""
    pytest.importorskip("sentence_transformers", reason="no torch in this venv (make test-py310)")
    return create_embedder("all-MiniLM-L6-v2", "openvino"), create_embedder("all-MiniLM-L6-v2", "sentence-transformers")


def _sample_chunks(embedder) -> list[str]:
    texts = []
    for path in sorted(p for p in SAMPLE.rglob("*") if p.is_file()):
        units = load(path, path.read_bytes()).units
        texts += [c.embed_text for c in chunk_units(units, embedder.count_tokens, embedder.max_tokens)]
    return texts


def test_openvino_gives_the_torch_vectors_and_the_same_ranking(both):
    ov, st = both
    chunks = _sample_chunks(ov)
    assert len(chunks) > 20 and chunks == _sample_chunks(st)  # the same token counts, so the same chunks
    a, b = ov.embed(chunks), st.embed(chunks)
    assert a.shape == b.shape == (len(chunks), 384)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.99999
    qa, qb = ov.embed(QUERIES), st.embed(QUERIES)  # queries take the one-thread path
    assert float(np.min(np.sum(qa * qb, axis=1))) > 0.99999
    assert (np.argsort(-(qa @ a.T), axis=1)[:, :5] == np.argsort(-(qb @ b.T), axis=1)[:, :5]).all()
    long_text = "citations precise to page and line " * 200  # past 256 tokens: truncated like torch does
    assert float(ov.embed([long_text])[0] @ st.embed([long_text])[0]) > 0.99999


def test_a_damaged_ir_is_converted_again_and_nothing_phones_home(both, tmp_path, monkeypatch):
    ov, _ = both
    telemetry = pytest.importorskip("openvino_telemetry")  # installed with openvino; must stay silent

    def phone_home(*args, **kwargs):
        raise AssertionError("OpenVINO telemetry was started")

    monkeypatch.setattr(telemetry.Telemetry, "init", phone_home)
    monkeypatch.setattr(telemetry.Telemetry, "send_event", phone_home)
    monkeypatch.setenv("DEEPKB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # where OpenVINO's telemetry would keep its client id
    target = paths.cache_root() / "embedders" / ov.folder.name
    shutil.copytree(ov.folder, target)
    assert not OpenVINOEmbedder("all-MiniLM-L6-v2").converted  # a whole copy is used as it is
    with (target / "model.bin").open("r+b") as fh:
        fh.seek(4096)
        byte = fh.read(1)
        fh.seek(4096)
        fh.write(bytes([byte[0] ^ 0xFF]))
    embed_openvino._checked.clear()
    again = OpenVINOEmbedder("all-MiniLM-L6-v2")
    assert again.converted
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["probe_min_cosine"] > 0.99999
    assert manifest["sha256"]["model.bin"] == file_sha256(target / "model.bin")
    assert float(again.embed(QUERIES)[0] @ ov.embed(QUERIES)[0]) > 0.99999
    assert not (tmp_path / "home" / "intel").exists()
    assert not [p for p in target.parent.iterdir() if ".tmp-" in p.name]


def test_auto_takes_openvino_on_a_cpu_machine_and_torch_beside_an_nvidia_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(embedder_module, "_NVIDIA_NODES", ())
    assert pick_backend() == "openvino"
    node = tmp_path / "nvidia0"
    node.touch()
    monkeypatch.setattr(embedder_module, "_NVIDIA_NODES", (str(node),))
    monkeypatch.setattr(embedder_module, "torch_cuda", lambda: "12.4")  # a CUDA build of torch (test_ingest_pipeline
    assert pick_backend() == "sentence-transformers"  # covers reading it, and a CPU-only torch beside a GPU)


def test_an_unknown_backend_names_the_valid_ones():
    with pytest.raises(EmbeddingModelError, match="valid: auto, openvino, sentence-transformers"):
        create_embedder("all-MiniLM-L6-v2", "onnx")


def test_auto_falls_back_to_torch_once_and_remembers_why(tmp_path, monkeypatch, caplog):
    """A rejected conversion is announced by the process that finds it; the next process goes straight to torch."""
    pytest.importorskip("sentence_transformers", reason="no torch in this venv (make test-py310)")
    import openvino

    from deepkb.config import Settings
    from deepkb.kb import KnowledgeBase

    calls = []

    def refuse(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("unsupported operation (test)")

    monkeypatch.setenv("DEEPKB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(embedder_module, "_loaded", {})
    monkeypatch.setattr(embedder_module, "_NVIDIA_NODES", ())
    monkeypatch.setattr(openvino, "convert_model", refuse)
    got = create_embedder("all-MiniLM-L6-v2", "auto", batch_size=7)
    assert got.backend == "sentence-transformers" and got.batch_size == 7 and calls == [1]
    assert "OpenVINO cannot convert this model (unsupported operation (test))" in caplog.text
    assert "deepkb embeds with sentence-transformers (torch) instead" in caplog.text
    remembered = list((tmp_path / "cache" / "embedders").glob("*.rejected.json"))
    assert len(remembered) == 1 and json.loads(remembered[0].read_text())["precision"] == "f32"

    caplog.clear()
    embedder_module._loaded.clear()  # as a new process would start
    again = create_embedder("all-MiniLM-L6-v2", "auto", batch_size=7)
    assert again.backend == "sentence-transformers" and calls == [1]  # not converted again
    assert caplog.text == ""  # not announced again
    assert "cannot convert" in again.fallback_reason
    with KnowledgeBase.open(tmp_path / "kb", check_model=False) as kb:  # status tells the engine really used
        status = kb.status()
    assert status["embedding_backend"] == "sentence-transformers"
    assert "cannot convert" in status["embedding_fallback"]
    with pytest.raises(EmbeddingModelError, match="cannot convert"):  # asked for by name, it is an error
        create_embedder("all-MiniLM-L6-v2", "openvino", batch_size=7)
    assert Settings().embedding_backend == "auto"
