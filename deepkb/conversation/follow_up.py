"""Follow-up or new topic: what a conversation's next question is searched with.

A question that leans on the conversation ("and how do I get them back later?", "what if it conflicts?") is
searched joined to the earlier question(s) it leans on, so "them" finds its referent; a question that stands on its
own ("what does set -e do" after a git rebase question) is searched alone, exactly like a first question, so the old
topic cannot crowd its sources. It needs no model, and each question costs one search:

1. Before searching, the question itself: a word that points back, a continuing start, no word of its own, or a near
   restatement of an earlier question (cosine, the knowledge base's embedder) makes it a follow-up, searched joined.
2. Anything else is searched alone, and its hits decide (`settle`): a question with no confident answer of its own
   (its best passage's cosine below VAGUE) while a passage of the documents the previous answer cited is among its
   first IN_CONVERSATION_DEPTH hits is answerable inside the conversation ("is there a dry run first?" after a git
   clean question): a follow-up, those documents' passages first. A question that names its subject ("how do I
   shrink the database file?" after an sqlite WAL question) finds a confident passage: step 3 decides it.
3. Then, when the passage closest to the question (the highest cosine among those hits) is from the previous
   answer's documents, those documents answer it better than anything else, even where another document's words
   rank first ("how do I exclude some commits?" after an interactive rebase question: tar's man page first, a
   git-rebase passage the closest): a follow-up, their passages first. A switch finds its closest passage in its own
   document ("how do I reorder my last few commits?" after a git reset question: git-rebase 0.67, git-reset 0.56)
   and stays a new topic. Step 3 reads the same hits: no second search.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

from deepkb.retrieval.search import STOPWORDS, Hit

Embed = Callable[[Sequence[str]], "object"]  # normalized vectors, one row per text (Embedder.embed)

MAX_JOINED = 2  # earlier questions a follow-up is joined to, at most: back to the one that started its topic
# Cosine (all-MiniLM-L6-v2) between the question and an earlier question above which it continues that topic even
# without a word pointing back: a near restatement. On bench/conversation.py's tune half a switch between nearby
# topics reaches 0.62 ("how do I reorder my last few commits?" after a git reset question) and no continuation needs
# it (the hits decide those, below), so it sits above that.
SAME_TOPIC = 0.65
# A question without a cue is answerable inside the conversation when its best passage's cosine is below VAGUE and a
# passage of the previous answer's documents is among its first IN_CONVERSATION_DEPTH hits. Chosen on the tune half of
# bench/conversation.py (40 pairs): VAGUE 0.3 to 0.5 score alike (34 of 40), 0.55 and up turn short switches ("what
# does set -e do", best cosine 0.52) into follow-ups; a depth of 20 catches two continuations that 6 and 10 miss.
VAGUE = 0.45
IN_CONVERSATION_DEPTH = 20
# Step 3: a follow-up when the best cosine of a passage of the previous answer's documents among the question's hits is
# at most TOPIC_MARGIN below its best cosine. On the tune half of bench/conversation.py the cue-less continuations lie
# 0.00-0.09 below, the switches 0.11 and more (but two whose bare search already puts the old document first), and
# every margin from 0.00 to 0.10 scores the same; but a nearby switch of tests/test_conversation_topics.py ("how do I
# remove commits from my branch?" after a git clean question) lies 0.04 below, so no margin: the closest passage.
TOPIC_MARGIN = 0.0

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
    cue: str | None  # why it is a follow-up ("them", "starts with 'and'", "answerable from the previous sources")
    previous_rank: int | None = None  # searched alone: rank (from 1) of its first passage of the previous sources
    best_cosine: float | None = None  # searched alone: its best passage's cosine (below VAGUE: no confident answer)
    topic_cosine: float | None = None  # searched alone: the best cosine of its passages from the previous sources

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


def weak(why: str | None) -> bool:
    """A cue that is only a short question ("what is nullglob?"): the hits decide it when there are sources."""
    return why is not None and why.startswith("1 word")


def decide(
    previous: Sequence[str],
    question: str,
    embed: Embed | None = None,
    same_topic: float = SAME_TOPIC,
    sources: bool = False,
) -> Decision:
    """Step 1 (see the module's docstring): search `question` joined to the earlier questions it continues, or alone
    ("new topic", for `settle` to confirm once its hits are in). `sources`: the previous answer cited documents, so
    a one-word question ("what is nullglob?") can be left to the hits instead of being joined."""
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
    if sources and weak(why):
        why = None
    if why is None and similarity is not None and similarity >= same_topic:
        why = f"similar to the conversation ({similarity:.2f})"
    if why is None:
        return Decision("new topic", question, similarity, None)
    return Decision("follow-up", " ".join([*context, question]), similarity, why)


def settle(
    decision: Decision, hits: list[Hit], sources: set[str], vague: float = VAGUE, margin: float = TOPIC_MARGIN
) -> tuple[Decision, list[Hit]]:
    """Steps 2 and 3 for a question searched alone: a follow-up when it has no confident answer of its own and the
    previous answer's documents (`sources`, paths) are among its hits, or when its closest passage (within `margin`)
    is theirs; those documents' passages then come first. Else it stays a new topic."""
    if decision.decision != "new topic":
        return decision, hits
    best = _best(hits)
    rank = next((i for i, h in enumerate(hits[:IN_CONVERSATION_DEPTH], 1) if _places(h) & sources), None)
    near = _best([h for h in hits[:IN_CONVERSATION_DEPTH] if _places(h) & sources])
    measured = replace(decision, previous_rank=rank, best_cosine=best, topic_cosine=near)
    if rank is None:
        return measured, hits
    if best is None or best < vague:
        why = f"answerable from the previous sources (hit {rank}, best cosine {best if best is not None else 'n/a'})"
    elif near is not None and near >= best - margin:
        why = f"closest in the previous sources (best cosine {near})"
    else:
        return measured, hits
    chosen = replace(measured, decision="follow-up", cue=why)
    return chosen, sorted(hits, key=lambda h: not (_places(h) & sources))  # stable: rank kept within


def _best(hits: list[Hit]) -> float | None:
    cosines = [h.dense_score for h in hits if h.dense_score is not None]
    return round(max(cosines), 3) if cosines else None


def _places(hit: Hit) -> set[str]:
    return {hit.path, *(p.path for p in hit.also_in)}
