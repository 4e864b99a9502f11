"""Excerpts: under a CPU source budget the prompt holds the matching sentences of each chunk, with exact lines."""

from __future__ import annotations

import gzip
import html
import re
import shutil
from pathlib import Path

import pytest

from deepkb.answer.citations import resolve_citations
from deepkb.answer.prompt import build_prompt, pack_excerpts, spread_documents
from deepkb.answer.stream import CPU_SOURCE_TOKENS, AskOptions, ask
from deepkb.kb import KnowledgeBase
from deepkb.llm import LlamaCppLLM
from deepkb.retrieval.excerpt import ELLIPSIS, score_segments, segments

from conftest import SAMPLE_DATA, write

QUESTION = "How often must API keys be rotated?"
MANUALS = Path(__file__).parent / "data" / "manuals"
# bash(1), the set builtin: the definition of -e (tests/data/manuals/bash-set-builtin.html, from Debian's bash-doc).
SET_E = (
    "Exit immediately if a pipeline (which may consist of a single simple command), a list, or a compound command "
    "(see SHELL GRAMMAR above), exits with a non-zero status."
)


@pytest.fixture(scope="module")
def llm(tiny_model):
    return LlamaCppLLM(tiny_model, context_size=2048, gpu_layers=0)


@pytest.fixture(scope="module")
def sample_kb(tmp_path_factory, embedder):
    """A knowledge base of a copy of data/, ingested once for the tests that only read it."""
    root = tmp_path_factory.mktemp("excerpts")
    shutil.copytree(SAMPLE_DATA, root / "docs")
    base = KnowledgeBase.open(root / "kb", embedder=embedder)
    base.ingest([root / "docs"])
    yield base, root / "docs"
    base.close()


def source_text(path: str, page: int | None, first: int, last: int) -> str:
    """What a reader finds at those lines: the file's own lines (a PDF page's extracted text, HTML without tags)."""
    if page is not None:
        from pypdf import PdfReader

        lines = (PdfReader(path).pages[page - 1].extract_text() or "").split("\n")
    else:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    text = " ".join(lines[first - 1 : last])
    if path.endswith(".html"):
        text = html.unescape(re.sub(r"<[^>]*>", " ", text))
    return words(text)


def words(text: str) -> str:
    """The words, compared without the spacing and table bars that loaders add or drop."""
    return " ".join(re.findall(r"\w+", text))


def kept_pieces(text: str) -> list[str]:
    """The source text of a prompt block: without the ellipses that mark where it was cut."""
    return [words(p) for p in text.split(ELLIPSIS) if words(p)]


def excerpt_prompt(kb, llm, question: str, budget: int):
    hits = spread_documents(kb.search(question, k=6))
    candidates = pack_excerpts(hits, score_segments(question, hits, kb.embedder.embed), llm, budget)
    return hits, build_prompt(question, candidates, llm, 256, source_tokens=budget)


def test_every_kept_sentence_stands_on_the_lines_it_names(sample_kb, llm):
    kb, sample_copy = sample_kb
    questions = [QUESTION, "What does the retention policy say about backups?", "Where are eye wash stations?",
                 "How do I file travel expenses?", "Who approves a security exception?"]  # fmt: skip
    kinds = set()
    for question in questions:
        for hit in kb.search(question, k=6):
            segs = segments(hit)
            assert segs is not None, hit.path  # every format of data/ is matched again: md, txt, py, pdf, html
            kinds.add(Path(hit.path).suffix)
            for seg in segs:
                assert hit.line_start <= seg.line_start <= seg.line_end <= hit.line_end
                assert words(seg.text(hit)) in source_text(hit.path, hit.page, seg.line_start, seg.line_end), (
                    hit.path,
                    seg,
                )
        _, prompt = excerpt_prompt(kb, llm, question, 160)
        for source in prompt.sources:  # what the model reads is what the file holds at the lines the citation names
            for piece in kept_pieces(source.text):
                assert piece in source_text(source.path, source.page, source.line_start, source.line_end)
    assert {".md", ".pdf", ".html"} <= kinds


def test_excerpts_fit_more_sources_in_the_same_budget(sample_kb, llm):
    kb, sample_copy = sample_kb
    hits = spread_documents(kb.search(QUESTION, k=6))
    bare = build_prompt(QUESTION, [], llm, 256).prompt_tokens
    for budget in (96, 160, 256):
        whole = build_prompt(QUESTION, hits, llm, 256, source_tokens=budget)
        _, cut = excerpt_prompt(kb, llm, QUESTION, budget)
        assert cut.prompt_tokens - bare <= budget + 4  # a merge where two blocks meet can cost a token or two
        if budget > 96:  # under 96 tokens a second label and sentence do not fit: the first source grows instead
            assert len(cut.sources) > len(whole.sources)
        assert cut.sources[0].chunk_id == hits[0].chunk_id  # the best chunk always goes in
    _, roomy = excerpt_prompt(kb, llm, QUESTION, 4000)
    assert [s.text for s in roomy.sources] == [h.text for h in hits]  # room for everything: whole chunks


