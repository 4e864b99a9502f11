"""Follow-up or new topic: what a conversation's next question is searched with.

A question that leans on the conversation ("and how do I get them back later?", "what if it conflicts?") is
searched joined to the earlier question(s) it leans on, so "them" finds its referent; a question that stands on its
own ("what does set -e do" after a git rebase question) is searched alone, exactly like a first question, so the old
topic cannot crowd its sources. One decision, then one search. It needs no model: the decision reads the question
itself (words that point back, a continuing start, too few words of its own) and its similarity to the
conversation's earlier questions (the knowledge base's embedder, which the search loads anyway).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from deepkb.retrieval.search import STOPWORDS

Embed = Callable[[Sequence[str]], "object"]  # normalized vectors, one row per text (Embedder.embed)

MAX_JOINED = 2  # earlier questions a follow-up is joined to, at most: back to the one that started its topic
# Cosine (all-MiniLM-L6-v2) between the question and an earlier question above which it continues that topic even
# without a word pointing back: a near restatement. bench/conversation.py's tune half could not choose it (the words
# decided every pair: thresholds 0.3 to 1.0 scored alike); no topic switch there came above 0.26, and the two
# continuations without a cue sit at 0.08 and 0.16, among the switches, so no threshold would catch them.
SAME_TOPIC = 0.5

# Words that point back to something the question does not name.
_POINTING = frozenset("it its itself they them their theirs he him his she her".split())
_DEMONSTRATIVE = frozenset("this that these those".split())  # pointing unless a noun comes just before (relative)
_STARTS = ("and", "but", "also", "or", "so", "then", "what about", "how about", "what if", "same")
_PHRASES = ("which one", "that one", "this one", "the other one", "the same", "instead", "too")
# Verbs and fillers that say what the user wants done, not what about: they do not make a question stand alone.
_GENERIC = frozenset(
    """get got make made use used using work works happen happens mean means way ways thing things example need want
    like see show tell give take put go goes kind sort stuff something anything everything one ones also instead
    again else still ok okay please thanks first later back possible must may might shall long soon much many often
    time""".split()
)
_WORD = re.compile(r"[\w$*@-]+", re.UNICODE)


@dataclass(frozen=True)
class Decision:
    """What a question was searched with, and why (`deepkb ask -v` and `--json` show it as "retrieval")."""

    decision: str  # "first" (no conversation yet), "new topic" or "follow-up"
    query: str  # the text that was searched
    similarity: float | None  # the best cosine to an earlier question (None: not measured)
    cue: str | None  # the words that made it a follow-up ("them", "starts with 'and'", "2 words of its own")

    def to_json(self) -> dict:
        return asdict(self)


def words(text: str) -> list[str]:
    return [w.strip("-").lower() for w in _WORD.findall(text) if w.strip("-")]


def own_words(text: str) -> list[str]:
    """The question's words that name something: no stop words, no generic verbs."""
    return [w for w in words(text) if w not in STOPWORDS and w not in _GENERIC]


def cue(question: str) -> str | None:
    """Why the question leans on what came before, from its words alone; None when it stands on its own."""
    ws = words(question)
    if not ws:
        return None
    lowered = " ".join(ws)
    for start in _STARTS:
        if lowered == start or lowered.startswith(start + " "):
            return f"starts with '{start}'"
    for i, w in enumerate(ws):
        named_before = [x for x in ws[:i] if x not in STOPWORDS and x not in _GENERIC]
        named_after = [x for x in ws[i + 1 :] if x not in STOPWORDS and x not in _GENERIC]
        # "capture its output" and "go out for it" point back; "run a program and capture its output" and "put my
        # changes aside to fix a bug, then get them back" point inside the question: it names what they are.
        if w in _POINTING and (len(named_before) < 2 or not named_after and len(named_before) < 4):
            return w
        if w in _DEMONSTRATIVE and (i == 0 or ws[i - 1] in STOPWORDS):  # "the commit that ..." points inside
            return w
    padded = f" {lowered} "
    for phrase in _PHRASES:
        if f" {phrase} " in padded and f" {phrase} of " not in padded:  # "instead of X" names its own X
            return phrase
    if len(own_words(question)) <= 1:
        return f"{len(own_words(question))} word(s) of its own"
    return None


def topic_start(previous: Sequence[str]) -> list[str]:
    """The earlier questions a follow-up continues: the last one, and before it those it leaned on (at most
    MAX_JOINED in all), so a follow-up of a follow-up still sees the topic's first question."""
    joined: list[str] = []
    for question in reversed(previous):
        joined.insert(0, question)
        if len(joined) >= MAX_JOINED or cue(question) is None:
            break
    return joined


def decide(
    previous: Sequence[str], question: str, embed: Embed | None = None, same_topic: float = SAME_TOPIC
) -> Decision:
    """Search `question` alone or joined to the earlier questions it continues (see the module's docstring)."""
    if not previous:
        return Decision("first", question, None, None)
    context = topic_start(previous)
    similarity = None
    if embed is not None:
        try:
            vectors = embed([question, *context])
            similarity = round(max(float(v @ vectors[0]) for v in vectors[1:]), 3)
        except Exception:  # an embedder that fails here fails the search too, which says why; the cue still decides
            similarity = None
    why = cue(question)
    if why is None and similarity is not None and similarity >= same_topic:
        why = f"similar to the conversation ({similarity:.2f})"
    if why is None:
        return Decision("new topic", question, similarity, None)
    return Decision("follow-up", " ".join([*context, question]), similarity, why)
