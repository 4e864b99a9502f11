"""Search: hybrid finds what either side alone misses; results carry their exact source location."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepkb.cli import main
from deepkb.errors import UsageError
from deepkb.kb import KnowledgeBase
from deepkb.retrieval.passages import JOIN_CHUNKS, join_neighbours
from deepkb.retrieval.search import MAX_TERMS, Hit, fts_query, fts_terms, fuse, fuse_convex
from deepkb.types import MAX_GAP

from conftest import SAMPLE_DATA, write


@pytest.fixture(scope="module")
def sample_kb(tmp_path_factory, embedder):
    """data/ ingested once for the read-only tests of this module."""
    base = tmp_path_factory.mktemp("search")
    shutil.copytree(SAMPLE_DATA, base / "docs")
    with KnowledgeBase.open(base / "kb", embedder=embedder) as kb:
        kb.ingest([base / "docs"])
        yield kb


def _names(hits) -> list[str]:
    return [Path(h.path).name for h in hits]


def test_exact_rare_term_missed_by_dense_is_found_by_hybrid(sample_kb):
    query = "LS-31"
    assert "office-lab-safety.html" not in _names(sample_kb.search(query, k=3, mode="dense"))
    assert _names(sample_kb.search(query, k=1, mode="keyword")) == ["office-lab-safety.html"]
    hybrid = sample_kb.search(query, k=3, mode="hybrid")
    assert "office-lab-safety.html" in _names(hybrid)
    assert "LS-31" in next(h.text for h in hybrid if h.path.endswith("office-lab-safety.html"))


def test_paraphrase_missed_by_keyword_is_found_by_hybrid(kb, tmp_path):
    docs = tmp_path / "docs"
    write(docs / "access.md", "# Access rules\n\nStaff must replace their login credentials every ninety days.\n")
    write(docs / "kitchen.md", "# Kitchen\n\nThe soup simmers for two hours with onions and thyme.\n")
    write(docs / "garden.md", "# Garden\n\nTomatoes need full sun and deep watering twice a week.\n")
    kb.ingest([docs])
    query = "how often should I change my password"
    assert "access.md" not in _names(kb.search(query, k=3, mode="keyword"))
    assert _names(kb.search(query, k=1, mode="dense")) == ["access.md"]
    assert _names(kb.search(query, k=1, mode="hybrid")) == ["access.md"]


def test_hits_point_to_the_page_and_lines_that_hold_them(sample_kb):
    pdf_hit = next(h for h in sample_kb.search("backup.retention_days", k=5) if h.page is not None)
    assert pdf_hit.path.endswith("backup-retention-policy.pdf") and pdf_hit.page == 3
    md_hit = sample_kb.search("NWR-4417 key vault unreachable", k=1, mode="keyword")[0]
    source = Path(md_hit.path).read_text().split("\n")[md_hit.line_start - 1 : md_hit.line_end]
    assert "NWR-4417" in "\n".join(source) and md_hit.heading


def test_search_sees_changes_made_by_another_writer(kb, tmp_path, embedder):
    docs = tmp_path / "docs"
    write(docs / "old.md", "# Birds\n\nThe heron nests near the river.\n")
    kb.ingest([docs])
    reader = KnowledgeBase.open(kb.home, embedder=embedder)
    assert reader.search("quokka sanctuary", k=1, mode="dense")  # opens the index
    write(docs / "new.md", "# Wildlife\n\nThe quokka sanctuary opens next spring on Rottnest.\n")
    kb.ingest([docs])
    for mode in ("dense", "keyword", "hybrid"):
        assert _names(reader.search("quokka sanctuary", k=1, mode=mode)) == ["new.md"], mode
    reader.close()


def test_keyword_query_is_safe_and_drops_stopwords(sample_kb):
    hostile = 'what is the "key" AND rotation OR NOT (x* NEAR/2 y) -- ; DROP'
    assert fts_query(hostile) == '"key" OR "rotation" OR "x" OR "near" OR "2" OR "y" OR "drop"'
    assert sample_kb.search(hostile, k=3, mode="keyword")  # FTS5 syntax in a query is just words
    assert fts_query("the of and") is not None
    assert fts_query("?!") is None
    assert len(fts_terms(" ".join(f"word{i}" for i in range(100)))) == MAX_TERMS


def _budget_kb(kb, tmp_path):
    """40 one-chunk notes: "zephyr" in 2, "report" in 10 (common, yet under half: its BM25 weight is not nil)."""
    docs = tmp_path / "docs"
    write(docs / "x.md", "# Note x\n\nThe zephyr report said the report on the report was late.\n")
    write(docs / "y.md", "# Note y\n\nA zephyr, then a zephyr again.\n")
    for i in range(9):
        write(docs / f"r{i}.md", f"# Note r{i}\n\nThe quarterly report number {i} is filed.\n")
    for i in range(29):
        write(docs / f"o{i}.md", f"# Note o{i}\n\nThe garden bed number {i} holds tomatoes.\n")
    kb.ingest([docs])
    return {kb.store.chunk_ids(kb.store.document(str(docs / name)).id)[0]: name for name in ("x.md", "y.md")}


def test_keyword_search_over_budget_ranks_chunks_with_a_rare_term_exactly(kb, tmp_path):
    zephyr = _budget_kb(kb, tmp_path)
    terms = fts_terms("zephyr report")
    exact = kb.store.keyword_search(terms, 100, budget=1000)
    assert len(exact) == 11  # every chunk that holds either word
    budgeted = kb.store.keyword_search(terms, 100, budget=5)  # "report" (10 chunks) is over it, "zephyr" is not
    # Only the chunks holding the rare word are ranked, with the same full BM25 (report's share included) and order:
    # x.md's one zephyr and three reports beat y.md's two zephyrs, which the rare word alone would rank first.
    assert budgeted == [(chunk_id, score) for chunk_id, score in exact if chunk_id in zephyr]
    assert [zephyr[chunk_id] for chunk_id, _ in budgeted] == ["x.md", "y.md"]
    assert kb.store.keyword_search(fts_terms("zephyr"), 100, budget=5)[0][0] != budgeted[0][0]


def test_keyword_search_under_budget_is_the_plain_bm25_ranking(kb, tmp_path):
    _budget_kb(kb, tmp_path)
    terms = fts_terms("zephyr report tomatoes")
    plain = kb.store.db.execute(
        "SELECT rowid, -bm25(chunks_fts, 1.0, 1.0) AS score FROM chunks_fts WHERE chunks_fts MATCH ? "
        "ORDER BY score DESC LIMIT 100",
        [" OR ".join(terms)],
    ).fetchall()
    assert len(plain) == 40
    ranked = kb.store.keyword_search(terms, 100)
    assert dict(ranked) == dict(plain)  # the same chunks with the same scores (ties may come in either order)
    assert [score for _, score in ranked] == sorted(dict(plain).values(), reverse=True)
    assert len(kb.store.keyword_search(terms, 100, budget=20)) == 11  # tomatoes (29 chunks) over it: left out


def test_bad_search_arguments_are_usage_errors(sample_kb):
    with pytest.raises(UsageError):
        sample_kb.search("x", mode="fuzzy")
    with pytest.raises(UsageError):
        sample_kb.search("   ")


def test_empty_kb_returns_nothing(kb):
    assert kb.search("anything at all") == []


def test_convex_fusion_weighs_normalized_scores_and_keeps_their_gaps():
    dense = [(1, 0.80), (2, 0.50), (3, 0.49), (6, 0.40)]  # chunk 1 is far ahead of the dense list
    keyword = [(4, 30.0), (2, 3.0), (5, 2.9), (7, 2.0)]  # chunk 4 far ahead of the keyword list
    fused = fuse_convex(dense, keyword, 0.5)
    assert [c for c, _ in fused][:3] == [1, 4, 2] and dict(fused)[4] == pytest.approx(0.5)
    assert [c for c, _ in fuse([dense, keyword], 20)][0] == 2  # rank fusion lifts the mediocre chunk seen twice
    assert [c for c, _ in fuse_convex(dense, keyword, 1.0)][:3] == [1, 2, 3]  # all dense
    assert [c for c, _ in fuse_convex(dense, keyword, 0.0)][:3] == [4, 2, 5]  # all keyword
    assert fuse_convex([(7, 0.3)], [], 0.5) == [(7, 0.5)]  # a lone hit counts as its side's best
    assert fuse_convex([], [], 0.5) == []


def test_asking_for_more_hits_never_reorders_the_first_ones(sample_kb, embedder, monkeypatch):
    """`deepkb search -k 5` and `-k 50` agree on their first five: a deeper list (k x 3 candidates past
    `candidates`) does not move the range each side's scores are normalized over."""
    monkeypatch.setenv("DEEPKB_CANDIDATES", "4")  # so that k = 5 already searches deeper than `candidates`
    with KnowledgeBase.open(sample_kb.home, embedder=embedder) as kb:
        for question in ("How long are backups kept?", "who rotates the keys", "vpn access for contractors"):
            first = [h.chunk_id for h in kb.search(question, k=2)]
            assert [h.chunk_id for h in kb.search(question, k=20)][:2] == first, question
            assert [h.chunk_id for h in kb.search(question, k=8)][:2] == first, question


