"""Saved conversations: one SQLite file, conversations.sqlite in the KB home, created on the first save.

A turn keeps its question, answer, reasoning, model, timings and, for each citation, the chunk id plus the
path, page, lines and text as they were when the answer was given: a document re-ingested since does not change
what a saved answer cited. The file is apart from kb.sqlite, so deleting the knowledge base's index never loses
conversations, and migrations of either never meet.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from deepkb import __version__
from deepkb.answer.citations import Citation
from deepkb.answer.prompt import cite_label
from deepkb.answer.stream import AskResult
from deepkb.errors import UsageError
from deepkb.paths import CONVERSATIONS_FILE, conversations_db
from deepkb.retrieval.search import Hit
from deepkb.storage import migrations

DB_FILE = CONVERSATIONS_FILE
TITLE_CHARS = 80
ID_HEX = 12  # shown shortened; any unique prefix of 4+ characters names a conversation

SCHEMA = [
    """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE turns (
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        n INTEGER NOT NULL,
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        reasoning TEXT NOT NULL DEFAULT '',
        model TEXT,
        abstained INTEGER NOT NULL DEFAULT 0,
        fallback INTEGER NOT NULL DEFAULT 0,
        cancelled INTEGER NOT NULL DEFAULT 0,
        notice TEXT,
        timings TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL,
        PRIMARY KEY (conversation_id, n)
    );
    CREATE TABLE citations (
        conversation_id TEXT NOT NULL,
        turn INTEGER NOT NULL,
        n INTEGER NOT NULL,
        chunk_id INTEGER NOT NULL,
        path TEXT NOT NULL,
        page INTEGER,
        line_start INTEGER,
        line_end INTEGER,
        heading TEXT,
        text TEXT NOT NULL,
        PRIMARY KEY (conversation_id, turn, n),
        FOREIGN KEY (conversation_id, turn) REFERENCES turns(conversation_id, n) ON DELETE CASCADE
    );
    CREATE INDEX conversations_updated ON conversations(updated)
    """,
    # deepkb.answer.grounding: each answer sentence and whether its cited passages back it, as JSON
    "ALTER TABLE turns ADD COLUMN support TEXT NOT NULL DEFAULT '[]'",
]


@dataclass
class Turn:
    """One question and its answer, as given then."""

    question: str
    answer: str
    reasoning: str = ""
    citations: list[Citation] = field(default_factory=list)
    model: str | None = None
    abstained: bool = False
    fallback: bool = False
    cancelled: bool = False
    notice: str | None = None
    timings: dict = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    support: list[dict] = field(default_factory=list)  # AskResult.support as JSON objects

    @classmethod
    def from_result(cls, result: AskResult) -> Turn:
        return cls(
            result.question, result.answer, result.thinking, list(result.citations), result.model,
            result.abstained, result.fallback, result.cancelled, result.notice, result.timings.to_json(),
            support=[s.to_json() for s in result.support],
        )  # fmt: skip

    @property
    def answered(self) -> bool:
        """A model's answer worth carrying into the next prompt (not an abstention, passages or an empty cut)."""
        return bool(self.answer) and not self.abstained and not self.fallback

    def to_json(self) -> dict:
        return {
            "question": self.question,
            "answer": self.answer,
            "reasoning": self.reasoning,
            "citations": [c.to_json() for c in self.citations],
            "model": self.model,
            "abstained": self.abstained,
            "fallback": self.fallback,
            "cancelled": self.cancelled,
            "notice": self.notice,
            "timings": self.timings,
            "created": self.created,
            "support": self.support,
        }


@dataclass
class ConversationInfo:
    """A line of `deepkb chats`."""

    id: str
    title: str
    turns: int
    created: float
    updated: float

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("id", "title", "turns", "created", "updated")}


@dataclass
class Conversation:
    """A saved conversation with all its turns, oldest first."""

    id: str
    title: str
    created: float
    updated: float
    turns: list[Turn]

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "created": self.created,
            "updated": self.updated,
            "turns": [t.to_json() for t in self.turns],
        }


def title_for(question: str) -> str:
    """The first question, on one line, cut at a word."""
    flat = " ".join(question.split())
    return flat if len(flat) <= TITLE_CHARS else flat[:TITLE_CHARS].rsplit(" ", 1)[0] + " …"


