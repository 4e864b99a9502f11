"""Ingest at the hardware's speed: each file read once, the next files read while the engine embeds, the embedding
precision recorded per knowledge base, the GPU used where torch can, and progress a user sees without a terminal."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepkb import doctor
from deepkb.config import Settings
from deepkb.errors import EmbeddingModelError
from deepkb.kb import KnowledgeBase

from conftest import write

_opened: list[tuple[str, str, float]] = []  # (path, thread name, time) of every file opened while recording
_recording = threading.Event()


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _recording.is_set() and isinstance(args[0], str):
        _opened.append((args[0], threading.current_thread().name, time.perf_counter()))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one records only while a test asks it to


def _corpus(root: Path, files: int = 6) -> Path:
    for i in range(files):
        paragraphs = "\n\n".join(
            f"Section {j} of manual {i}: the {j}th option sets topic {i * 7 + j}." for j in range(5)
        )
        write(root / f"manual{i}.md", f"# Manual {i}\n\n{paragraphs}\n")
    return root


def _opens_under(root: Path) -> list[tuple[str, str, float]]:
    return [o for o in _opened if o[0].startswith(str(root))]


@pytest.fixture
def recording():
    _opened.clear()
    _recording.set()
    yield _opened
    _recording.clear()


def test_each_new_or_changed_file_is_read_once(kb, tmp_path, recording):
    docs = _corpus(tmp_path / "docs")
    recording.clear()  # the test's own writes
    kb.ingest([docs])
    first = _opens_under(docs)
    assert sorted(Path(p).name for p, _, _ in first) == [f"manual{i}.md" for i in range(6)]
    recording.clear()
    (docs / "manual2.md").write_text("# Manual 2\n\nRewritten: a different text about kites.\n")
    (docs / "manual3.md").rename(docs / "renamed3.md")
    recording.clear()
    kb.ingest([docs])
    assert sorted(Path(p).name for p, _, _ in _opens_under(docs)) == ["manual2.md", "renamed3.md"]


def test_the_next_files_are_read_while_the_engine_embeds(kb_home, embedder, tmp_path, recording, monkeypatch):
    """One file per transaction: the reader is ahead, so later files are opened before the first embed ends."""
    docs = _corpus(tmp_path / "docs")
    recording.clear()
    embeds: list[tuple[float, float]] = []
    real = embedder.embed

    def slow_embed(texts):
        started = time.perf_counter()
        time.sleep(0.3)  # an engine busy for a while: the reader must not wait for it
        vectors = real(texts)
        embeds.append((started, time.perf_counter()))
        return vectors

    monkeypatch.setattr(embedder, "embed", slow_embed)
    with KnowledgeBase.open(kb_home, embedder=embedder, chunks_per_commit=1) as kb:
        report = kb.ingest([docs])
    assert report.added == 6
    opens = _opens_under(docs)
    assert {thread for _, thread, _ in opens} == {"deepkb-ingest-reader"}
    first_embed_ends = embeds[0][1]
    assert sum(t < first_embed_ends for _, _, t in opens) >= 3, (opens, embeds)
    assert report.stage_seconds["read_wait"] < report.stage_seconds["embed"]


def test_precision_is_recorded_and_a_kb_is_never_queried_in_another(kb_home, tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPKB_EMBEDDING_PRECISION")  # conftest pins f32; here the setting is "auto", its default
    docs = _corpus(tmp_path / "docs", files=2)
    with KnowledgeBase.open(kb_home, embedding_precision="bf16") as kb:
        kb.ingest([docs])
        assert kb.embedder.precision == "bf16"
        assert kb.store.get_meta("embedding_precision") == "bf16"
        assert kb.status()["embedding_precision"] == "bf16"
    with KnowledgeBase.open(kb_home) as kb:  # auto: the KB's own precision, not the default
        assert kb.precision == "bf16" and kb.status()["embedding_precision"] == "bf16"
        assert kb.search("topic 3", k=1)[0].path.endswith(".md")
    with pytest.raises(EmbeddingModelError, match=r"embedded in bf16 precision, not f32.*reindex --reembed"):
        KnowledgeBase.open(kb_home, embedding_precision="f32")

    findings = {f.check: f for f in doctor.run(Settings.load(kb_home))}
    engine = findings["embedding engine"]
    assert engine.status == "ok" and engine.data["kb_precision"] == "bf16" and "embedded in bf16" in engine.detail
    wrong = {f.check: f for f in doctor.run(Settings.load(kb_home, embedding_precision="f32"))}["embedding engine"]
    assert wrong.status == "fail" and "reindex --reembed --embedding-precision f32" in wrong.fix


def test_a_kb_built_before_precisions_were_recorded_stays_f32(kb, tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPKB_EMBEDDING_PRECISION")  # "auto": the default would be bf16 on this CPU
    kb.ingest([_corpus(tmp_path / "docs", files=1)])
    kb.store.db.execute("DELETE FROM meta WHERE key = 'embedding_precision'")
    kb.close()
    with KnowledgeBase.open(kb.home) as again:
        assert again.precision == "f32"


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path):
    from deepkb.cli import main

    docs = _corpus(tmp_path / "docs", files=3)
    result = CliRunner().invoke(main, ["ingest", str(docs)])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("ingest:")]
    assert lines[0] == "ingest: 3 of 3 files to read"
    assert lines[-1].startswith("ingest: 3 of 3 files · ") and "chunks embedded" in lines[-1]
    assert " tokens/s" in lines[-1]


def test_progress_says_the_time_left_every_few_seconds():
    from deepkb.cli import kb as kb_cli

    now = [0.0]
    progress = kb_cli._IngestProgress(live=False, every=10.0, clock=lambda: now[0])
    with kb_cli.err_console.capture() as captured:
        progress.scanned(4, 4)
        progress.to_read({"a": 100, "b": 100, "c": 100, "d": 100})
        now[0] = 4.0
        progress.embedded(20)
        progress.tokens_embedded(4000)
        progress.file_done("a", 20)  # 4 s in: no line yet
        now[0] = 10.0
        progress.file_done("b", 0)  # 10 s in: a line, half the bytes read, so about 10 s left
        now[0] = 12.0
        progress.file_done("c", 0)
    lines = captured.get().splitlines()
    assert lines == [
        "ingest: 4 of 4 files to read",
        "ingest: 2 of 4 files · 20 chunks embedded · 400 tokens/s · about 10 s left",
    ]


def test_a_gpu_with_a_cpu_only_torch_keeps_the_cpu_engine(tmp_path, monkeypatch):
    import deepkb.embedders as embedders

    node = tmp_path / "nvidia0"
    node.touch()
    monkeypatch.setattr(embedders, "_NVIDIA_NODES", (str(node),))
    monkeypatch.setattr(embedders, "torch_cuda", lambda: None)
    assert embedders.gpu_present() and embedders.pick_backend() == "openvino"
    note = doctor._gpu_note("cpu")
    assert "torch was built without CUDA" in note and "install a CUDA build of torch" in note


def test_a_gpu_with_a_cuda_torch_embeds_there(tmp_path, monkeypatch):
    import importlib.util

    torch = pytest.importorskip("torch", reason="no torch in this venv (make test-py310)")

    import deepkb.embedders as embedders
    from deepkb.embedders.sentence_transformers import default_device

    fake = tmp_path / "site" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "version.py").write_text("__version__ = '2.5.0+cu124'\ncuda: Optional[str] = '12.4'\n")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *a: importlib.util.spec_from_file_location("torch", fake / "__init__.py")
        if name == "torch" else real_find_spec(name, *a),
    )  # fmt: skip
    assert embedders.torch_cuda() == "12.4"
    node = tmp_path / "nvidia0"
    node.touch()
    monkeypatch.setattr(embedders, "_NVIDIA_NODES", (str(node),))
    assert embedders.pick_backend() == "sentence-transformers"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == "cuda"
    assert doctor._gpu_note("cuda:0").startswith("embedding runs on the NVIDIA GPU (cuda:0, torch CUDA 12.4)")
