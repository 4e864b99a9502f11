"""Citations: map the answer's [n] markers to exact sources, and separate DeepSeek-R1 reasoning from the answer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from deepkb.retrieval.search import Hit

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# [3], [1, 2], [1-3], [1,3–5], [Source 2]; adjacent markers like [1][2] are simply two matches.
_NUMBERS = r"\d+(?:\s*[-–]\s*\d+)?"
MARKER_RE = re.compile(rf"\s?\[\s*(?:sources?\s*)?({_NUMBERS}(?:\s*[,;]\s*{_NUMBERS})*)\s*\]", re.IGNORECASE)
_MAX_RANGE = 50  # a "[1-99999]" marker is noise, not a citation of everything


@dataclass(frozen=True)
class Citation:
    """A source the answer cites; `n` is its number in the prompt and in the answer's markers."""

    n: int
    hit: Hit

    def to_json(self) -> dict:
        return {"n": self.n, **self.hit.to_json()}


@dataclass(frozen=True)
class CitedAnswer:
    """The answer with its markers checked, the sources it cites, and what was dropped."""

    text: str
    citations: list[Citation]
    also_retrieved: list[Hit] = field(default_factory=list)
    dropped_markers: int = 0  # marker numbers that pointed to no given source


def _expand(group: str) -> list[int]:
    numbers: list[int] = []
    for part in re.split(r"\s*[,;]\s*", group.strip()):
        bounds = [int(x) for x in re.split(r"\s*[-–]\s*", part)]
        lo, hi = bounds[0], bounds[-1]
        numbers.extend(range(lo, hi + 1) if 0 <= hi - lo <= _MAX_RANGE else [lo, hi])
    return numbers


def rewrite_markers(text: str, n_sources: int) -> tuple[str, list[int], int]:
    """Normalize markers to [a][b], dropping numbers outside 1..n_sources: (text, numbers cited, dropped count)."""
    cited: list[int] = []
    dropped = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal dropped
        kept: list[int] = []
        for n in _expand(match.group(1)):
            if not 1 <= n <= n_sources:
                dropped += 1
            elif n not in kept:
                kept.append(n)
        cited.extend(n for n in kept if n not in cited)
        if not kept:
            return ""
        lead = " " if match.group(0)[0].isspace() else ""
        return lead + "".join(f"[{n}]" for n in sorted(kept))

    return MARKER_RE.sub(replace, text), cited, dropped


def resolve_citations(answer: str, sources: list[Hit]) -> CitedAnswer:
    """Map [n] markers to sources[n-1]; markers to no given source are dropped and counted."""
    text, cited, dropped = rewrite_markers(answer, len(sources))
    citations = [Citation(n, sources[n - 1]) for n in sorted(cited)]
    uncited = [hit for i, hit in enumerate(sources, 1) if i not in cited]
    return CitedAnswer(text.strip(), citations, uncited, dropped)


class MarkerFilter:
    """Streaming counterpart of resolve_citations: holds a possible marker back until it can be judged."""

    def __init__(self, n_sources: int) -> None:
        self.n_sources = n_sources
        self.dropped = 0
        self._buf = ""

    def feed(self, piece: str) -> str:
        """Take streamed answer text; return the part that is final."""
        self._buf += piece
        out = []
        while True:
            start = self._buf.find("[")
            if start < 0:
                keep = len(self._buf) - len(self._buf.rstrip())  # a marker may follow the space
                out.append(self._buf[: len(self._buf) - keep])
                self._buf = self._buf[len(self._buf) - keep :]
                break
            close = self._buf.find("]", start)
            if close >= 0:
                out.append(self._rewrite(self._buf[: close + 1]))
                self._buf = self._buf[close + 1 :]
                continue
            if len(self._buf) - start > 40:  # too long to be a marker
                out.append(self._buf[: start + 1])
                self._buf = self._buf[start + 1 :]
                continue
            cut = start - 1 if start and self._buf[start - 1].isspace() else start
            out.append(self._buf[:cut])
            self._buf = self._buf[cut:]
            break
        return "".join(out)

    def flush(self) -> str:
        """Release what is held at the end of the stream."""
        text, self._buf = self._rewrite(self._buf), ""
        return text

    def _rewrite(self, segment: str) -> str:
        text, _, dropped = rewrite_markers(segment, self.n_sources)
        self.dropped += dropped
        return text


def split_think(text: str) -> tuple[str, str]:
    """(reasoning, answer): text up to a </think> is reasoning, with or without the opening <think>."""
    head, sep, tail = text.partition(THINK_CLOSE)
    if sep:
        thinking, answer = head, tail
    elif THINK_OPEN in text:  # reasoning cut off before it closed: there is no answer yet
        before, _, thinking = text.partition(THINK_OPEN)
        if before.strip():
            return thinking.strip(), before.strip()
        return thinking.strip(), ""
    else:
        return "", text.strip()
    thinking = thinking.split(THINK_OPEN, 1)[-1]
    return thinking.strip(), answer.replace(THINK_CLOSE, "").strip()


class ThinkSplitter:
    """Incremental split of a streamed reply into ("think", text) and ("answer", text) pieces."""

    def __init__(self, starts_in_think: bool = False) -> None:
        self.state = "think" if starts_in_think else "start"
        self._buf = ""

    def feed(self, piece: str) -> Iterator[tuple[str, str]]:
        """Take the next streamed text; yield what can be classified already (tags may span pieces)."""
        self._buf += piece
        while self._buf:
            if self.state == "start":
                stripped = self._buf.lstrip()
                if stripped.startswith(THINK_OPEN):
                    self._buf, self.state = stripped[len(THINK_OPEN) :], "think"
                    continue
                if THINK_OPEN.startswith(stripped):
                    return  # could still become "<think>"
                self.state = "answer"
                continue
            tag = THINK_CLOSE
            at = self._buf.find(tag)
            if at >= 0:
                if at:
                    yield self.state, self._buf[:at]
                self._buf, self.state = self._buf[at + len(tag) :], "answer"
                continue
            keep = _partial_tag_len(self._buf, tag)
            out, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep :]
            if out:
                yield self.state, out
            return

    def flush(self) -> Iterator[tuple[str, str]]:
        """Yield what is still held back at the end of the stream."""
        if self._buf:
            yield ("think" if self.state == "think" else "answer"), self._buf
        self._buf = ""


def _partial_tag_len(text: str, tag: str) -> int:
    """Length of the longest end of `text` that could be the start of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
