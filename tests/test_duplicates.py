"""Duplicate content: identical chunk texts share one vector, and thousands of them never hide another document."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepkb.cli import main
from deepkb.kb import KnowledgeBase
from deepkb.storage.catalog import MIGRATIONS, Store
from deepkb.storage.vectors import INDEX_FILE, SIDECAR_FILE

from conftest import write

QUOKKA = "Quokkas are small marsupials living on Rottnest Island.\n"


@pytest.fixture(scope="module")
def flooded(tmp_path_factory, embedder):
    """A 5 MB file of one word repeated on one line (over 6,000 identical chunks) beside one normal note."""
    docs = tmp_path_factory.mktemp("flood")
    (docs / "flood.txt").write_text("cat " * 1_310_000 + "\n")
    write(docs / "quokka.txt", QUOKKA)
    kb = KnowledgeBase.open(tmp_path_factory.mktemp("kb"), embedder=embedder)
    report = kb.ingest([docs])
    yield kb, report, docs
    kb.close()


def test_thousands_of_identical_chunks_are_one_vector(flooded):
    kb, report, docs = flooded
    flood = kb.store.document(str(docs / "flood.txt"))
    n = len(kb.store.chunk_ids(flood.id))
    assert n >= 6000
    distinct = kb.store.db.execute("SELECT count(DISTINCT vector_id) FROM chunks WHERE doc_id = ?", [flood.id])
    assert distinct.fetchone()[0] <= 2  # the repeated chunk, and the shorter last one
    assert report.chunks_embedded <= 3
    assert len(kb.index.live) == len(kb.store.all_vector_ids()) <= 3


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
def test_the_normal_document_is_found_first_in_every_mode(flooded, mode):
    kb, _, _ = flooded
    hits = kb.search("Quokkas Rottnest Island", k=5, mode=mode)
    assert hits[0].path.endswith("quokka.txt")
    assert sum(h.path.endswith("flood.txt") for h in hits) <= 2  # its copies are one hit, not a flood


def test_a_query_for_the_repeated_word_returns_one_hit_per_distinct_text(flooded):
    kb, _, _ = flooded
    for mode in ("dense", "keyword", "hybrid"):
        hits = kb.search("cat cat cat", k=10, mode=mode)
        texts = [(h.path, h.text) for h in hits]
        assert len(texts) == len(set(texts)), mode


def test_removing_one_of_two_identical_chunks_keeps_the_others_vector(kb, tmp_path):
    docs = tmp_path / "docs"
    text = "# Shared\n\nThe kestrel hovers over the motorway verge at dawn.\n"
    write(docs / "a.md", text)
    write(docs / "b.md", text)
    kb.ingest([docs])
    assert len(kb.store.all_vector_ids()) == 1
    (docs / "a.md").unlink()
    kb.ingest([docs])
    assert len(kb.index.live) == len(kb.store.all_vector_ids()) == 1
    hits = kb.search("kestrel hovering at dawn", k=1, mode="dense")
    assert hits and hits[0].path.endswith("b.md")
    write(docs / "b.md", "# Other\n\nNothing about birds any more.\n")  # the last user of the vector is gone
    kb.ingest([docs])
    assert len(kb.index.live) == len(kb.store.all_vector_ids()) == 1
    assert kb.store.vectors_for_hashes([kb.store.db.execute("SELECT hash FROM chunks").fetchone()[0]])


def test_a_schema_3_database_is_migrated_and_its_index_rebuilt(kb, tmp_path, embedder, monkeypatch):
    """A knowledge base written before vectors were shared (schema 3, one vector per chunk, the HNSW file keyed by
    chunk id) opens with one vector per distinct text and an index rebuilt from them; search still works."""
    docs = tmp_path / "docs"
    write(docs / "a.md", "# Birds\n\nThe kestrel hovers over the motorway verge at dawn.\n")
    write(docs / "b.md", "# Birds\n\nThe kestrel hovers over the motorway verge at dawn.\n")
    write(docs / "c.md", "# Tea\n\nGreen tea is steeped at eighty degrees for two minutes.\n")
    kb.ingest([docs])
    home = kb.home
    rows = kb.store.db.execute(
        "SELECT c.doc_id, c.ord, c.text, c.heading, c.page, c.line_start, c.line_end, c.n_tokens, c.hash, v.vector "
        "FROM chunks c JOIN vectors v ON v.id = c.vector_id ORDER BY c.id"
    ).fetchall()
    documents = kb.store.db.execute("SELECT * FROM documents").fetchall()
    meta = kb.store.db.execute("SELECT * FROM meta").fetchall()
    kb.close()
    for name in ("kb.sqlite", "kb.sqlite-wal", "kb.sqlite-shm"):
        (home / name).unlink(missing_ok=True)
    with monkeypatch.context() as patch:  # deepkb's own migrations 1-3: the schema it had before vectors were shared
        patch.setattr("deepkb.storage.catalog.MIGRATIONS", MIGRATIONS[:3])
        old = Store(home)
    assert old.db.execute("PRAGMA user_version").fetchone()[0] == 3
    with old.db.atomic():
        old.db.conn.executemany(f"INSERT INTO documents VALUES ({','.join('?' * len(documents[0]))})", documents)
        old.db.conn.executemany("INSERT INTO meta VALUES (?, ?)", meta)
        old.db.conn.executemany(
            "INSERT INTO chunks (doc_id, ord, text, heading, page, line_start, line_end, n_tokens, hash, vector) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    old.close()
    sidecar = (home / SIDECAR_FILE).read_text().replace('"keys": "vector-id", ', "")
    (home / SIDECAR_FILE).write_text(sidecar)  # an index file from before: labelled by chunk id
    assert (home / INDEX_FILE).exists()

    store = Store(home)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.db.execute("SELECT count(*) FROM chunks").fetchone()[0] == 3
    assert len(store.all_vector_ids()) == 2
    store.close()
    with KnowledgeBase.open(home, embedder=embedder) as again:
        assert again.index.state == "rebuilt" and again.index.live == again.store.all_vector_ids()
        assert again.search("steeping green tea", k=1, mode="dense")[0].path.endswith("c.md")
        assert again.search("steeping green tea", k=1, mode="keyword")[0].path.endswith("c.md")
        birds = again.search("kestrel at dawn", k=3, mode="hybrid")
        assert {birds[0].path.rsplit("/", 1)[1], *(p.path.rsplit("/", 1)[1] for p in birds[0].also_in)} == {
            "a.md",
            "b.md",
        }  # one passage in two files: one hit


MANUALS = Path(__file__).parent / "data" / "manuals"
CLEAN_QUESTIONS = ["interactive mode of git clean", "show what would be done without removing anything",
                   "remove untracked files from the working tree", "also remove ignored files"]  # fmt: skip


@pytest.fixture(scope="module")
def twins_kb(tmp_path_factory, embedder):
    """git-doc's git-clean page as it ships (.txt and .html), and a copy of the .txt in another folder."""
    docs = tmp_path_factory.mktemp("twins")
    (docs / "copy").mkdir()
    for name in ("git-clean.txt", "git-clean.html", "git-rebase.txt"):
        shutil.copy(MANUALS / name, docs / name)
    shutil.copy(MANUALS / "git-clean.txt", docs / "copy" / "git-clean.txt")
    base = KnowledgeBase.open(tmp_path_factory.mktemp("kb"), embedder=embedder)
    base.ingest([docs])
    yield base, docs
    base.close()


