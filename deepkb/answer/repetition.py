"""Loop guard: notice when a streamed reply repeats itself, so generation can stop instead of running to max_tokens.

Small models (SmolLM2-135M, also R1 distills when they reason too long) fall into loops: the same sentence, or
the same few words, over and over. Two signs, checked as the text grows:
- the end of the text is one block repeated: at least REPEATS times and at least MIN_LOOP_CHARS in all;
- one sentence of at least MIN_SENTENCE_CHARS has come SENTENCE_REPEATS times, wherever it stood.
"""

from __future__ import annotations

import re

REPEATS = 3
MIN_LOOP_CHARS = 60
MAX_PERIOD = 300  # the longest repeated block looked for at the end of the text
MIN_SENTENCE_CHARS = 20
SENTENCE_REPEATS = 3
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")

LOOP_NOTICE = "The model started repeating itself, so the answer was stopped there."


class RepeatGuard:
    """Feed it the reply as it streams; `feed` returns True once the reply is looping."""

    def __init__(self) -> None:
        self._text = ""
        self._counts: dict[str, int] = {}
        self._done = 0  # characters of _text already split into sentences

    def feed(self, piece: str) -> bool:
        if not piece:
            return False
        self._text += piece
        return self._tail_repeats() or self._sentence_repeats()

    def _tail_repeats(self) -> bool:
        text = " ".join(self._text[-4 * MAX_PERIOD * REPEATS :].split())
        for period in range(1, min(MAX_PERIOD, len(text) // REPEATS) + 1):
            times = max(REPEATS, -(-MIN_LOOP_CHARS // period))
            if times * period > len(text):
                continue
            block = text[-period:]
            if any(c.isalnum() for c in block) and text.endswith(block * times):
                return True
        return False

    def _sentence_repeats(self) -> bool:
        parts = _SENTENCE_END.split(self._text[self._done :])
        if len(parts) < 2:
            return False
        finished, tail = parts[:-1], parts[-1]
        self._done = len(self._text) - len(tail)
        for sentence in finished:
            key = " ".join(sentence.split()).lower()
            if len(key) < MIN_SENTENCE_CHARS:
                continue
            self._counts[key] = self._counts.get(key, 0) + 1
            if self._counts[key] >= SENTENCE_REPEATS:
                return True
        return False
