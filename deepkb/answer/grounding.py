"""Grounding: check each sentence of an answer against the passages it cites, and say which the passages do not back.

A citation marker that resolves is not a citation that supports: a 7B model often cites a passage for a sentence the
passage does not say (ALCE, Gao et al. 2023). Each answer sentence is checked on the CPU, with no second model: its
cosine to the cited passages' sentences (the knowledge base's embedder, one batch for the whole answer), the share
of its content words the passages hold, and hard checks that a paraphrase passes and a changed fact fails: every
number, quoted string and code-like name it states must be in the cited passages, and its negation must agree with
the passage sentence closest to it. A sentence without a marker is checked against all the passages the model was
given. bench/grounding_eval.py measures it (BENCHMARKS.md, "Grounding").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from deepkb.retrieval.excerpt import Embed
from deepkb.retrieval.search import STOPWORDS, Hit, stem

# Tuned on the tune half of bench/grounding_sentences.jsonl (bench/grounding_eval.py --sweep); see BENCHMARKS.md.
DENSE_WEIGHT = 0.5
COVERAGE_WEIGHT = 0.5
THRESHOLD = 0.78
HARD_FAILURE_FACTOR = 0.5
MIN_TERMS = 2  # a sentence with fewer content words ("See below.") states nothing to check

_MARKER = re.compile(r"\s?\[(\d+)\]")
_FENCE = re.compile(r"^\s*(```|~~~)")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s")
# A sentence ends at . ! ? (and the markers after it) followed by what can start a sentence.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*((?:\s?\[\d+\])*)(?=\s+[\"'(`*\[]?[A-Z0-9]|\s*$)")
_ABBREVIATION = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|cf|al|approx|Fig|No|Dr|Mr|Mrs|Ms)|\b[A-Z])\.\Z")
_WORD = re.compile(r"[A-Za-z0-9_]+(?:['’][a-z]+)?")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,]\d+)*(?![\w])|(?<=[A-Za-z]-)\d+\b")
_QUOTED = re.compile(r"`([^`\n]{2,80})`|\"([^\"\n]{3,80})\"|(?<!\w)'([^'\n]{2,60})'(?!\w)")
# A name a paraphrase keeps as it is: --flag, -opt, snake_case, dotted.names, CamelCase, ALLCAPS, path/like, K63.
_CODE_LIKE = re.compile(
    r"(?<![\w-])(?:--?[A-Za-z][\w-]*|[A-Za-z]\w*(?:[._/][\w]+)+|[A-Za-z]*[a-z][A-Z]\w*|[A-Z][A-Z0-9]{1,}\w*"
    r"|[A-Za-z]+\d\w*)"
)
_NEGATION = frozenset(
    "not no never none nothing neither nor cannot can't won't don't doesn't didn't isn't aren't wasn't weren't "
    "without unable fails fail failed lack lacks lacking absent".split()
)
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero _ two three four five six seven eight nine ten eleven twelve".split()  # "one" is mostly a pronoun
    )
}
# Opposites a changed fact swaps in: "higher" for "lower", "source" for "destination" (stems, both ways).
_OPPOSITES: dict[str, set[str]] = {}
_PAIRS = (
    "increas/decreas increas/reduc higher/lower more/less greater/smaller larger/smaller same/different "
    "before/after above/below enabl/disabl allow/forbid allow/prohibit includ/exclud source/destination "
    "absolute/relative positive/negative maximum/minimum first/last inside/outside success/failure true/false "
    "start/stop read/writ sooner/later earlier/later strong/weak rais/lower improv/worsen promot/inhibit "
    "promot/suppress activat/inhibit gain/loss gain/lost accept/reject always/sometimes required/optional "
    "mandatory/optional synchronous/asynchronous local/remote"
)
for _x, _y in (pair.split("/") for pair in _PAIRS.split()):
    _OPPOSITES.setdefault(_x, set()).add(_y)
    _OPPOSITES.setdefault(_y, set()).add(_x)


@dataclass(frozen=True)
class Support:
    """One answer sentence and whether the passages it cites back it."""

    sentence: str
    citations: list[int]
    supported: bool
    score: float  # 0..1: cosine and word coverage combined, halved when a hard check fails; < THRESHOLD: unsupported
    reason: str | None = None  # why it is unsupported, in a few words

    def to_json(self) -> dict:
        return {
            "sentence": self.sentence,
            "citations": self.citations,
            "supported": self.supported,
            "score": self.score,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Claim:
    """A unit of the answer to check: a sentence, a list item's sentence, or a code block."""

    text: str  # as the answer shows it, markers included
    plain: str  # markers and list bullets removed
    citations: list[int]
    code: bool = False


