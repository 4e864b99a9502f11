"""Incremental sync: unchanged files cost nothing, edits re-embed only new text, renames and deletes are honoured."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from deepkb.kb import KnowledgeBase

from conftest import write


def _state(kb: KnowledgeBase) -> list[tuple]:
    rows = kb.store.db.execute(
        "SELECT d.path, c.ord, c.text, c.page, c.line_start, c.line_end FROM chunks c JOIN documents d ON d.id = c.doc_id "
        "ORDER BY d.path, c.ord"
    )
    return [tuple(r) for r in rows]


def test_first_ingest_then_unchanged_rerun_embeds_nothing(kb, sample_copy, embedded):
    first = kb.ingest([sample_copy])
    assert first.added == 10 and first.chunks_embedded > 50 and not first.skipped
    assert len(embedded.texts) == first.chunks_embedded
    embedded.texts.clear()
    again = kb.ingest([sample_copy])
    assert (again.added, again.updated, again.unchanged, again.chunks_embedded) == (0, 0, 10, 0)
    assert embedded.texts == []


def test_touched_but_identical_file_is_not_rechunked(kb, sample_copy, embedded):
    kb.ingest([sample_copy])
    embedded.texts.clear()
    target = sample_copy / "security-policy.md"
    os.utime(target, ns=(1, 1))
    report = kb.ingest([sample_copy])
    assert report.unchanged == 10 and report.updated == 0 and embedded.texts == []
    assert kb.store.document(str(target)).mtime_ns == 1


def test_editing_one_paragraph_reembeds_only_that_chunk(kb, sample_copy, embedded):
    kb.ingest([sample_copy])
    embedded.texts.clear()
    target = sample_copy / "security-policy.md"
    text = target.read_text()
    old = "Personal credentials must be replaced every ninety days."
    assert old in text
    target.write_text(text.replace(old, "Personal credentials must be replaced every sixty days."))
    report = kb.ingest([sample_copy])
    assert report.updated == 1 and report.chunks_embedded == 1
    assert len(embedded.texts) == 1 and "every sixty days" in embedded.texts[0]
    hits = kb.search("credentials replaced every sixty days", k=1, mode="keyword")
    assert hits[0].path == str(target)


def test_deleted_file_is_removed_from_catalog_and_search(kb, sample_copy):
    kb.ingest([sample_copy])
    (sample_copy / "release-notes.txt").unlink()
    report = kb.ingest([sample_copy])
    assert report.removed == 1
    assert kb.store.document(str(sample_copy / "release-notes.txt")) is None
    assert all("release-notes" not in h.path for h in kb.search("Kestrel-9", k=5))
    assert kb.store.db.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'kestrel'").fetchone()[0] == 0


def test_rename_and_move_cost_no_embedding(kb, sample_copy, embedded):
    kb.ingest([sample_copy])
    before = kb.status()["chunks"]
    embedded.texts.clear()
    (sample_copy / "archive").mkdir()
    shutil.move(sample_copy / "release-notes.txt", sample_copy / "archive" / "fleet-release-notes.txt")
    report = kb.ingest([sample_copy])
    assert (report.renamed, report.added, report.removed, report.chunks_embedded) == (1, 0, 0, 0)
    assert embedded.texts == []
    hit = kb.search("Kestrel-9", k=1, mode="keyword")[0]
    assert hit.path == str(sample_copy / "archive" / "fleet-release-notes.txt")
    assert kb.status()["chunks"] == before


def test_move_to_another_ingested_folder_is_a_rename(kb, tmp_path, embedded):
    notes, papers = tmp_path / "notes", tmp_path / "papers"
    write(notes / "plan.md", "# Plan\n\nThe zeppelin launch happens on Tuesday at dawn.\n")
    write(papers / "other.md", "# Other\n\nUnrelated text about gardening.\n")
    kb.ingest([notes])
    kb.ingest([papers])
    embedded.texts.clear()
    shutil.move(notes / "plan.md", papers / "plan.md")
    report = kb.ingest([papers])
    assert report.renamed == 1 and embedded.texts == []
    assert kb.search("zeppelin", k=1, mode="keyword")[0].path == str(papers / "plan.md")


def test_copy_of_a_file_reuses_its_vectors(kb, sample_copy, embedded):
    kb.ingest([sample_copy])
    embedded.texts.clear()
    shutil.copy(sample_copy / "security-policy.md", sample_copy / "security-policy-copy.md")
    report = kb.ingest([sample_copy])
    assert report.added == 1 and report.chunks_embedded == 0 and report.chunks_reused > 5


def test_bad_files_are_reported_and_the_run_goes_on(kb, tmp_path):
    docs = tmp_path / "docs"
    write(docs / "good.md", "# Good\n\nA perfectly fine document about lighthouses.\n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    (docs / "blob.bin").write_bytes(bytes(range(256)) * 8)
    (docs / "empty.txt").write_bytes(b"")
    (docs / "latin1.txt").write_bytes("Les crêpes de la façade sont très appréciées.\n".encode("latin-1") * 3)
    report = kb.ingest([docs])
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert set(reasons) == {"broken.pdf", "blob.bin", "empty.txt"}
    assert "corrupt PDF" in reasons["broken.pdf"] and "empty" in reasons["empty.txt"]
    assert report.added == 2
    assert kb.search("crêpes façade", k=1, mode="keyword")[0].path.endswith("latin1.txt")


def test_a_file_that_turns_bad_keeps_its_indexed_version(kb, tmp_path):
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\nThe albatross migrates in spring.\n")
    kb.ingest([docs])
    (docs / "a.md").write_bytes(b"\x00\x01\x02" * 100)
    report = kb.ingest([docs])
    assert report.skipped and report.removed == 0
    assert kb.search("albatross", k=1, mode="keyword")[0].path == str(docs / "a.md")


def test_hidden_entries_and_deepkbignore_are_skipped(kb, tmp_path):
    docs = tmp_path / "docs"
    write(docs / "keep.md", "# Keep\n\nvisible walrus\n")
    write(docs / ".secret.md", "# Hidden\n\nhidden walrus\n")
    write(docs / ".git" / "notes.md", "# Git\n\ngit walrus\n")
    write(docs / "drafts" / "draft.md", "# Draft\n\ndraft walrus\n")
    write(docs / "build.log", "log walrus\n")
    write(docs / "keep.md~", "backup walrus\n")
    write(docs / ".deepkbignore", "drafts/\n*.log\n")
    report = kb.ingest([docs])
    assert report.added == 1
    assert [Path(h.path).name for h in kb.search("walrus", k=10, mode="keyword")] == ["keep.md"]


def test_kb_folder_inside_an_ingested_folder_is_skipped(tmp_path, embedder):
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\ncontent about otters\n")
    kb = KnowledgeBase.open(docs / "kbhome", embedder=embedder)
    report = kb.ingest([docs])
    assert report.added == 1 and not report.skipped
    kb.close()


def test_remove_forgets_a_document(kb, sample_copy):
    kb.ingest([sample_copy])
    removed = kb.remove([sample_copy / "release-notes.txt"])
    assert removed == [str(sample_copy / "release-notes.txt")]
    assert kb.search("Kestrel-9", k=3, mode="keyword") == [] or all(
        "release-notes" not in h.path for h in kb.search("Kestrel-9", k=3, mode="keyword")
    )
    assert kb.status()["documents"] == 9


def test_reingest_equals_fresh_ingest_after_edits(kb, sample_copy, tmp_path, embedder):
    kb.ingest([sample_copy])
    write(sample_copy / "new.md", "# New\n\nA new document about narwhals.\n")
    (sample_copy / "all-hands-2024-09.txt").unlink()
    target = sample_copy / "onboarding-guide.md"
    target.write_text(target.read_text().replace("buddy", "mentor"))
    kb.ingest([sample_copy])
    fresh = KnowledgeBase.open(tmp_path / "fresh", embedder=embedder)
    fresh.ingest([sample_copy])
    assert _state(kb) == _state(fresh)
    fresh.close()


def test_documents_chunked_by_an_older_pipeline_are_rechunked_reusing_vectors(kb, sample_copy, embedded):
    kb.ingest([sample_copy])
    kb.store.db.execute("UPDATE documents SET pipeline = 1")
    embedded.texts.clear()
    report = kb.ingest([sample_copy])
    assert report.updated == 10 and report.chunks_embedded == 0 and embedded.texts == []
    assert kb.ingest([sample_copy]).unchanged == 10


def test_a_bad_file_is_not_read_again_until_it_changes(kb, tmp_path, monkeypatch):
    import deepkb.ingest.reader as ingest_module  # where the reader thread calls load()

    docs = tmp_path / "docs"
    write(docs / "good.md", "# Good\n\nfine text about kites\n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not a pdf at all")
    (docs / "movie.mp4").write_bytes(b"\x00" * 4096)
    assert {Path(s.path).name for s in kb.ingest([docs]).skipped} == {"broken.pdf", "movie.mp4"}
    loads = []
    monkeypatch.setattr(ingest_module, "load", lambda path, data, *rest: loads.append(path.name))
    again = kb.ingest([docs])
    assert {Path(s.path).name for s in again.skipped} == {"broken.pdf", "movie.mp4"}
    assert "corrupt PDF" in next(s.reason for s in again.skipped if s.path.endswith("broken.pdf"))
    assert loads == []  # reported from memory, not re-read
    monkeypatch.undo()
    write(docs / "broken.pdf", "now it is text pretending to be a pdf")
    real_load = ingest_module.load
    monkeypatch.setattr(
        ingest_module, "load", lambda path, data, *rest: loads.append(path.name) or real_load(path, data, *rest)
    )
    third = kb.ingest([docs])
    assert loads == ["broken.pdf"]  # changed since it failed: read again, not answered from the cache
    assert [Path(s.path).name for s in third.skipped if s.path.endswith(".pdf")] == ["broken.pdf"]


def test_renaming_a_folder_records_every_file_as_a_rename(kb, tmp_path, embedded):
    docs = tmp_path / "docs"
    for i in range(5):
        write(docs / "old" / f"n{i}.md", f"# Note {i}\n\nThe heron count on day {i} was {i * 7}.\n")
    write(docs / "old" / "copy.md", "# Note 0\n\nThe heron count on day 0 was 0.\n")  # same content as n0.md
    kb.ingest([docs])
    embedded.texts.clear()
    (docs / "old").rename(docs / "new")
    report = kb.ingest([docs])
    assert (report.renamed, report.added, report.removed, report.chunks_embedded) == (6, 0, 0, 0)
    assert embedded.texts == []
    paths = {Path(p) for p in kb.store.documents_under([str(docs)])}
    assert paths == {docs / "new" / f"n{i}.md" for i in range(5)} | {docs / "new" / "copy.md"}


def test_ignore_rules_apply_below_their_own_folder_only(kb, tmp_path):
    docs = tmp_path / "docs"
    write(docs / "notes" / "a.md", "# A\n\nnotes walrus\n")
    write(docs / "notes" / ".deepkbignore", "*.md\n")
    write(docs / "notes-archive" / "b.md", "# B\n\narchived walrus\n")  # a sibling whose name starts like it
    write(docs / "notes" / "deeper" / "c.md", "# C\n\ndeeper walrus\n")
    report = kb.ingest([docs])
    assert report.added == 1
    assert [Path(h.path).name for h in kb.search("walrus", k=10, mode="keyword")] == ["b.md"]


def test_an_unreadable_folder_keeps_its_documents(kb, tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    write(docs / "open" / "a.md", "# A\n\nThe pelican nests on the pier.\n")
    write(docs / "locked" / "b.md", "# B\n\nThe cormorant dries its wings.\n")
    kb.ingest([docs])
    real_scandir = os.scandir

    def scandir(path):  # what a folder without read permission does (the tests may run as root)
        if str(path) == str(docs / "locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = kb.ingest([docs])
    assert report.removed == 0
    assert [(Path(s.path).name, s.reason) for s in report.skipped] == [
        ("locked", "unreadable folder (Permission denied)")
    ]
    assert kb.search("cormorant", k=1, mode="keyword")[0].path == str(docs / "locked" / "b.md")
    monkeypatch.undo()
    (docs / "locked" / "b.md").unlink()
    assert kb.ingest([docs]).removed == 1


def test_the_report_says_where_the_time_went(kb, sample_copy):
    report = kb.ingest([sample_copy])
    stages = report.stage_seconds
    assert set(stages) == {"scan", "read_chunk", "read_wait", "embed", "store", "index"}
    assert all(v >= 0 for v in stages.values()) and stages["embed"] > 0
    # read_chunk is the reader thread's time, alongside the others; the caller's own stages add up to at most the run
    assert sum(v for k, v in stages.items() if k != "read_chunk") <= report.seconds + 0.01
    assert stages["read_chunk"] > 0
    assert "embed" not in kb.ingest([sample_copy]).stage_seconds  # nothing to embed the second time


def test_a_pdf_page_the_parser_fails_on_is_a_warning_and_the_rest_is_indexed(kb, tmp_path):
    from test_loaders import BROKEN, _pdf

    docs = tmp_path / "docs"
    docs.mkdir()
    pages = ["Pump\nThe pump primes in ten seconds", BROKEN, "Tank\nDrain the tank yearly"]
    (docs / "manual.pdf").write_bytes(_pdf(pages))
    report = kb.ingest([docs])
    assert report.added == 1 and report.skipped == []
    assert [(Path(w.path).name, w.reason.split(" (")[0]) for w in report.warnings] == [
        ("manual.pdf", "page 2 could not be read")
    ]
    assert report.to_json()["warnings"][0]["reason"].endswith("the other pages are indexed")
    assert {h.page for h in kb.search("pump tank", k=5, mode="keyword")} == {1, 3}
