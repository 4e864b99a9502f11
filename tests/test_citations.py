"""Citation markers map to exact sources; unknown ones are dropped; DeepSeek-R1 reasoning is split off."""

from __future__ import annotations

import random

import pytest

from deepkb.answer.citations import MarkerFilter, ThinkSplitter, resolve_citations, split_think
from deepkb.retrieval.search import Hit


def _hits(n: int) -> list[Hit]:
    return [
        Hit(
            chunk_id=100 + i,
            path=f"/docs/file{i}.md",
            page=i if i % 2 else None,
            line_start=10 * i,
            line_end=10 * i + 5,
            heading=None,
            score=1.0 / i,
            text=f"passage number {i}",
        )
        for i in range(1, n + 1)
    ]


def test_valid_marker_maps_to_exact_source():
    sources = _hits(3)
    cited = resolve_citations("Backups are kept for 30 days [2].", sources)
    assert cited.text == "Backups are kept for 30 days [2]."
    assert [(c.n, c.hit) for c in cited.citations] == [(2, sources[1])]
    assert cited.citations[0].to_json() == {
        "n": 2,
        "path": "/docs/file2.md",
        "page": None,
        "line_start": 20,
        "line_end": 25,
        "text": "passage number 2",
        "heading": None,
        "chunk_id": 102,
        "score": sources[1].score,
        "dense_score": sources[1].dense_score,
        "keyword_score": sources[1].keyword_score,
        "also_in": [],
        "chunk_ids": [],
        "best_start": 0,
        "window_score": None,
    }
    assert cited.citations[0].to_json() == {"n": 2, **sources[1].to_json()}  # one JSON shape of a hit everywhere
    assert cited.also_retrieved == [sources[0], sources[2]]  # retrieved but never cited: not citations
    assert cited.dropped_markers == 0


def test_out_of_range_markers_are_dropped_and_counted():
    cited = resolve_citations("Keys rotate yearly [4]. Backups are offsite [1][9]. See [0].", _hits(3))
    assert cited.text == "Keys rotate yearly. Backups are offsite [1]. See."
    assert [c.n for c in cited.citations] == [1]
    assert cited.dropped_markers == 3


def test_repeated_and_grouped_markers():
    sources = _hits(4)
    text = "A [3]. B [1][3]. C [1, 2]. D [2-4]. E [Source 4]. F [3,3]."
    cited = resolve_citations(text, sources)
    assert cited.text == "A [3]. B [1][3]. C [1][2]. D [2][3][4]. E [4]. F [3]."
    assert [c.n for c in cited.citations] == [1, 2, 3, 4]  # each source once, however often it is cited
    assert all(c.hit is sources[c.n - 1] for c in cited.citations)
    assert cited.also_retrieved == [] and cited.dropped_markers == 0


def test_answer_without_markers_has_no_citations():
    cited = resolve_citations("not in the documents", _hits(2))
    assert cited.citations == [] and len(cited.also_retrieved) == 2


def test_streaming_marker_filter_matches_whole_text_result():
    text = "Backups [2] are kept [1, 3]. Bad [7] one, arr[0] and [x] stay. End [2-3]"
    expected = resolve_citations(text, _hits(3))
    for seed in range(50):
        rng = random.Random(seed)
        cuts = sorted(rng.sample(range(1, len(text)), 12))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        f = MarkerFilter(3)
        streamed = "".join(f.feed(p) for p in pieces) + f.flush()
        assert streamed.strip() == expected.text
        assert f.dropped == expected.dropped_markers == 2


@pytest.mark.parametrize(
    ("raw", "thinking", "answer"),
    [
        ("<think>\nLet me look.\n</think>\n\nIt is 30 days [1].", "Let me look.", "It is 30 days [1]."),
        ("Let me look.\n</think>\n\nIt is 30 days [1].", "Let me look.", "It is 30 days [1]."),  # no opening tag
        ("It is 30 days [1].", "", "It is 30 days [1]."),
        ("<think>\nStill thinking when the tokens ran out", "Still thinking when the tokens ran out", ""),
        ("<think>\n\n</think>\n\nDirect answer.", "", "Direct answer."),
    ],
)
def test_split_think(raw, thinking, answer):
    assert split_think(raw) == (thinking, answer)


def _stream(pieces: list[str], starts_in_think: bool) -> list[tuple[str, str]]:
    splitter = ThinkSplitter(starts_in_think=starts_in_think)
    out = [kv for p in pieces for kv in splitter.feed(p)] + list(splitter.flush())
    merged: list[tuple[str, str]] = []
    for kind, text in out:
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


def test_streaming_splitter_with_tags_split_across_tokens():
    pieces = ["<", "think", ">\nHmm, ", "source 1.</", "thi", "nk>\n\n", "Thirty days ", "[1]."]
    assert _stream(pieces, starts_in_think=False) == [("think", "\nHmm, source 1."), ("answer", "\n\nThirty days [1].")]


def test_streaming_splitter_without_opening_tag():
    # R1 templates end the prompt with "<think>\n", so the reply starts inside the reasoning.
    pieces = ["Hmm", ", source", " 1.\n</think>", "\n\nThirty", " days [1]."]
    assert _stream(pieces, starts_in_think=True) == [("think", "Hmm, source 1.\n"), ("answer", "\n\nThirty days [1].")]


def test_streaming_splitter_plain_answer_streams_at_once():
    splitter = ThinkSplitter()
    assert list(splitter.feed("Thirty")) == [("answer", "Thirty")]  # nothing held back once it cannot be a tag
    assert list(splitter.feed(" days")) == [("answer", " days")]