# splitting ----------------------------------------------------------------------------------------------------
def split_answer(answer: str) -> list[Claim]:
    """The answer's sentences in order, each with the markers that follow it; a fenced code block is one unit, a
    list item starts a new sentence, headings are left out."""
    claims: list[Claim] = []
    paragraph: list[str] = []
    code: list[str] | None = None

    def flush() -> None:
        if paragraph:
            claims.extend(_sentences(" ".join(paragraph)))
            paragraph.clear()

    for line in answer.split("\n"):
        if code is not None:
            if _FENCE.match(line):
                body = "\n".join(code)
                if body.strip():
                    claims.append(Claim(body, body, [], code=True))
                code = None
            else:
                code.append(line)
            continue
        if _FENCE.match(line):
            flush()
            code = []
        elif not line.strip() or _HEADING.match(line):
            flush()
        elif _LIST_ITEM.match(line):
            flush()
            paragraph.append(_LIST_ITEM.sub("", line, count=1))
        else:
            paragraph.append(line.strip())
    if code:  # an unclosed fence: the reply was cut short
        body = "\n".join(code)
        if body.strip():
            claims.append(Claim(body, body, [], code=True))
    flush()
    return claims


def _sentences(text: str) -> list[Claim]:
    out: list[Claim] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if _ABBREVIATION.search(text, 0, match.start() + 1):
            continue
        piece = text[start : match.end()].strip()
        start = match.end()
        if piece:
            out.append(_claim(piece))
    if text[start:].strip():
        out.append(_claim(text[start:].strip()))
    return out


def _claim(piece: str) -> Claim:
    cited = list(dict.fromkeys(int(n) for n in _MARKER.findall(piece)))
    plain = _MARKER.sub("", piece).replace("**", "").strip()
    return Claim(piece, plain, cited)


# features -----------------------------------------------------------------------------------------------------
def _words(text: str) -> list[str]:
    return [w.lower().replace("’", "'") for w in _WORD.findall(text)]


def content_terms(text: str) -> set[str]:
    """The stems of the words that carry content (stop words and negations out)."""
    return {stem(w) for w in _words(text) if w not in STOPWORDS and w not in _NEGATION and len(w) > 1}


def _numbers(text: str) -> set[str]:
    found = {m.group(0).lstrip("+").replace(",", "") for m in _NUMBER.finditer(text)}
    found |= {_NUMBER_WORDS[w] for w in _words(text) if w in _NUMBER_WORDS}
    return {n.rstrip(".") for n in found if n}


def negation_scopes(text: str) -> list[set[str]]:
    """For each negation cue, the content stems of the few words around it: what it negates."""
    words = _words(text)
    scopes = []
    for i, w in enumerate(words):
        if w in _NEGATION or w.endswith("n't"):
            near = words[max(0, i - 3) : i] + words[i + 1 : i + 6]
            scopes.append({stem(x) for x in near if x not in STOPWORDS and x not in _NEGATION and len(x) > 1})
    return [s for s in scopes if s]


def _negation_mismatch(claim: str, terms: set[str], passage: str, closest: str) -> bool:
    """The claim negates what no passage negation covers, or drops a negation of the closest passage sentence."""
    passage_scopes = negation_scopes(passage)
    for scope in negation_scopes(claim):
        if not any(len(scope & other) >= min(2, len(scope)) for other in passage_scopes):
            return True
    claim_scopes = negation_scopes(claim)
    for scope in negation_scopes(closest):
        if len(scope & terms) >= 2 and not any(scope & mine for mine in claim_scopes):
            return True
    return False