class ConversationStore:
    """Conversations in <home>/conversations.sqlite; safe to share between threads (a connection per call)."""

    def __init__(self, home: Path) -> None:
        self.path = conversations_db(home)
        self._ready = False
        self._init_lock = threading.Lock()

    @contextmanager
    def _db(self, create: bool = False) -> Iterator[sqlite3.Connection | None]:
        """A connection in one transaction; None when nothing was saved yet and `create` is false."""
        if not create and not self.path.exists():
            yield None
            return
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.execute("PRAGMA foreign_keys=ON")
            self._migrate(db)
            db.execute("BEGIN IMMEDIATE" if create else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _migrate(self, db: sqlite3.Connection) -> None:
        with self._init_lock:
            if self._ready:
                return
            database = sqlite_utils.Database(db)
            migrations.refuse_newer(database, SCHEMA, self.path, __version__)  # before anything changes the file
            db.execute("PRAGMA journal_mode=WAL")
            migrations.migrate(database, SCHEMA)  # the catalog's mechanism: one step per transaction, user_version
            self._ready = True

    # writing ------------------------------------------------------------------------------------------------
    def create(self, title: str) -> str:
        """A new, empty conversation; returns its id."""
        conversation_id = uuid.uuid4().hex[:ID_HEX]
        now = time.time()
        with self._db(create=True) as db:
            db.execute(
                "INSERT INTO conversations (id, title, created, updated) VALUES (?, ?, ?, ?)",
                [conversation_id, title_for(title), now, now],
            )
        return conversation_id

    def add_turn(self, conversation_id: str, turn: Turn) -> int:
        """Append a turn (its citations copied as they are now); returns its number, from 1."""
        with self._db(create=True) as db:
            if not db.execute("SELECT 1 FROM conversations WHERE id = ?", [conversation_id]).fetchone():
                raise UsageError(f"no conversation {conversation_id}; list them with `deepkb chats`.")
            n = db.execute("SELECT COALESCE(MAX(n), 0) + 1 FROM turns WHERE conversation_id = ?", [conversation_id])
            n = n.fetchone()[0]
            db.execute(
                "INSERT INTO turns (conversation_id, n, question, answer, reasoning, model, abstained, fallback, "
                "cancelled, notice, timings, created, support) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [conversation_id, n, turn.question, turn.answer, turn.reasoning, turn.model, int(turn.abstained),
                 int(turn.fallback), int(turn.cancelled), turn.notice, json.dumps(turn.timings), turn.created,
                 json.dumps(turn.support)],
            )  # fmt: skip
            db.executemany(
                "INSERT INTO citations (conversation_id, turn, n, chunk_id, path, page, line_start, line_end, "
                "heading, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    [conversation_id, n, c.n, c.hit.chunk_id, c.hit.path, c.hit.page, c.hit.line_start,
                     c.hit.line_end, c.hit.heading, c.hit.text]
                    for c in turn.citations
                ],
            )  # fmt: skip
            # The turn was made before a new conversation's row: never let `updated` fall before `created`.
            db.execute(
                "UPDATE conversations SET updated = max(?, created) WHERE id = ?", [turn.created, conversation_id]
            )
        return n

    def rename(self, conversation_id: str, title: str) -> None:
        """Give a conversation another title."""
        full = self.resolve(conversation_id)
        with self._db(create=True) as db:
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", [title_for(title), full])

    def delete(self, conversation_id: str) -> str:
        """Delete a conversation and its turns; returns the full id."""
        full = self.resolve(conversation_id)
        with self._db(create=True) as db:
            db.execute("DELETE FROM conversations WHERE id = ?", [full])
        return full

    # reading ------------------------------------------------------------------------------------------------
    def resolve(self, prefix: str) -> str:
        """The full id of the one conversation whose id starts with `prefix`."""
        prefix = prefix.strip().lower()
        if not prefix:
            raise UsageError("give a conversation id; list them with `deepkb chats`.")
        with self._db() as db:
            rows = [] if db is None else db.execute(
                "SELECT id FROM conversations WHERE id LIKE ? ESCAPE '\\' ORDER BY updated DESC",
                [prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"],
            ).fetchall()  # fmt: skip
        if not rows:
            raise UsageError(f"no conversation {prefix}; list them with `deepkb chats`.")
        if len(rows) > 1:
            raise UsageError(f"{prefix} names {len(rows)} conversations; give more of the id.")
        return rows[0][0]

    def list(self, limit: int | None = None) -> list[ConversationInfo]:
        """Saved conversations, the most recently continued first."""
        with self._db() as db:
            if db is None:
                return []
            rows = db.execute(
                "SELECT c.id, c.title, COUNT(t.n), c.created, c.updated FROM conversations c "
                "LEFT JOIN turns t ON t.conversation_id = c.id GROUP BY c.id ORDER BY c.updated DESC, c.rowid DESC "
                "LIMIT ?",
                [-1 if limit is None else limit],
            ).fetchall()
        return [ConversationInfo(*row) for row in rows]

    def last_id(self) -> str | None:
        """The most recently continued conversation (what `deepkb ask -c` continues), if any."""
        latest = self.list(limit=1)
        return latest[0].id if latest else None

    def get(self, conversation_id: str) -> Conversation:
        """A conversation by id (or unique prefix) with its turns and what they cited then."""
        full = self.resolve(conversation_id)
        with self._db() as db:
            title, created, updated = db.execute(
                "SELECT title, created, updated FROM conversations WHERE id = ?", [full]
            ).fetchone()
            turns = db.execute(
                "SELECT n, question, answer, reasoning, model, abstained, fallback, cancelled, notice, timings, created, "
                "support FROM turns WHERE conversation_id = ? ORDER BY n",
                [full],
            ).fetchall()
            cited: dict[int, list[Citation]] = {}
            for turn, n, chunk_id, path, page, start, end, heading, text in db.execute(
                "SELECT turn, n, chunk_id, path, page, line_start, line_end, heading, text FROM citations "
                "WHERE conversation_id = ? ORDER BY turn, n",
                [full],
            ):
                cited.setdefault(turn, []).append(
                    Citation(n, Hit(chunk_id, path, page, start, end, heading, 0.0, text))
                )
        return Conversation(
            full,
            title,
            created,
            updated,
            [
                Turn(
                    q,
                    a,
                    r or "",
                    cited.get(n, []),
                    m,
                    bool(ab),
                    bool(fb),
                    bool(cc),
                    notice,
                    json.loads(t),
                    when,
                    json.loads(sup),
                )
                for n, q, a, r, m, ab, fb, cc, notice, t, when, sup in turns
            ],
        )

    def export_markdown(self, conversation_id: str) -> str:
        """The conversation as Markdown: each question, its answer and the sources it cited then."""
        conversation = self.get(conversation_id)
        lines = [f"# {conversation.title}", ""]
        for turn in conversation.turns:
            lines += [f"## {turn.question}", "", turn.answer or "_(no answer)_", ""]
            if turn.cancelled:
                lines += ["_(cancelled)_", ""]
            if turn.citations:
                lines += [f"- [{c.n}] {cite_label(c.hit)}" for c in turn.citations] + [""]
        return "\n".join(lines)