def test_a_citation_of_an_excerpt_names_the_excerpts_lines(sample_kb, llm):
    kb, sample_copy = sample_kb
    hits, prompt = excerpt_prompt(kb, llm, QUESTION, 128)
    policy = next(n for n, s in enumerate(prompt.sources, 1) if s.path.endswith("security-policy.md"))
    cited = resolve_citations(f"API keys are rotated at least every 90 days [{policy}].", prompt.sources)
    hit = cited.citations[0].hit
    chunk = next(h for h in hits if h.chunk_id == hit.chunk_id)
    assert chunk.line_start <= hit.line_start <= hit.line_end <= chunk.line_end
    assert ELLIPSIS in hit.text and len(hit.text) < len(chunk.text)  # an excerpt, not its whole chunk
    lines = words(
        "\n".join((sample_copy / "security-policy.md").read_text().split("\n")[hit.line_start - 1 : hit.line_end])
    )
    assert all(piece in lines for piece in kept_pieces(hit.text))
    assert f"L{hit.line_start}" in prompt.messages[-1]["content"]  # the prompt's label names the same lines
    assert cited.citations[0].to_json()["line_start"] == hit.line_start


def test_the_answer_line_deep_inside_a_long_chunk_is_kept(kb, tmp_path, llm):
    filler = [
        f"Item {i}: the archive shelf {i} holds printed binders of the {i}th quarter, sorted by team."
        for i in range(30)
    ]
    secret = "The vault master passphrase is rotated every 45 days by the duty security officer."
    body = "\n".join(filler[:17] + [secret] + filler[17:])
    doc = write(tmp_path / "docs" / "archive.md", f"# Archive room\n\n{body}\n")
    write(tmp_path / "docs" / "other.md", "# Canteen\n\nThe canteen opens at eight and closes at three.\n")
    kb.ingest([tmp_path / "docs"])
    question = "How often is the vault master passphrase rotated?"
    hits, prompt = excerpt_prompt(kb, llm, question, 64)
    chunk = next(h for h in hits if secret in h.text)
    assert chunk.line_end - chunk.line_start > 5  # the answer sits inside a long chunk
    kept = next(s for s in prompt.sources if s.chunk_id == chunk.chunk_id)
    answer_line = doc.read_text().split("\n").index(secret) + 1
    assert secret in kept.text and kept.line_start <= answer_line <= kept.line_end
    assert kept.line_end - kept.line_start < chunk.line_end - chunk.line_start
    assert len(kept.text) < len(chunk.text)


def test_a_chunk_whose_file_changed_goes_in_whole_with_its_own_span(kb, tmp_path, llm):
    policy = write(
        tmp_path / "docs" / "keys.md", "# Keys\n\nAPI keys are rotated every 90 days.\nTokens expire in a day.\n"
    )
    kb.ingest([tmp_path / "docs"])
    policy.write_text(policy.read_text().replace("API keys are", "Keys are"))  # not ingested again
    hits, prompt = excerpt_prompt(kb, llm, QUESTION, 4000)
    stale = hits[0]
    assert segments(stale) is None  # its lines no longer match the file
    sent = prompt.sources[0]
    assert (sent.text, sent.line_start, sent.line_end) == (stale.text, stale.line_start, stale.line_end)


def test_ask_on_a_cpu_sends_excerpts_and_cites_their_lines(sample_kb, llm):
    kb, sample_copy = sample_kb
    result = ask(
        QUESTION,
        lambda q, k: kb.search(q, k=k),
        llm,
        AskOptions(k=6, answer_tokens=32, source_tokens=128),
        embed=kb.embedder.embed,
    )
    sent = result.citations and [c.hit for c in result.citations]
    listed = [h for h in result.also_retrieved if h.chunk_id in {x.chunk_id for x in kb.search(QUESTION, k=6)}]
    assert result.timings.excerpt_ms is not None
    narrowed = [h for h in (sent or []) + listed if ELLIPSIS in h.text]
    assert narrowed  # what the model was given, cited or not, is listed with the excerpt's own lines
    for h in narrowed:
        for piece in kept_pieces(h.text):
            assert piece in source_text(h.path, h.page, h.line_start, h.line_end)


@pytest.mark.parametrize("budget", [192, CPU_SOURCE_TOKENS])
def test_the_model_sees_the_definition_of_the_option_it_is_asked_about(kb, tmp_path, llm, budget):
    """ "what does set -e do" over bash's manual: the excerpt sent holds the -e definition sentence, at its lines."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("bash-set-builtin.html", "git-rebase.txt"):
        shutil.copy(MANUALS / name, docs / name)
    kb.ingest([docs])
    _, prompt = excerpt_prompt(kb, llm, "what does set -e do", budget)
    holding = [s for s in prompt.sources if words(SET_E) in words(s.text)]
    assert holding, [s.text for s in prompt.sources]
    sent = holding[0]
    assert words(SET_E) in source_text(sent.path, None, sent.line_start, sent.line_end)


def test_over_the_whole_bash_manual_the_model_sees_the_definition_of_set_e(kb, tmp_path, llm):
    """The same question over bash's whole manual (14,964 lines, tests/data/manuals/bash.html.gz), where -e's entry is
    one of hundreds: its chunk stands under "set [...] > -e" (a definition list's entry under its terms), so it is
    among the sources (joined with the chunks after it into one passage under "set [...]"), and the excerpt sent at
    the default CPU budget holds the -e definition sentence."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bash.html").write_bytes(gzip.decompress((MANUALS / "bash.html.gz").read_bytes()))
    shutil.copy(MANUALS / "git-rebase.txt", docs / "git-rebase.txt")
    kb.ingest([docs])
    hits, prompt = excerpt_prompt(kb, llm, "what does set -e do", CPU_SOURCE_TOKENS)
    assert any("> SHELL BUILTIN COMMANDS > set [" in h.heading and words(SET_E) in words(h.text) for h in hits)
    holding = [s for s in prompt.sources if words(SET_E) in words(s.text)]
    assert holding, [(s.line_start, s.text[:80]) for s in prompt.sources]
    assert words(SET_E) in source_text(holding[0].path, None, holding[0].line_start, holding[0].line_end)