def _opposite(terms: set[str], closest: str) -> str | None:
    """A word of the claim whose opposite the closest passage sentence uses instead of it."""
    near = {_prefix_stem(w) for w in _words(closest)}
    for term in terms:
        key = _prefix_stem(term)
        if _OPPOSITES.get(key, set()) & near and key not in near:
            return term
    return None


def _prefix_stem(word: str) -> str:
    """The _OPPOSITES key a word falls under ("increased" -> "increas"), else the word."""
    for key in _OPPOSITE_KEYS:
        if word.startswith(key):
            return key
    return word


def _normal(text: str) -> str:
    return " ".join(text.lower().replace("’", "'").split())


def _passage_sentences(text: str) -> list[str]:
    """A passage's sentences (and its lines, for tables and option lists), for the closest-sentence checks."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        joined = " ".join(block.split())
        for claim in _sentences(joined):
            if len(claim.plain) > 3:
                out.append(unmarked(claim.plain)[:600])
    return out or [text[:600]]


_OPPOSITE_KEYS = sorted(_OPPOSITES, key=len, reverse=True)
_MARKUP = re.compile(r":[a-z]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`|`+([^`]*)`+|\*\*?([^*]+)\*\*?")


def unmarked(text: str) -> str:
    """Prose without reST / Markdown roles, backticks and emphasis: what an embedder compares best."""
    return _MARKUP.sub(lambda m: next(g for g in m.groups() if g is not None), text)


# scoring ------------------------------------------------------------------------------------------------------
@dataclass
class _Passage:
    text: str
    normal: str
    terms: set[str]
    numbers: set[str]
    sentences: list[str]


def _passage(hit: Hit) -> _Passage:
    text = hit.text if not hit.heading else f"{hit.heading}\n{hit.text}"
    return _Passage(text, _normal(text), content_terms(text), _numbers(text), _passage_sentences(hit.text))


def check_answer(answer: str, sources: Sequence[Hit], embed: Embed | None = None) -> list[Support]:
    """One Support per sentence of `answer`; markers [n] name sources[n-1] (the passages the model was given).

    `embed` is the knowledge base's embedder (one call for the whole answer); without it the words decide alone."""
    claims = split_answer(answer)
    if not claims or not sources:
        return []
    passages = [_passage(h) for h in sources]
    every = list(range(len(passages)))
    targets = [[n - 1 for n in c.citations if 1 <= n <= len(passages)] or every for c in claims]
    used = sorted({i for t in targets for i in t})
    sims = None
    if embed is not None:
        sentence_rows: dict[int, list[int]] = {}
        texts = [c.plain for c in claims]
        for i in used:
            sentence_rows[i] = list(range(len(texts), len(texts) + len(passages[i].sentences)))
            texts.extend(passages[i].sentences)
        vectors = embed(texts)
        sims = (vectors[: len(claims)] @ vectors[len(claims) :].T, sentence_rows, len(claims))
    out: list[Support] = []
    for k, (claim, target) in enumerate(zip(claims, targets)):
        best_sentence, dense = _closest(k, claim, target, passages, sims)
        out.append(judge(claim, [passages[i] for i in target], dense, best_sentence))
    return out


def _closest(k: int, claim: Claim, target: list[int], passages: list[_Passage], sims) -> tuple[str, float | None]:
    """The cited passages' sentence closest to the claim, and its cosine (None without an embedder: by words)."""
    if sims is None:
        terms = content_terms(claim.plain)
        pool = [s for i in target for s in passages[i].sentences]
        best = max(pool, key=lambda s: len(terms & content_terms(s)))
        return best, None
    matrix, rows, offset = sims
    best_value, best_sentence = -1.0, ""
    for i in target:
        for row in rows[i]:
            value = float(matrix[k, row - offset])
            if value > best_value:
                best_value, best_sentence = value, passages[i].sentences[row - rows[i][0]]
    return best_sentence, best_value


