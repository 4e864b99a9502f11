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


def test_the_larger_model_is_known_by_name_and_says_how_to_get_it(tmp_path, monkeypatch):
    """all-mpnet-base-v2 (not bundled) is found in the Hugging Face cache by its name, its weights checked against the
    published file; when it is absent the error says how to fetch it, not to install the small model's package."""
    from deepkb.embedders.base import resolve_model

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(EmbeddingModelError, match="huggingface-cli download sentence-transformers/all-mpnet-base-v2"):
        resolve_model("all-mpnet-base-v2")
    snapshot = tmp_path / "hub" / "models--sentence-transformers--all-mpnet-base-v2" / "snapshots" / "e8c3b32"
    snapshot.mkdir(parents=True)
    (snapshot / "modules.json").write_text("[]")
    (snapshot / "model.safetensors").write_bytes(b"not the published weights")
    with pytest.raises(EmbeddingModelError, match="does not match the published all-mpnet-base-v2 weights"):
        resolve_model("all-mpnet-base-v2")
    assert resolve_model("all-mpnet-base-v2", verify=False) == (snapshot, embedders.MODELS["all-mpnet-base-v2"])


def test_a_missing_model_is_said_once_not_blamed_on_openvino(tmp_path, monkeypatch, caplog):
    """A model that is not there is missing for either engine: one error, no "sentence-transformers instead" notice
    (that fallback, and its memory, are for models OpenVINO cannot convert)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(EmbeddingModelError, match="not found offline"):
        embedders.create_embedder("all-mpnet-base-v2", "auto")
    assert not [r for r in caplog.records if "instead" in r.getMessage()]
    assert embedders.openvino_rejection("all-mpnet-base-v2") is None


def test_a_knowledge_base_built_from_a_folder_of_a_known_model_opens_again_with_that_folder(tmp_path, embedder):
    """config.toml names the model's folder (`~/models/all-MiniLM-L6-v2`); the knowledge base records the model's own
    name, and reopening it with the same config.toml must not call that another model."""
    import sqlite3

    from click.testing import CliRunner

    from deepkb.cli import main
    from deepkb.embedders.base import resolve_model

    folder = tmp_path / "models" / "all-MiniLM-L6-v2"
    folder.parent.mkdir()
    folder.symlink_to(resolve_model("all-MiniLM-L6-v2")[0], target_is_directory=True)
    home = tmp_path / "kb"
    home.mkdir()
    (home / "config.toml").write_text(f'embedding_model = "{folder}"\n')
    (tmp_path / "notes.md").write_text("# Backups\n\nBackups are kept for thirty days.\n")
    runner = CliRunner()
    assert runner.invoke(main, ["--kb", str(home), "ingest", str(tmp_path / "notes.md")]).exit_code == 0
    again = runner.invoke(main, ["--kb", str(home), "search", "how long are backups kept", "--json"])
    assert again.exit_code == 0, again.output
    assert "thirty days" in again.stdout
    # A knowledge base an older deepkb made records the folder as given: it opens with the folder and with the name.
    with sqlite3.connect(home / "kb.sqlite") as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'embedding_model'", [str(folder)])
    for model in (str(folder), "all-MiniLM-L6-v2"):
        (home / "config.toml").write_text(f'embedding_model = "{model}"\n')
        opened = runner.invoke(main, ["--kb", str(home), "search", "how long are backups kept", "--json"])
        assert opened.exit_code == 0 and "thirty days" in opened.stdout, (model, opened.output)
