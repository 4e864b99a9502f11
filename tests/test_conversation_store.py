"""Saved conversations as a user manages them: created on the first save, listed, found by a short id, renamed,
exported with the sources cited then, deleted; through the store and through `deepkb chats`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deepkb.answer.citations import Citation
from deepkb.cli import main
from deepkb.cli.chats import chats
from deepkb.conversation.store import DB_FILE, ConversationStore, Turn
from deepkb.errors import UsageError
from deepkb.retrieval.search import Hit


def _hit() -> Hit:
    return Hit(chunk_id=4, path="/docs/backup-retention-policy.pdf", page=3, line_start=12, line_end=18,
               heading="Backups", text="Backups are kept for 35 days.", score=0.9)  # fmt: skip


def test_conversations_are_saved_listed_renamed_exported_and_deleted(kb_home):
    kb_home.mkdir(parents=True)  # as KnowledgeBase.open leaves it
    store = ConversationStore(kb_home)
    assert store.list() == [] and not (kb_home / DB_FILE).exists()  # nothing written until a first save
    first = store.create("How long are backups kept, and who approves a change to that period?" * 3)
    store.add_turn(first, Turn("How long are backups kept?", "35 days [1].", citations=[Citation(1, _hit())]))
    store.add_turn(first, Turn("and who approves a change?", "", cancelled=True))
    second = store.create("Where is the fire assembly point?")
    assert store.last_id() == second
    listed = {c.id: c for c in store.list()}
    assert listed[first].turns == 2 and len(listed[first].title) <= 80  # titles are kept short

    assert store.resolve(first[:6]) == first  # any unique prefix names it
    with pytest.raises(UsageError, match="no conversation zzzz"):
        store.resolve("zzzz")
    store.rename(first, "Backups")
    saved = store.get(first)
    assert saved.title == "Backups" and [t.question for t in saved.turns][0] == "How long are backups kept?"
    assert saved.turns[0].citations[0].hit.page == 3  # the citation as it was when the answer was given
    markdown = store.export_markdown(first)
    assert markdown.startswith("# Backups") and "## How long are backups kept?" in markdown
    assert "- [1] /docs/backup-retention-policy.pdf p.3 L12-18" in markdown and "_(cancelled)_" in markdown

    listing = CliRunner().invoke(main, ["--kb", str(kb_home), "chats", "--json"])
    assert {c["id"] for c in json.loads(listing.output)} == {first, second}
    assert chats.commands.keys() >= {"show", "rm", "rename"}
    removed = CliRunner().invoke(main, ["--kb", str(kb_home), "chats", "rm", second[:8]])
    assert removed.exit_code == 0, removed.output
    assert [c.id for c in store.list()] == [first]
