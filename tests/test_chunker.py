"""Chunking: sized in the embedding model's own tokens, spans that really contain the text, stable cuts."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from deepkb.embedders import resolve_model
from deepkb.ingest.chunker import chunk_units
from deepkb.loaders import load

SAMPLE = Path(__file__).resolve().parent.parent / "data"


def _chunks(embedder, name: str, raw: bytes, target: int = 200):
    doc = load(Path(name), raw)
    return chunk_units(doc.units, embedder.count_tokens, embedder.max_tokens, target_tokens=target, overlap_tokens=32)


def test_no_chunk_exceeds_what_the_model_reads(embedder):
    long_line = " ".join(f"word{i} antidisestablishmentarianism" for i in range(400))
    raw = ("# Title\n\n" + long_line + "\n\n" + "short paragraph\n\n" * 50).encode()
    chunks = _chunks(embedder, "big.md", raw, target=400)
    assert len(chunks) > 3
    counts = embedder.count_tokens([c.embed_text for c in chunks])
    assert max(counts) <= embedder.max_tokens == 254
    assert all(c.n_tokens == n for c, n in zip(chunks, counts))


def test_text_spans_contain_the_chunk_text(embedder):
    for name in ("security-policy.md", "release-notes.txt", "rotate_keys.py", "incident-response-runbook.md"):
        raw = (SAMPLE / name).read_bytes()
        source = raw.decode().split("\n")
        for chunk in _chunks(embedder, name, raw, target=120):
            span = source[chunk.line_start - 1 : chunk.line_end]
            for line in filter(None, chunk.text.split("\n")):
                assert line in span, (name, chunk.line_start, chunk.line_end, line)


def test_pdf_chunks_stay_on_one_page_and_the_page_holds_their_text(embedder):
    from pypdf import PdfReader

    raw = (SAMPLE / "backup-retention-policy.pdf").read_bytes()
    pages = [p.extract_text().split("\n") for p in PdfReader(str(SAMPLE / "backup-retention-policy.pdf")).pages]
    chunks = _chunks(embedder, "backup-retention-policy.pdf", raw, target=120)
    assert {c.page for c in chunks} == set(range(1, len(pages) + 1))
    for chunk in chunks:
        lines = [x.strip() for x in pages[chunk.page - 1][chunk.line_start - 1 : chunk.line_end]]
        assert all(line in lines for line in filter(None, chunk.text.split("\n")))


def test_headings_start_chunks_and_label_them(embedder):
    raw = (SAMPLE / "security-policy.md").read_bytes()
    chunks = _chunks(embedder, "security-policy.md", raw)
    rotation = [c for c in chunks if c.heading and "How to rotate an API key" in c.heading]
    assert rotation and rotation[0].text.startswith("## 4. How to rotate an API key")
    assert all(c.embed_text.startswith(c.heading) for c in chunks if c.heading)


def test_a_heading_over_an_empty_section_does_not_head_the_next_section(embedder):
    """SQLite's pages open with "1. Syntax" over a diagram (dropped), then "2. Description": the description's chunk
    stands under "2. Description" (the two paths share nothing, so it had no heading at all), and its text still
    starts on its span's first line. A heading over its first subsection still heads it."""
    svg = "<svg><path d='M1,2'/></svg>\n" * 30
    html = f"<h1>1. Syntax</h1>\n<p><svg>{svg}</svg></p>\n<h1>2. Description</h1>\n<p>VACUUM rebuilds the file.</p>\n"
    (chunk,) = _chunks(embedder, "lang_vacuum.html", html.encode())
    assert chunk.heading == "2. Description" and chunk.text.startswith("1. Syntax")
    md = "## Options\n\n## Usage\n\nRun it.\n\n# Guide\n\n## Install\n\nCopy it.\n"
    assert [c.heading for c in _chunks(embedder, "guide.md", md.encode())] == [
        "Usage",
        "Guide",
    ]  # a parent keeps heading its first subsection


def test_consecutive_chunks_overlap_a_little(embedder):
    raw = "\n".join(f"Line {i} says something about topic {i % 7} in plain words." for i in range(200)).encode()
    chunks = _chunks(embedder, "log.txt", raw, target=120)
    assert len(chunks) > 5
    overlaps = [a.line_end - b.line_start + 1 for a, b in zip(chunks, chunks[1:])]
    assert all(0 <= o <= 3 for o in overlaps) and any(o > 0 for o in overlaps)


def test_an_edit_keeps_the_other_chunks_of_a_long_file(embedder):
    paragraphs = [f"Paragraph {i}. " + " ".join(f"fact{i}_{j} is recorded here" for j in range(12)) for i in range(60)]
    before = _chunks(embedder, "notes.txt", "\n\n".join(paragraphs).encode())
    paragraphs[5] = paragraphs[5].replace("fact5_3 is recorded here", "fact5_3 was corrected after review, twice")
    after = _chunks(embedder, "notes.txt", "\n\n".join(paragraphs).encode())
    changed = {c.hash for c in after} - {c.hash for c in before}
    assert len(before) > 15 and 1 <= len(changed) <= 3


def test_token_counts_are_exact_even_after_the_model_truncated_a_long_text(embedder):
    long_line = " ".join(f"word{i} antidisestablishmentarianism" for i in range(200))
    embedder.embed([long_line])  # encode() leaves truncation to the model's 256 tokens set on its tokenizer
    texts = [long_line, "word1", "", "antidisestablishmentarianism", "word1"]
    reference = Tokenizer.from_file(str(resolve_model(embedder.name)[0] / "tokenizer.json"))
    reference.no_truncation()  # the file itself truncates at 128 and pads to 128
    reference.no_padding()
    expected = [len(e) for e in reference.encode_batch(texts, add_special_tokens=False)]
    assert embedder.count_tokens(texts) == expected
    assert embedder.count_tokens(texts) == expected  # the second time from remembered counts
    assert embedder.count_tokens([long_line])[0] > embedder.max_tokens


def test_a_section_title_goes_on_with_the_term_that_opens_its_section(embedder):
    """git-stash's COMMANDS section opens with a long term (`push [-p|--patch] ...::`) over a definition longer than a
    chunk. The term never ends a chunk, so it moved on with its definition and left the title a chunk of its own,
    "COMMANDS" alone (first among the results for a question about sub-commands). The title goes with them; a title
    over a long paragraph without a term is left as it was."""
    definition = "\n".join(f"\tSave your local modifications to a new stash entry, line {i} of it." for i in range(40))
    term = "push [-p|--patch] [-S|--staged] [-k|--[no-]keep-index] [-u|--include-untracked] [-a|--all] [-q|--quiet]::"
    text = f"git-stash(1)\n============\n\nDESCRIPTION\n-----------\n\nSee linkgit:git-add[1].\n\nAnd linkgit:git-reset[1].\n\nCOMMANDS\n--------\n\n{term}\n\n{definition}\n"
    chunks = _chunks(embedder, "git-stash.txt", text.encode())
    first = next(c for c in chunks if "COMMANDS" in c.text)
    assert first.text.startswith("COMMANDS") and term in first.text and "line 0 of it" in first.text
    assert first.line_start == 11 and first.heading == "git-stash(1) > COMMANDS"
    assert not [c for c in chunks if len(c.text.split()) <= 2]