@dataclass(frozen=True)
class Weights:
    """How the features combine (bench/grounding_eval.py tunes them)."""

    dense: float = DENSE_WEIGHT
    coverage: float = COVERAGE_WEIGHT
    threshold: float = THRESHOLD
    hard_numbers: bool = True
    hard_quotes: bool = True
    hard_names: bool = True
    hard_negation: bool = True


def features(claim: Claim, cited: Sequence[_Passage], dense: float | None, closest: str) -> dict:
    """What the decision reads: coverage of content words, the cosine, and what is missing from the passages."""
    normal = " ".join(p.normal for p in cited)
    terms = content_terms(claim.plain)
    passage_terms = set().union(*(p.terms for p in cited))
    coverage = len(terms & passage_terms) / len(terms) if terms else 1.0
    numbers = set().union(*(p.numbers for p in cited))
    missing_numbers = sorted(_numbers(claim.plain) - numbers)
    quotes = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(claim.plain)]
    missing_quotes = [q for q in quotes if _normal(q) not in normal]
    names = {m.group(0).rstrip(".") for m in _CODE_LIKE.finditer(claim.plain)}
    missing_names = sorted(n for n in names if _normal(n) not in normal and stem(n.lower()) not in passage_terms)
    negation = _negation_mismatch(claim.plain, terms, normal, closest)
    opposite = _opposite({stem(w) for w in _words(claim.plain)}, closest)
    return {
        "terms": len(terms),
        "coverage": coverage,
        "dense": dense,
        "missing_numbers": missing_numbers,
        "missing_quotes": missing_quotes,
        "missing_names": missing_names,
        "negation": negation or opposite is not None,
    }


def decide(f: dict, weights: Weights = Weights()) -> tuple[bool, float, str | None]:
    """(supported, score, reason) from features()."""
    dense = f["dense"] if f["dense"] is not None else f["coverage"]
    score = round(max(0.0, min(1.0, weights.dense * dense + weights.coverage * f["coverage"])), 3)
    if f["terms"] < MIN_TERMS and not f["missing_numbers"]:
        return True, score, None
    failed = None
    if weights.hard_numbers and f["missing_numbers"]:
        failed = "number not in the cited passage: " + ", ".join(f["missing_numbers"][:3])
    elif weights.hard_quotes and f["missing_quotes"]:
        failed = f"quote not in the cited passage: {f['missing_quotes'][0][:40]}"
    elif weights.hard_names and f["missing_names"]:
        failed = "name not in the cited passage: " + ", ".join(f["missing_names"][:3])
    elif weights.hard_negation and f["negation"]:
        failed = "the cited passage says the opposite"
    if failed:  # halved: every unsupported sentence scores below the threshold, a supported one at or above it
        return False, round(score * HARD_FAILURE_FACTOR, 3), failed
    if score < weights.threshold:
        return False, score, "the cited passage does not say this"
    return True, score, None


def judge(
    claim: Claim, cited: Sequence[_Passage], dense: float | None, closest: str, weights: Weights = Weights()
) -> Support:
    """The Support of one claim against its cited passages."""
    if claim.code:  # a code block: its lines must be in the passages (a command the documents show)
        normal = " ".join(p.normal for p in cited)
        lines = [_normal(x) for x in claim.plain.split("\n") if x.strip()]
        found = sum(x in normal for x in lines) / len(lines)
        ok = found >= 0.5
        return Support(claim.text, claim.citations, ok, round(found, 3), None if ok else "code not in the passages")
    supported, score, reason = decide(features(claim, cited, dense, closest), weights)
    return Support(claim.text, claim.citations, supported, score, reason)


MARK = "⚠"


def mark_unsupported(answer: str, support: Sequence[Support], mark: str = MARK) -> str:
    """The answer with `mark` after each sentence its cited passages do not back (code blocks are left as they are)."""
    out, at = [], 0
    for item in support:
        where = answer.find(item.sentence, at)
        if where < 0:
            continue
        end = where + len(item.sentence)
        if not item.supported and "\n" not in item.sentence:
            out.append(f"{answer[at:end]} {mark}")
            at = end
    out.append(answer[at:])
    return "".join(out)
