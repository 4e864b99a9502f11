"""A conversation: the one object the CLI, the TUI and the server answer through.

`ChatSession.send(question)` yields typed events (Retrieved, Delta, Notice, then exactly one Done), carries the
earlier turns into the prompt and into retrieval, and saves each turn. `cancel()` from any thread stops the
reply within one token; the partial answer is kept and marked cancelled.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from deepkb.answer.stream import (
    AskOptions,
    AskResult,
    Delta,
    Done,
    Event,
    Notice,
    ReplaceModel,
    Retrieved,
    answer_events,
)
from deepkb.conversation.follow_up import IN_CONVERSATION_DEPTH, Decision, decide, settle
from deepkb.conversation.store import Conversation, ConversationInfo, ConversationStore, Turn
from deepkb.llm import LLM
from deepkb.retrieval.search import Hit
from deepkb.scope import Scope

if TYPE_CHECKING:
    from deepkb.embedders.base import Embedder

__all__ = [
    "AskOptions",
    "AskResult",
    "ChatSession",
    "Conversation",
    "ConversationInfo",
    "ConversationStore",
    "Delta",
    "Done",
    "Event",
    "Notice",
    "Retrieved",
    "Searchable",
    "Decision",
    "Turn",
    "decide",
]


class Searchable(Protocol):
    """What a conversation needs of a knowledge base (deepkb.kb.KnowledgeBase is one): its folder, its search, and
    the embedder that search loaded (it scores the excerpts' sentences)."""

    home: Path

    @property
    def embedder(self) -> Embedder: ...

    def search(self, query: str, k: int = 5, mode: str = "hybrid", scope: Scope | None = None) -> list[Hit]: ...


class ChatSession:
    """One conversation over a knowledge base: send questions, get events, resume it later.

    `llm` is a model, a zero-argument loader (called on the first question that needs it, once), or None for
    retrieval-only answers. `history` holds (question, answer) turns a caller already has (the server's
    request); `conversation_id` resumes a saved conversation. With `save`, every turn is written to the KB
    home's conversations.sqlite, the conversation created on the first.
    """

    def __init__(
        self,
        kb: Searchable,
        llm: LLM | Callable[[], LLM] | None = None,
        *,
        options: AskOptions | None = None,
        conversation_id: str | None = None,
        history: list[tuple[str, str]] | None = None,
        save: bool = True,
        store: ConversationStore | None = None,
    ) -> None:
        self.kb = kb
        self.options = options or AskOptions()
        self.save = save
        self.store = store or ConversationStore(kb.home)
        self.id: str | None = None
        self.title: str | None = None
        self.turns: list[Turn] = []
        self.given_history = list(history or [])
        self._llm = llm
        self._load_lock = threading.Lock()
        self._cancel = threading.Event()
        self.decision: dict | None = None  # how the last question was searched (deepkb.conversation.follow_up.Decision)
        if conversation_id is not None:
            saved = self.store.get(conversation_id)
            self.id, self.title, self.turns = saved.id, saved.title, saved.turns

    # what the next answer sees ------------------------------------------------------------------------------
    def history(self) -> list[tuple[str, str]]:
        """The (question, answer) turns the next prompt carries, oldest first (the prompt drops the oldest)."""
        given = [(q, a) for q, a in self.given_history if a.strip()]
        return given + [(t.question, t.answer) for t in self.turns if t.answered]

    def previous_questions(self) -> list[str]:
        return [q for q, _ in self.given_history] + [t.question for t in self.turns]

    def retrieve(self, question: str, k: int, scope: Scope | None = None) -> list[Hit]:
        """One hybrid search. A question with a cue (a word pointing back, "and …") is searched joined to the earlier
        questions it continues, passages from the documents the previous answer cited first. Any other is searched
        alone, like a first question; if it has no confident answer of its own and the previous answer's documents
        are among its hits, or its closest passage is theirs, it continues that topic and their passages come first
        (deepkb.conversation.follow_up, without a model). The decision is kept in `self.decision`. `scope` limits the search (deepkb.scope)."""
        previous = self.previous_questions()
        sources = self.previous_sources()
        chosen = decide(previous, question, self._embed if previous else None, sources=bool(sources))
        if chosen.decision == "new topic":
            hits = self.kb.search(question, k=max(k, IN_CONVERSATION_DEPTH), mode="hybrid", scope=scope)
            chosen, hits = settle(chosen, hits, sources)
            hits = hits[:k]
        else:
            hits = self.kb.search(chosen.query, k=k, mode="hybrid", scope=scope)
            if chosen.cue and sources:
                hits.sort(key=lambda h: not ({h.path, *(p.path for p in h.also_in)} & sources))  # stable
        self.decision = chosen.to_json()
        return hits

    def previous_sources(self) -> set[str]:
        """The documents the previous answer cited (each with its twins): where a follow-up's answer should be."""
        if not self.turns:
            return set()
        return {p for c in self.turns[-1].citations for p in (c.hit.path, *(t.path for t in c.hit.also_in))}

    def _embed(self, texts: Sequence[str]):
        """The knowledge base's embedder (already loaded by the search), for scoring the excerpts' sentences."""
        return self.kb.embedder.embed(texts)

    def _model(self) -> LLM:
        """The model, loaded on first use (once, whichever thread asks first)."""
        with self._load_lock:
            if self._llm is not None and not isinstance(self._llm, LLM):
                self._llm = self._llm()
            return self._llm

    # answering ---------------------------------------------------------------------------------------------
    def send(
        self,
        question: str,
        *,
        options: AskOptions | None = None,
        cancel: threading.Event | None = None,
        waiting_since: float | None = None,
        replace_model: ReplaceModel | None = None,
    ) -> Iterator[Event]:
        """Answer `question` in this conversation: Retrieved, Deltas and Notices as they come, then one Done.

        The turn is saved (and `self.id` set) before the Done is yielded. `waiting_since` and `replace_model`: see
        answer_events.
        """
        self._cancel = cancel or threading.Event()
        llm = None if self._llm is None else self._model
        opts = options or self.options
        for event in answer_events(
            question,
            partial(self.retrieve, scope=opts.scope),
            llm,
            opts,
            history=self.history(),
            cancel=self._cancel,
            embed=self._embed,
            waiting_since=waiting_since,
            replace_model=replace_model,
        ):
            if isinstance(event, Done):
                event.result.retrieval = self.decision
                if trouble := self._record(event.result):
                    yield Notice(trouble)
            yield event

    def ask(self, question: str, *, options: AskOptions | None = None) -> AskResult:
        """send(), collected: the final result."""
        for event in self.send(question, options=options):
            if isinstance(event, Done):
                return event.result
        raise AssertionError("send() ends with a Done")  # pragma: no cover

    def cancel(self) -> None:
        """Stop the answer being generated (from any thread); its Done follows with result.cancelled."""
        self._cancel.set()

    def _record(self, result: AskResult) -> str | None:
        """Keep the turn (and save it); returns a line for the user when it could not be saved."""
        turn = Turn.from_result(result)
        self.turns.append(turn)
        if not self.save:
            return None
        try:
            if self.id is None:
                self.id = self.store.create(result.question)
                self.title = self.store.get(self.id).title
            result.conversation_id, result.turn = self.id, self.store.add_turn(self.id, turn)
        except sqlite3.Error as exc:  # a full or read-only disk costs the history on disk, not the answer
            return f"The conversation could not be saved to {self.store.path} ({exc})."
        return None
