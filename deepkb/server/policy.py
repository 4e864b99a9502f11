"""Content policy: an optional blocklist of words or patterns; an answer that matches one is withheld."""

from __future__ import annotations

import re
from pathlib import Path

from deepkb.errors import UsageError

WITHHELD = "[The answer was withheld: it matched this server's content policy.]"


class Blocklist:
    """Lines of a file: a word or phrase (matched case-insensitively on word boundaries) or /a regex/.

    Blank lines and lines starting with # are skipped.
    """

    def __init__(self, patterns: list[re.Pattern[str]]) -> None:
        self.patterns = patterns

    @classmethod
    def load(cls, path: Path | None) -> Blocklist:
        if path is None:
            return cls([])
        try:
            lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(
                f"cannot read the blocklist {path} ({exc.strerror}); pass an existing text file."
            ) from None
        patterns = []
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                if len(line) > 2 and line.startswith("/") and line.endswith("/"):
                    patterns.append(re.compile(line[1:-1], re.IGNORECASE))
                else:
                    patterns.append(re.compile(rf"(?<!\w){re.escape(line)}(?!\w)", re.IGNORECASE))
            except re.error as exc:
                raise UsageError(f"{path} line {number}: bad pattern ({exc}); fix or remove it.") from None
        return cls(patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, text: str) -> bool:
        """True when any pattern occurs in text."""
        return any(p.search(text) for p in self.patterns)


class Withheld(Exception):
    """The answer matched the blocklist."""


class Screen:
    """Checks streamed text against a blocklist before it leaves the server.

    The last HOLD characters of each stream (answer, reasoning) are held back until more text arrives, so a word
    or phrase that straddles two pieces is caught before any of it is sent.
    """

    HOLD = 120

    def __init__(self, blocklist: Blocklist) -> None:
        self.blocklist = blocklist
        self._seen: dict[str, str] = {}  # kind -> all text of that kind so far
        self._held: dict[str, str] = {}  # kind -> the part not yet released

    def feed(self, kind: str, text: str) -> str:
        """The part of the text that may be sent now; raises Withheld on a match."""
        if not self.blocklist:
            return text
        self._seen[kind] = self._seen.get(kind, "") + text
        if self.blocklist.matches(self._seen[kind]):
            raise Withheld
        held = self._held.get(kind, "") + text
        cut = max(0, len(held) - self.HOLD)
        self._held[kind] = held[cut:]
        return held[:cut]

    def held(self, kind: str) -> str:
        return self._held.get(kind, "")

    def flush(self, kind: str) -> str:
        """The held-back rest at the end of the stream."""
        text, self._held[kind] = self._held.get(kind, ""), ""
        return text
