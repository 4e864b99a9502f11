"""Types that several stages share, below all of them: the chunker makes a Chunk, the storage keeps it, search
returns where it came from. Living here, none of those stages imports another for it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

# Source lines without indexed text (an SQLite page's syntax diagram, 2,000 lines of SVG) that a passage never spans:
# past this gap the next text starts a chunk, as a new page does, and search never joins two chunks across it, so a
# passage never cites lines that hold none of it.
MAX_GAP = 100


def common_heading(headings: list[str]) -> str:
    """What heading paths share from their start ("A > B" and "A > C": "A"); "" when they share nothing. The chunker
    labels a chunk with it, and search a passage that joins chunks."""
    common = headings[0].split(" > ") if headings else []
    for path in (h.split(" > ") for h in headings[1:]):
        common = common[
            : next((i for i, (a, b) in enumerate(zip(common, path)) if a != b), min(len(common), len(path)))
        ]
    return " > ".join(common)


@dataclass(frozen=True)
class Chunk:
    """A retrievable piece of a document: its text and exactly where it came from."""

    text: str
    page: int | None
    line_start: int
    line_end: int
    heading: str | None
    n_tokens: int

    @property
    def embed_text(self) -> str:
        """What the embedder reads: the heading path gives the chunk its context."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text

    @cached_property
    def hash(self) -> str:
        """Content hash of the embedded text: equal hashes share one embedding."""
        return hashlib.sha256(self.embed_text.encode("utf-8")).hexdigest()