def test_hybrid_fusion_is_a_setting(sample_kb, embedder, monkeypatch):
    convex = sample_kb.search("How long are backups kept?", k=5)
    monkeypatch.setenv("DEEPKB_FUSION", "rrf")
    with KnowledgeBase.open(sample_kb.home, embedder=embedder) as kb:
        assert kb.settings.fusion == "rrf"
        ranked = kb.search("How long are backups kept?", k=5)
    assert ranked and {h.chunk_id for h in ranked} & {h.chunk_id for h in convex}
    assert max(h.score for h in ranked) < 0.1 < max(h.score for h in convex)  # 2 / (20 + 1) at most, against 0..1
    monkeypatch.setenv("DEEPKB_FUSION", "ranks")
    with pytest.raises(UsageError, match="valid: convex, rrf"):
        KnowledgeBase.open(sample_kb.home, embedder=embedder)


def test_consecutive_chunks_found_together_are_one_passage_with_its_text_once(kb, tmp_path):
    """A procedure that runs over several chunks, all of them hits, is one passage at most JOIN_CHUNKS chunks long:
    its text is the file's lines from its first line to its last, each once (the lines a chunk repeats from the one
    before it are not repeated), and the places after it go to other passages."""
    docs = tmp_path / "docs"
    steps = [
        f"Step {n}. Stop the vaultkeeper service on node {n}, copy the sealed archive number {n} to the spare "
        f"disk, check its checksum against the manifest, and write down the time the copy of archive {n} ended."
        for n in range(1, 25)
    ]
    write(docs / "restore.md", "# Restoring the vault\n\n" + "\n\n".join(steps) + "\n")
    write(docs / "notes.md", "# Notes\n\nThe vaultkeeper service was renamed in March.\n")
    kb.ingest([docs])
    chunks = kb.store.document_chunks(kb.store.documents_under([str((docs / "restore.md").resolve())]).popitem()[1].id)
    assert len(chunks) >= 4  # the procedure really runs over several chunks
    hits = kb.search("vaultkeeper", k=10, mode="keyword")
    lines = (docs / "restore.md").read_text().split("\n")
    joined = [h for h in hits if len(h.chunk_ids) > 1]
    assert joined and all(len(h.chunk_ids) <= JOIN_CHUNKS for h in hits)
    for hit in joined:
        source = [line for line in lines[hit.line_start - 1 : hit.line_end] if line.strip()]
        assert [line for line in hit.text.split("\n") if line.strip()] == source
        assert hit.chunk_id in hit.chunk_ids
        best = kb.store.chunks_by_ids([hit.chunk_id])[hit.chunk_id]  # where the best chunk starts in the passage
        assert hit.text[hit.best_start :].startswith(best.text.split("\n")[0]) and hit.text.count(best.text) == 1
    seen = [c for h in hits for c in (h.chunk_ids or (h.chunk_id,))]
    assert len(seen) == len(set(seen))  # no chunk in two passages
    assert {c.id for c in chunks} <= set(seen) and "notes.md" in _names(hits)
    assert len(hits) < len(chunks) + 1  # fewer results than chunks matched: the procedure is a few passages
    # `deepkb search` shows a passage from its best chunk on, marked as cut
    shown = next(h for h in hits if h.best_start)
    printed = CliRunner().invoke(main, ["--kb", str(kb.home), "search", "vaultkeeper", "--mode", "keyword", "-k", "10"])
    assert printed.exit_code == 0 and "   … " + " ".join(shown.text[shown.best_start :].split()[:6]) in printed.stdout


