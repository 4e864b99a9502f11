"""Scope: search, ask, chat and the server look only in some folders, files and kinds of file (--in, --type).

The scope applies inside retrieval: a document outside the global top candidates is still found when it is the
best match in scope (dropping hits after the top k would lose it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepkb.answer.stream import AskOptions
from deepkb.cli import main
from deepkb.conversation.session import ChatSession
from deepkb.errors import UsageError
from deepkb.kb import KnowledgeBase
from deepkb.scope import make_scope, parse_types
from deepkb.storage import vectors as vector_index
from deepkb.tui.commands import SLASH_COMMANDS, SlashError, parse_scope

from conftest import write

CROWD = 12  # documents about the query in the big folder, more than the candidates each side ranks


@pytest.fixture
def crowded(tmp_path, kb_home, embedder) -> tuple[KnowledgeBase, Path]:
    """A folder of many documents that match the query strongly, and a small folder whose one match is weaker."""
    docs = tmp_path / "docs"
    for i in range(CROWD):
        write(docs / "big" / f"budget-{i}.md", f"# Budget {i}\n\nThe travel budget for the travel team is {i} thousand "
              f"euros; the travel budget covers travel costs and the budget is reviewed.\n")  # fmt: skip
    write(docs / "small" / "notes.md", "# Notes\n\nAsk Pia before booking; the travel budget is in the big folder.\n")
    write(docs / "small" / "other.txt", "Lunch menu\n\nSoup, bread and a budget-friendly salad on Fridays.\n")
    write(docs / "small" / "tool.py", "# travel budget helper\ndef budget(travel):\n    return travel * 2\n")
    kb = KnowledgeBase.open(kb_home, embedder=embedder, candidates=4)
    kb.ingest([docs])
    yield kb, docs
    kb.close()


def _names(hits) -> list[str]:
    return [Path(h.path).name for h in hits]


@pytest.mark.parametrize("mode", ["keyword", "dense", "hybrid"])
def test_a_scope_finds_its_best_match_though_it_is_outside_the_global_top(crowded, mode):
    kb, docs = crowded
    query = "travel budget"
    assert "notes.md" not in _names(kb.search(query, k=4, mode=mode))  # the crowd fills the global candidates
    hits = kb.search(query, k=3, mode=mode, scope=make_scope([docs / "small"]))
    assert hits and all(Path(h.path).parent == docs / "small" for h in hits)
    assert "notes.md" in _names(hits)


def test_dense_scope_through_the_hnsw_filter_as_well_as_the_exact_scan(crowded, monkeypatch):
    kb, docs = crowded
    scope = make_scope([docs / "small", docs / "big" / "budget-3.md"])
    exact = kb.search("travel budget", k=3, mode="dense", scope=scope)
    monkeypatch.setattr(vector_index, "EXACT_SCAN", 0)  # a large scope: hnswlib's filter walks the graph instead
    filtered = kb.search("travel budget", k=3, mode="dense", scope=scope)
    assert _names(exact) == _names(filtered)
    assert _names(exact)[0] == "budget-3.md" and {*_names(exact)} <= {"budget-3.md", "notes.md", "other.txt", "tool.py"}


def test_type_limits_to_kinds_and_extensions(crowded):
    kb, docs = crowded
    md = kb.search("budget", k=20, mode="keyword", scope=make_scope(types="md"))
    assert md and all(h.path.endswith(".md") for h in md)
    text = kb.search("budget", k=5, mode="hybrid", scope=make_scope([docs / "small"], "txt,py"))
    assert sorted(_names(text)) == ["other.txt", "tool.py"]
    py = kb.search("budget", k=5, mode="keyword", scope=make_scope(types=".PY"))
    assert _names(py) == ["tool.py"]


def test_the_same_text_in_and_out_of_scope_is_found_in_scope(kb, tmp_path):
    text = "# Shared\n\nThe quarterly offsite is in Lisbon this spring.\n"
    write(tmp_path / "a" / "copy.md", text)
    write(tmp_path / "b" / "copy.md", text)
    kb.ingest([tmp_path / "a", tmp_path / "b"])
    for mode in ("dense", "keyword"):
        hits = kb.search("offsite Lisbon", k=5, mode=mode, scope=make_scope([tmp_path / "b"]))
        assert [Path(h.path).parent.name for h in hits] == ["b"]


def test_a_scope_that_holds_nothing_says_so(crowded, tmp_path):
    kb, docs = crowded
    with pytest.raises(UsageError, match="no ingested document lies in .*elsewhere"):
        kb.search("budget", scope=make_scope([tmp_path / "elsewhere"]))
    with pytest.raises(UsageError, match="type epub"):
        kb.search("budget", scope=make_scope(types="epub"))
    with pytest.raises(UsageError, match="not a file type"):
        parse_types("pdf,m d")


def test_cli_search_and_ask_take_in_and_type(crowded):
    kb, docs = crowded
    runner = CliRunner()
    out = runner.invoke(
        main, ["--kb", str(kb.home), "search", "travel budget", "--in", str(docs / "small"), "--type", "md", "--json"]
    )
    assert out.exit_code == 0, out.output
    assert _names_of(json.loads(out.output)["hits"]) == ["notes.md"]
    nothing = runner.invoke(main, ["--kb", str(kb.home), "search", "budget", "--type", "pdf"])
    assert nothing.exit_code != 0 and "no ingested document lies type pdf" in nothing.output
    # ask stops before loading a model when its scope is empty
    asked = runner.invoke(main, ["--kb", str(kb.home), "ask", "budget?", "--in", str(docs / "nowhere"), "--no-save"])
    assert asked.exit_code != 0 and "no ingested document lies in" in asked.output


def _names_of(hits_json) -> list[str]:
    return [Path(h["path"]).name for h in hits_json]


def test_chat_scope_retrieves_only_in_scope(crowded):
    kb, docs = crowded
    scope = parse_scope("in", str(docs / "small"), None)
    scope = parse_scope("type", "md", scope)
    session = ChatSession(kb, None, options=AskOptions(k=3, scope=scope), save=False)
    result = session.ask("travel budget")
    assert {Path(c.hit.path).name for c in result.citations} | {Path(h.path).name for h in result.also_retrieved} == {
        "notes.md"
    }
    assert parse_scope("in", "", scope).paths == () and parse_scope("type", "", scope).types == ()
    assert "in" in SLASH_COMMANDS and "type" in SLASH_COMMANDS
    with pytest.raises(SlashError, match="/in .*no such file"):
        parse_scope("in", str(docs / "missing"), None)


def test_server_search_takes_in_and_type(crowded, tiny_model):
    pytest.importorskip("fastapi")
    from deepkb.server.settings import ServerSettings

    from server_harness import running

    kb, docs = crowded
    settings = ServerSettings(port=0, kb=kb.home, model=str(tiny_model), context_size=2048, max_tokens=16)
    with running(settings, kb.embedder) as srv:
        scoped = srv.http.post("/v1/search", json={"query": "travel budget", "k": 3, "in": [str(docs / "small")],
                                                   "type": ["md"]})  # fmt: skip
        as_text = srv.http.post("/v1/search", json={"query": "budget", "type": "txt,py", "in": [str(docs)]})
        relative = srv.http.post("/v1/search", json={"query": "budget", "in": ["small"]})
        empty = srv.http.post("/v1/search", json={"query": "budget", "type": "epub"})
    assert scoped.status_code == 200 and _names_of(scoped.json()["hits"]) == ["notes.md"]
    assert sorted(_names_of(as_text.json()["hits"])) == ["other.txt", "tool.py"]
    assert relative.status_code == 400 and "absolute" in relative.text
    assert empty.status_code == 400 and "no ingested document" in empty.text


def test_a_scope_sees_documents_ingested_after_it_was_first_used(crowded):
    kb, docs = crowded
    scope = make_scope([docs / "small"])
    assert "late.md" not in _names(kb.search("glacier expedition", k=5, mode="dense", scope=scope))
    write(docs / "small" / "late.md", "# Late\n\nThe glacier expedition leaves in March.\n")
    kb.ingest([docs])
    assert _names(kb.search("glacier expedition", k=1, mode="dense", scope=scope)) == ["late.md"]
