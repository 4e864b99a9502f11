"""A fresh machine: the default engine on this CPU is OpenVINO in f32, its vectors are the reference ones, and a
first run (which converts the model) prints deepkb's own lines only, no third-party bars or warnings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepkb.config import Settings
from deepkb.embedders import create_embedder, default_precision, pick_backend

REPO = Path(__file__).resolve().parent.parent
REFERENCE = Path(__file__).resolve().parent / "reference_vectors.json"
# What the libraries print when they are not kept quiet (seen on this machine before deepkb silenced them).
NOISE = re.compile(
    r"Loading weights|it/s\]|%\||Warning|warn|tokenizers|huggingface|TracerWarning|openvino|UserWarning",
    re.IGNORECASE,
)


def _run(*args: str, kb: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEEPKB_CACHE": str(cache), "COLUMNS": "120"}
    env.pop("DEEPKB_TEST_CACHE", None)
    env.pop("DEEPKB_EMBEDDING_PRECISION", None)  # a fresh machine: the default precision
    return subprocess.run(
        [sys.executable, "-m", "deepkb", "--kb", str(kb), *args],
        capture_output=True, text=True, timeout=600, env=env, cwd=REPO,
    )  # fmt: skip


def test_the_default_engine_gives_the_reference_vectors():
    """all-MiniLM-L6-v2's vectors, computed once by sentence-transformers on torch (fp32): whatever the engine,
    CPU or library versions, a knowledge base built on one machine searches the same on another."""
    reference = json.loads(REFERENCE.read_text())
    embedder = create_embedder(Settings().embedding_model, Settings().embedding_backend)
    if pick_backend() == "openvino":
        assert embedder.backend == "openvino" and embedder.precision == "f32"
    got = embedder.embed(reference["texts"])
    want = np.asarray(reference["vectors"], dtype=np.float32)
    cosines = np.sum(got * want, axis=1)
    assert float(cosines.min()) > 0.99999, cosines


def test_the_default_precision_of_a_new_knowledge_base_keeps_the_reference_vectors():
    """A new knowledge base is built in bf16 where the CPU has it natively: its vectors stay within cosine 0.9999 of
    torch's fp32 reference (measured: above 0.99997), so retrieval is unchanged (BENCHMARKS.md)."""
    reference = json.loads(REFERENCE.read_text())
    embedder = create_embedder(Settings().embedding_model, Settings().embedding_backend, default_precision())
    got = embedder.embed(reference["texts"])
    want = np.asarray(reference["vectors"], dtype=np.float32)
    assert float(np.sum(got * want, axis=1).min()) > 0.9999


@pytest.mark.skipif(pick_backend() != "openvino", reason="OpenVINO is the default only on CPU-only machines")
def test_a_first_run_converts_once_quietly_and_status_tells_the_engine(tmp_path):
    pytest.importorskip("sentence_transformers", reason="converting the model needs torch (make test-py310 has none)")
    cache, kb = tmp_path / "cache", tmp_path / "kb"
    ingest = _run("ingest", str(REPO / "data"), kb=kb, cache=cache)
    assert ingest.returncode == 0, ingest.stderr
    assert not NOISE.search(ingest.stdout + ingest.stderr), ingest.stdout + ingest.stderr
    assert len(list((cache / "embedders").glob("all-MiniLM-L6-v2-openvino-*/model.xml"))) == 1
    assert not list((cache / "embedders").glob("*.rejected.json"))

    status = _run("status", "--json", kb=kb, cache=cache)
    info = json.loads(status.stdout)
    assert (info["embedding_backend"], info["embedding_precision"], info["embedding_fallback"]) == (
        "openvino",
        default_precision(),  # bf16 on a CPU with native bf16 (this one), else f32
        None,
    )

    search = _run("search", "How long are backups kept?", "--json", kb=kb, cache=cache)
    assert search.returncode == 0 and not NOISE.search(search.stderr), search.stderr
    assert json.loads(search.stdout)["hits"][0]["path"].endswith("backup-retention-policy.pdf")
