"""Abstain: decide, before any model runs, whether the retrieved passages are about the question at all.

Both sides of hybrid retrieval get a say. The dense side: the best cosine similarity of the question to a
passage (all-MiniLM-L6-v2 scores names, codes and other rare words poorly). The keyword side: one of the best
passages contains every content word of the question, and those words are specific: at least two of them, or
one that is a name or a code (capitalised, or with digits). "Who is Jonah Pike?" is answered from the runbook
that names him; "Who is the president?" is not answered from a policy that mentions a vice president.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from deepkb.retrieval.search import STOPWORDS, Hit, stem

# Below this best dense cosine similarity (all-MiniLM-L6-v2, query vs chunk) the dense side finds nothing about
# the question. Calibrated on data/: 12 in-domain questions scored 0.33-0.74, 10 off-topic ones (capitals,
# recipes, physics) 0.08-0.23.
DEFAULT_MIN_RELEVANCE = 0.28
KEYWORD_HITS = 3  # the keyword side is judged on the best few passages
_WORD = re.compile(r"[\w][\w\-.]*[\w]|\w", re.UNICODE)
# Words that ask rather than say what about; they are not content even when capitalised.
QUESTION_WORDS = STOPWORDS | {"tell", "explain", "describe", "mean", "means", "please", "know", "much", "many"}

OnTopic = Callable[[str, list[Hit], float], bool]


def best_dense_score(hits: list[Hit]) -> float | None:
    """The best cosine similarity among the hits (None when no dense score is known)."""
    scores = [h.dense_score for h in hits if h.dense_score is not None]
    return max(scores) if scores else None


def content_words(question: str) -> list[str]:
    """The question's words that say what it is about, as written (case kept), each once."""
    words = [w.strip(".-") for w in _WORD.findall(question)]
    return list(dict.fromkeys(w for w in words if w and w.lower() not in QUESTION_WORDS))


def _specific(word: str) -> bool:
    """A name or a code: capitalised (not only as the question's first word), or with a digit."""
    return any(c.isdigit() for c in word) or word[:1].isupper()


def keyword_evidence(question: str, hit: Hit) -> bool:
    """The passage contains every content word of the question, and those words pin a subject down."""
    words = content_words(question)
    first = _WORD.findall(question)[:1]
    specific = [w for w in words if _specific(w) and [w] != first]
    if not words or (len(words) < 2 and not specific):
        return False
    text = {w.lower() for w in _WORD.findall(hit.text)} | {w.lower() for w in re.findall(r"\w+", hit.text)}
    stems = {stem(w) for w in text}
    for word in words:
        lower = word.lower()
        if lower not in text and not any(_same_word(s, stem(lower)) for s in stems):
            return False
    return True


def _same_word(a: str, b: str) -> bool:
    """Two stems of one word: equal, or one the other's start when both have four letters or more ("rotat" of
    "rotating" and "rotate")."""
    return a == b or (min(len(a), len(b)) >= 4 and (a.startswith(b) or b.startswith(a)))


def on_topic(question: str, hits: list[Hit], min_relevance: float = DEFAULT_MIN_RELEVANCE) -> bool:
    """Whether to answer from `hits` rather than abstain: the dense side or the keyword side finds the subject."""
    if not hits:
        return False
    dense = best_dense_score(hits)
    if dense is None or dense >= min_relevance:  # no dense side to ask (keyword mode): the keyword hits stand
        return True
    keyword_hits = [h for h in hits if h.keyword_score is not None][:KEYWORD_HITS]
    return any(keyword_evidence(question, h) for h in keyword_hits)


# Another language ---------------------------------------------------------------------------------------------
# An English-only embedder (all-MiniLM-L6-v2) maps a question in another script to noise: a Chinese question
# "retrieves" git-log chunks and the model answers from them. Where the question's script is not the passages'
# (and the embedder is not multilingual) deepkb declines instead, and says why.
MULTILINGUAL_MARKS = ("multilingual", "labse", "bge-m3", "-m3", "xlm", "distiluse")
_SCRIPT_SAMPLE = 4000  # characters of the retrieved passages looked at


def reads_many_languages(embedding_model: str) -> bool:
    """Whether an embedding model (name or folder) maps questions and passages of different languages together."""
    name = embedding_model.rstrip("/").lower()
    return any(mark in name for mark in MULTILINGUAL_MARKS)


def script_of(text: str) -> str | None:
    """The writing system most of `text`'s letters belong to (LATIN, CJK, CYRILLIC, ARABIC, …); None without
    letters. Han, kana and Hangul count as one: CJK."""
    import unicodedata
    from collections import Counter

    counts: Counter[str] = Counter()
    for ch in text:
        if not ch.isalpha():
            continue
        name = unicodedata.name(ch, "")
        word = name.split(" ", 1)[0]
        if word in ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "IDEOGRAPHIC") or "IDEOGRAPH" in name:
            word = "CJK"
        counts[word or "OTHER"] += 1
    return counts.most_common(1)[0][0] if counts else None


def other_script(question: str, hits: list[Hit]) -> tuple[str, str] | None:
    """(the question's script, the passages') when they differ, else None."""
    asked = script_of(question)
    found = script_of("".join(h.text for h in hits)[:_SCRIPT_SAMPLE]) if hits else None
    if asked is None or found is None or asked == found:
        return None
    return asked, found
