"""The naive RAG pipeline of a tutorial, as the peer deepkb is measured against on real manuals.

1,000-character chunks with 200 characters of overlap (cut back to a space), a PDF page by page, HTML with its
tags stripped; the same all-MiniLM-L6-v2 through sentence-transformers; exact cosine search; plain BM25 (Okapi,
k1 1.5, b 0.75, lower-cased words, no stemming, no stop words); reciprocal rank fusion with k = 60. Every chunk
keeps the page or the source lines it came from, so it is graded exactly like deepkb's.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHUNK_CHARS, OVERLAP_CHARS, RRF_K = 1000, 200, 60
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class NaiveChunk:
    path: str
    page: int | None
    line_start: int
    line_end: int
    text: str


def strip_tags(source: str) -> str:
    """HTML without tags, scripts and styles; every newline kept, so offsets map to the source's lines."""

    def blank(match: re.Match) -> str:
        return "\n" * match.group(0).count("\n")

    text = re.sub(r"(?is)<(script|style|head)\b.*?</\1>", blank, source)
    text = re.sub(r"(?s)<!--.*?-->", blank, text)
    text = re.sub(r"(?s)<[^>]*>", blank, text)
    return "\n".join(re.sub(r"[ \t]+", " ", html.unescape(line)) for line in text.split("\n"))


def split(text: str) -> list[tuple[int, int]]:
    """(start, end) character windows of at most CHUNK_CHARS, the next starting OVERLAP_CHARS before the end."""
    spans: list[tuple[int, int]] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + CHUNK_CHARS)
        if end < len(text):
            cut = text.rfind(" ", start + CHUNK_CHARS // 2, end)
            cut = max(cut, text.rfind("\n", start + CHUNK_CHARS // 2, end))
            end = cut if cut > start else end
        if text[start:end].strip():
            spans.append((start, end))
        if end >= len(text):
            break
        start = max(start + 1, end - OVERLAP_CHARS)
    return spans


def chunk_file(path: Path) -> list[NaiveChunk]:
    if path.suffix.lower() == ".pdf":
        from pypdf import PdfReader

        chunks = []
        for number, page in enumerate(PdfReader(str(path)).pages, start=1):
            text = page.extract_text() or ""
            for a, b in split(text):
                chunks.append(NaiveChunk(str(path), number, text.count("\n", 0, a) + 1, text.count("\n", 0, b) + 1,
                                         text[a:b]))  # fmt: skip
        return chunks
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() in (".html", ".htm"):
        text = strip_tags(text)
    return [
        NaiveChunk(str(path), None, text.count("\n", 0, a) + 1, text.count("\n", 0, b) + 1, text[a:b])
        for a, b in split(text)
    ]


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class BM25:
    """Okapi BM25 over the chunks' lower-cased words (what rank_bm25's BM25Okapi computes, idf floored at 0)."""

    def __init__(self, docs: list[list[str]], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.tf = [Counter(d) for d in docs]
        self.lengths = np.array([len(d) for d in docs], dtype=np.float64)
        self.avg = float(self.lengths.mean()) if docs else 0.0
        df = Counter(w for d in self.tf for w in d)
        n = len(docs)
        self.idf = {w: max(0.0, math.log((n - f + 0.5) / (f + 0.5) + 1.0)) for w, f in df.items()}
        self.postings: dict[str, list[int]] = {}
        for i, d in enumerate(self.tf):
            for w in d:
                self.postings.setdefault(w, []).append(i)

    def scores(self, query: list[str]) -> dict[int, float]:
        out: dict[int, float] = {}
        for w in set(query):
            idf = self.idf.get(w, 0.0)
            for i in self.postings.get(w, ()):
                f = self.tf[i][w]
                norm = self.k1 * (1 - self.b + self.b * self.lengths[i] / self.avg)
                out[i] = out.get(i, 0.0) + idf * f * (self.k1 + 1) / (f + norm)
        return out


class NaivePipeline:
    """Chunks, their embeddings (cached on disk by text) and a BM25 index, for one folder of documents."""

    def __init__(self, folder: Path, cache: Path, model) -> None:
        self.chunks = [c for path in sorted(folder.iterdir()) for c in chunk_file(path)]
        self.model = model  # None: the keyword side only (no embeddings)
        self.vectors = self._embed([c.text for c in self.chunks], cache) if model is not None else None
        self.bm25 = BM25([tokens(c.text) for c in self.chunks])

    def _embed(self, texts: list[str], cache: Path) -> np.ndarray:
        key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
        path = cache / f"naive-vectors-{key}.npy"
        if path.exists():
            return np.load(path)
        vectors = self.model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors.astype(np.float32))
        return vectors

    def dense(self, query: str, k: int) -> list[int]:
        q = self.model.encode([query], normalize_embeddings=True, show_progress_bar=False)[0]
        sims = self.vectors @ q
        return [int(i) for i in np.argsort(-sims, kind="stable")[:k]]

    def keyword(self, query: str, k: int) -> list[int]:
        scores = self.bm25.scores(tokens(query))
        return sorted(scores, key=lambda i: (-scores[i], i))[:k]

    def search(self, query: str, k: int = 10, mode: str = "hybrid", depth: int = 100) -> list[NaiveChunk]:
        if mode == "dense":
            ids = self.dense(query, k)
        elif mode == "keyword":
            ids = self.keyword(query, k)
        else:
            fused: dict[int, float] = {}
            for ranked in (self.dense(query, depth), self.keyword(query, depth)):
                for rank, i in enumerate(ranked, start=1):
                    fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank)
            ids = sorted(fused, key=lambda i: (-fused[i], i))[:k]
        return [self.chunks[i] for i in ids]