def _hit(chunk_id: int, page: int | None, start: int, end: int, text: str, heading: str = "A > B") -> Hit:
    return Hit(chunk_id, "/docs/manual.pdf", page, start, end, heading, 1.0 / chunk_id, text)


def test_a_passage_never_joins_chunks_across_a_page_or_a_long_gap_and_keeps_the_best_rank():
    places = {1: (7, 10), 2: (7, 11), 3: (7, 12), 4: (7, 13), 5: (8, 14), 6: (7, 30), 7: (7, 31)}
    hits = [
        _hit(2, 3, 10, 20, "shared\ntwo"),  # starts with the line (10) the chunk before it ends with: its overlap
        _hit(1, 3, 1, 10, "one\nshared", "A > C"),  # the chunk before the best one: joined, the shared line once
        _hit(3, 4, 1, 9, "three"),  # the next chunk, on the next page: a passage of its own
        _hit(4, 4, 9, 15, "four"),
        _hit(5, 4, 16, 18, "five"),  # another document
        _hit(6, 4, 100, 101, "six"),
        _hit(7, 4, 101 + MAX_GAP + 1, 400, "seven"),  # after more lines without text than a chunk may hold
    ]
    out = join_neighbours(hits, places)
    assert [h.chunk_ids or (h.chunk_id,) for h in out] == [(1, 2), (3, 4), (5,), (6,), (7,)]
    first = out[0]
    assert (first.chunk_id, first.score, first.line_start, first.line_end) == (2, 0.5, 1, 20)
    assert first.text == "one\nshared\ntwo" and first.heading == "A"
    assert first.text[first.best_start :] == "shared\ntwo"  # where the best chunk (2) starts: `search` shows it first
    assert out[1].text == "three\n\nfour" and out[1].best_start == 0  # its best chunk (3) comes first


