"""`deepkb doctor`: each check finds the damage it is for, says the fix, and --repair rebuilds from SQLite."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from deepkb.cli import main
from deepkb.config import Settings
from deepkb.doctor import run
from deepkb.kb import KnowledgeBase
from deepkb.storage.vectors import INDEX_FILE

CHECKS = ["database", "keyword index", "vector index", "embedding engine", "answer model", "gpu offload", "memory",
          "disk", "ocr"]  # fmt: skip


@pytest.fixture
def home(kb, sample_copy, embedder):
    kb.ingest([sample_copy])
    kb.close()
    return kb.home


def _by_check(findings) -> dict:
    return {f.check: f for f in findings}


def test_a_healthy_kb_with_a_model(home, tiny_model):
    out = CliRunner().invoke(main, ["--kb", str(home), "doctor", "--json", "--model", str(tiny_model)])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["ok"] and [f["check"] for f in report["findings"]] == CHECKS
    found = {f["check"]: f for f in report["findings"]}
    for name in ("database", "keyword index", "vector index", "embedding engine", "answer model"):
        assert found[name]["status"] == "ok", found[name]
    engine = found["embedding engine"]["data"]
    assert engine["backend"] in ("openvino", "sentence-transformers") and engine["cosine_to_stored_min"] > 0.999
    model = found["answer model"]["data"]
    assert model["architecture"] == "qwen2" and model["layers"] > 0
    memory = found["memory"]["data"]
    assert memory["kv_cache"] > 0 and memory["needed"] == memory["model"] + memory["kv_cache"] + memory["embedder"]
    assert found["gpu offload"]["data"]["supported"] in (True, False)
    text = CliRunner().invoke(main, ["--kb", str(home), "doctor", "--model", str(tiny_model)])
    assert text.exit_code == 0 and "ok database: integrity_check ok" in " ".join(text.output.split())


def test_damaged_database_is_a_failure_with_the_restore_hint(home):
    with open(home / "kb.sqlite", "r+b") as fh:
        fh.write(b"\0" * 64)
    out = CliRunner().invoke(main, ["--kb", str(home), "doctor", "--json"])
    assert out.exit_code == 1
    found = {f["check"]: f for f in json.loads(out.output)["findings"]}
    assert found["database"]["status"] == "fail" and "deepkb restore" in found["database"]["fix"]
    assert found["keyword index"]["status"] == found["vector index"]["status"] == "skip"


def test_damaged_keyword_index_is_found_and_rebuilt(home, embedder):
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        chunk_id, text, heading = kb.store.db.execute(
            "SELECT id, text, heading FROM chunks WHERE text LIKE '%LS-31%' LIMIT 1"
        ).fetchone()
        kb.store.db.execute(  # the FTS5 index forgets a chunk its content table still holds
            "INSERT INTO chunks_fts(chunks_fts, rowid, text, heading) VALUES ('delete', ?, ?, ?)",
            [chunk_id, text, heading],
        )
    settings = Settings.load(home)
    assert _by_check(run(settings))["keyword index"].status == "fail"
    repaired = _by_check(run(settings, repair=True))["keyword index"]
    assert repaired.status == "ok" and repaired.repaired
    assert _by_check(run(settings))["keyword index"].status == "ok"
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        assert chunk_id in [h.chunk_id for h in kb.search("LS-31", k=20, mode="keyword")]


def test_missing_vector_index_is_rebuilt_and_saved(home, embedder):
    (home / INDEX_FILE).unlink()
    settings = Settings.load(home)
    found = _by_check(run(settings))["vector index"]
    assert found.status == "warn" and "missing" in found.detail and "--repair" in found.fix
    assert _by_check(run(settings, repair=True))["vector index"].repaired
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        assert kb.index.state == "loaded" and kb.index.live == kb.store.all_vector_ids()


def test_vectors_the_engine_does_not_reproduce(home, embedder):
    with KnowledgeBase.open(home, embedder=embedder) as kb:
        rows = kb.store.db.execute("SELECT id FROM vectors").fetchall()
        noise = np.random.default_rng(0).normal(size=(len(rows), embedder.dim)).astype(np.float32)
        with kb.store.write():
            kb.store.db.conn.executemany(
                "UPDATE vectors SET vector = ? WHERE id = ?", [(v.tobytes(), r[0]) for v, r in zip(noise, rows)]
            )
    found = _by_check(run(Settings.load(home)))["embedding engine"]
    assert found.status == "fail" and "reindex --reembed" in found.fix