def place(path: str, docs: Path) -> str:
    return Path(path).relative_to(docs).as_posix()


def spans_overlap(a, b) -> bool:
    return a.line_start <= b.line_end and b.line_start <= a.line_end


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_a_page_as_txt_and_html_and_a_copied_file_are_one_result(twins_kb, mode):
    kb, docs = twins_kb
    for question in CLEAN_QUESTIONS:
        hits = kb.search(question, k=5, mode=mode)
        shown = [place(h.path, docs) for h in hits]
        top = hits[0]
        places = {place(top.path, docs), *(place(p.path, docs) for p in top.also_in)}
        assert places == {"git-clean.txt", "git-clean.html", "copy/git-clean.txt"}, (question, shown)
        txt = [h for h in hits if h.path.endswith("git-clean.txt")]  # the copy's lines are the original's
        shown_twice = [(a, b) for a in txt for b in txt if a.path < b.path and spans_overlap(a, b)]
        assert not shown_twice, (question, shown)
        assert len({h.text for h in hits}) == len(hits)


def test_also_in_is_shown_by_search_plain_and_json(twins_kb):
    kb, docs = twins_kb
    runner = CliRunner()
    args = ["--kb", str(kb.home), "search", "interactive mode of git clean", "-k", "3"]
    data = json.loads(runner.invoke(main, [*args, "--json"]).stdout)
    top = data["hits"][0]
    assert {(Path(p["path"]).parent.name, Path(p["path"]).name) for p in top["also_in"]} | {
        (Path(top["path"]).parent.name, Path(top["path"]).name)
    } == {(docs.name, "git-clean.txt"), (docs.name, "git-clean.html"), ("copy", "git-clean.txt")}
    assert all(set(p) == {"path", "page", "line_start", "line_end"} for p in top["also_in"])
    other = top["also_in"][0]
    assert other["line_start"] <= other["line_end"]
    plain = runner.invoke(main, args).stdout
    assert plain.count("also in ") >= 1 and f"L{other['line_start']}-{other['line_end']}" in plain


def test_two_versions_that_differ_in_a_figure_are_two_results(kb, tmp_path):
    """A lease template filled in twice states two different rents: neither may hide behind the other's also_in."""
    docs = tmp_path / "leases"
    clause = (
        "The tenant pays a monthly rent of {rent} euros on the first working day of each month into the account "
        "named in section 4. Late payment incurs a fee of {fee} euros after ten days."
    )
    write(docs / "flat-a.md", "# Lease\n\n" + clause.format(rent="1,200", fee="40") + "\n")
    write(docs / "flat-b.md", "# Lease\n\n" + clause.format(rent="1,450", fee="40") + "\n")
    kb.ingest([docs])
    hits = kb.search("monthly rent late payment fee", k=5)
    assert {Path(h.path).name for h in hits} == {"flat-a.md", "flat-b.md"}
    assert all(not h.also_in for h in hits)