MANUALS = Path(__file__).resolve().parent / "data" / "manuals"


def test_a_sections_first_chunk_goes_first_only_over_chunks_that_continue_it(kb, tmp_path):
    """Of the hits under one heading path, the chunk that starts it goes before those that continue it (what a section
    is about before its details). A chunk that spans several entries of a list stands under the list's section alone:
    git-stash's chunk holding `branch`, `clear` and `drop` is "COMMANDS", and the section's first chunk, the `push`
    entry, went above it for "delete one saved stash entry" although it scored lower. It goes first only over what
    continues it: later in the document, with no chunk of another heading between them."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "git-stash.txt").write_bytes(gzip.decompress((MANUALS / "git-stash.txt.gz").read_bytes()))
    body = " ".join(f"Retention rule {i} keeps nightly copies of the ledger for audits." for i in range(60))
    tail = "Snapshots of the warehouse database are pruned after ninety days by the retention job."
    page = f"<h1>Policy</h1>\n<p>How Acme keeps data.</p>\n<h2>Retention</h2>\n<p>{body}</p>\n<p>{tail}</p>\n<h2>Other</h2>\n<p>Misc.</p>"
    (docs / "policy.html").write_text(page)
    kb.ingest([docs])
    hits = kb.search("delete one saved stash entry", k=5)
    drop = next(n for n, h in enumerate(hits) if "drop [-q|--quiet] [<stash>]::" in h.text)
    assert not [h for h in hits[:drop] if h.text.startswith("COMMANDS")], [(h.line_start, h.score) for h in hits]
    hits = kb.search("how long are warehouse database snapshots kept", k=3)
    assert "Retention\n\nRetention rule 0 keeps" in hits[0].text and Path(hits[0].path).name == "policy.html"
    assert any(tail in h.text for h in hits[1:]) and hits[0].score < max(h.score for h in hits[1:])
