"""Follow-ups over real manuals: does the second question of a conversation retrieve from the right document?

    .venv/bin/python bench/conversation.py [--kb DIR]

80 two-question conversations (bench/conversation_pairs.jsonl, written before any tuning) over Debian's git, bash,
sqlite and Python documentation: 40 continuations ("and how do I get them back later?", and 15 with no cue word: "is
there a dry run first?" after a git clean question) and 40 topic switches ("what does set -e do" after a git rebase
question; between nearby topics: "how do I shrink the database file?" after an sqlite WAL question). Each pair names the document(s) that answer its second
question (`want`, by file stem: a git page's .txt and .html are the same page) and, for a switch, the document of
the old topic (`old`). The halves are fixed by id: odd ids tune, even ids report (20 of each kind in each half). Ids 1-48 were written
first; 49-80 were written (and committed alone) before the decision for cue-less questions was designed.

Each conversation runs as `deepkb ask` then `deepkb ask -c` run it without a model: a ChatSession answers the first
question (retrieval only), then retrieves for the second. Scored per pair: the first source is from a wanted
document (a twin listed in its `also_in` counts), and, for a switch, no source of the old topic is in the top 3.
Beside deepkb's decision it scores the decision without its step 3 (follow_up.TOPIC_MARGIN; as before it), the two
fixed strategies (always search the question alone, always join the earlier question) and the fusion of both that
deepkb used before (b62b0f6), and sweeps follow_up.VAGUE and follow_up.TOPIC_MARGIN (the tune half chose both).
95% bootstrap intervals per half and per kind. `--half tune` runs the tune half alone (for tuning without seeing the
other). Writes bench/out/conversation.json.

The pairs were committed before deepkb.follow_up was measured on them, but its word cues were written by someone who
had read all 48 (both halves); the 28 follow-ups of tests/test_answer_retrieval.py and the 67 stand-alone questions
of bench/manuals_questions.jsonl, written by others, are the cues' outside check (23 of 28 and 1 of 67 flagged).

The documents: bench/cache/conversation/docs (git-ignored), fetched by `fetch()` from pinned Debian 12 packages.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

PAIRS = REPO / "bench" / "conversation_pairs.jsonl"
ROOT = REPO / "bench" / "cache" / "conversation"
DOCS = ROOT / "docs"
OUT = REPO / "bench" / "out" / "conversation.json"
K = 6  # what `deepkb ask` retrieves
SWEEP = (0.0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 1.01)  # follow_up.VAGUE values tried on the tune half
PREVIOUS = "deepkb without step 3 (3cb29e6)"
MARGINS = (-1.0, 0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2)  # follow_up.TOPIC_MARGIN (-1: no step 3)

PACKAGES = {
    "bash-doc": "5.2.15-2",
    "git-doc": "1:2.39.5-0+deb12u3",
    "sqlite3-doc": "3.40.1-2+deb12u2",
    "python3.11-doc": "3.11.2-6+deb12u9",
}
_GIT = "usr/share/doc/git-doc"
_SQLITE = "usr/share/doc/sqlite3"
_PY = "usr/share/doc/python3.11/html/_sources/library"
FILES = {
    "usr/share/doc/bash/bash.html": "bash.html",
    **{f"{_GIT}/git-{n}.txt": f"git-{n}.txt" for n in
       ("rebase", "stash", "reset", "bisect", "cherry-pick", "clean", "commit", "log", "mv")},
    **{f"{_GIT}/git-{n}.html": f"git-{n}.html" for n in ("rebase", "stash", "clean")},  # twins, as git-doc ships them
    **{f"{_SQLITE}/{n}.html": f"sqlite-{n}.html" for n in
       ("cli", "wal", "autoinc", "foreignkeys", "lang_vacuum", "datatype3", "lang_createindex", "partialindex",
        "pragma", "expridx")},
    **{f"{_PY}/{n}.rst.txt": f"python-{n}.rst.txt" for n in
       ("argparse", "subprocess", "json", "pathlib", "logging", "sqlite3")},
}  # fmt: skip


def fetch() -> Path:
    """Download, extract and copy the documents (once); returns the docs folder."""
    if DOCS.exists() and all((DOCS / name).exists() for name in FILES.values()):
        return DOCS
    from manuals_fetch import unpack

    tree = unpack(PACKAGES, ROOT)
    DOCS.mkdir(parents=True, exist_ok=True)
    for source, name in FILES.items():
        shutil.copyfile(tree / source, DOCS / name)
    return DOCS


def load_pairs(split: str = "all") -> list[dict]:
    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    for p in pairs:
        p["split"] = "tune" if p["id"] % 2 else "report"
    return [p for p in pairs if split in ("all", p["split"])]


def stem(path: str) -> str:
    return Path(path).name.split(".", 1)[0]


def stems(hit) -> set[str]:
    """The documents a hit stands for: its own and its twins' (deepkb.retrieval.twins)."""
    return {stem(hit.path)} | {stem(t.path) for t in hit.also_in}


def judge(pair: dict, hits: list) -> dict:
    right = bool(hits) and bool(stems(hits[0]) & set(pair["want"]))
    kept_old = pair["kind"] == "switch" and any(stems(h) & set(pair["old"]) for h in hits[:3])
    return {"right": right, "kept_old": kept_old}


def strategies(kb, pair: dict) -> dict[str, list]:
    """The second question's hits: as deepkb decides (ChatSession), bare, always joined, the old fusion, and deepkb's
    decision at each VAGUE of SWEEP and each TOPIC_MARGIN of MARGINS (its hits settled again from the same
    searches)."""
    from deepkb.conversation.follow_up import IN_CONVERSATION_DEPTH, VAGUE, decide, settle
    from deepkb.conversation.session import ChatSession

    session = ChatSession(kb, None, save=False)
    session.ask(pair["first"])  # retrieval only: no model
    sources = session.previous_sources()
    decided = session.retrieve(pair["second"], K)
    decision = session.decision
    bare = kb.search(pair["second"], k=K)
    joined = kb.search(f"{pair['first']} {pair['second']}", k=K)
    out = {"deepkb": decided, "bare": bare, "joined": joined, "fused (b62b0f6)": _old_fusion(joined, bare, K)}
    before = decide([pair["first"]], pair["second"], kb.embedder.embed, sources=bool(sources))
    wide = kb.search(pair["second"], k=IN_CONVERSATION_DEPTH) if before.decision == "new topic" else None
    for vague in SWEEP:
        out[f"_vague {vague}"] = decided if wide is None else settle(before, wide, sources, vague)[1][:K]
    for margin in MARGINS:
        out[f"_margin {margin}"] = decided if wide is None else settle(before, wide, sources, VAGUE, margin)[1][:K]
    out[PREVIOUS] = out["_margin -1.0"]  # no step 3: the decision before it (main 3cb29e6)
    return out | {"_decision": decision}


def _old_fusion(joined: list, bare: list, k: int, rrf_k: int = 20) -> list:
    """What ChatSession.retrieve did before: RRF of the joined and the bare search (deepkb b62b0f6)."""
    scores: dict[int, float] = {}
    first: dict[int, object] = {}
    for hits in (joined, bare):
        for rank, hit in enumerate(hits, 1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + 1.0 / (rrf_k + rank)
            first.setdefault(hit.chunk_id, hit)
    return [first[c] for c in sorted(scores, key=lambda c: -scores[c])[:k]]


def bootstrap(flags: list[bool], rounds: int = 2000, seed: int = 7) -> tuple[float, float]:
    """95% percentile bootstrap interval of a share."""
    if not flags:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(flags)
    shares = sorted(sum(rng.choice(flags) for _ in range(n)) / n for _ in range(rounds))
    return (round(shares[int(0.025 * rounds)], 3), round(shares[int(0.975 * rounds) - 1], 3))


def summarize(rows: list[dict], name: str) -> dict:
    right = [r[name]["right"] for r in rows]
    switches = [r for r in rows if r["kind"] == "switch"]
    continuations = [r for r in rows if r["kind"] == "continue"]
    return {
        "pairs": len(rows),
        "first_source_right": sum(right),
        "share": round(sum(right) / len(rows), 3) if rows else None,
        "ci95": bootstrap(right),
        "continuations": len(continuations),
        "continuations_right": sum(r[name]["right"] for r in continuations),
        "continuations_ci95": bootstrap([r[name]["right"] for r in continuations]),
        "switches": len(switches),
        "switches_right": sum(r[name]["right"] for r in switches),
        "switches_ci95": bootstrap([r[name]["right"] for r in switches]),
        "switches_keeping_old_in_top3": sum(r[name]["kept_old"] for r in switches),
    }


def run(kb_dir: Path | None = None, half: str = "all") -> dict:
    from deepkb.kb import KnowledgeBase

    docs = fetch()
    kb_dir = kb_dir or ROOT / "kb"
    with KnowledgeBase.open(kb_dir) as kb:
        started = time.perf_counter()
        report = kb.ingest([docs])
        print(f"ingest: {report.chunks_embedded} chunks embedded in {time.perf_counter() - started:.0f} s", flush=True)
        rows = []
        for pair in load_pairs(half):
            got = strategies(kb, pair)
            row = {"id": pair["id"], "kind": pair["kind"], "split": pair["split"], "decision": got["_decision"]}
            for name, hits in got.items():
                if name.startswith(("_vague", "_margin")):
                    row[name] = judge(pair, hits)
                elif not name.startswith("_"):
                    row[name] = judge(pair, hits) | {"top3": [Path(h.path).name for h in hits[:3]]}
            rows.append(row)
    names = ("deepkb", PREVIOUS, "bare", "joined", "fused (b62b0f6)")

    def swept(key: str, values) -> dict:
        """Pairs right with nothing of the old topic in the top 3, per half, at each value of a threshold."""
        out = {}
        for value in values:
            score = {"tune": 0, "report": 0}
            for r in rows:
                chosen = r[f"{key} {value}"]
                score[r["split"]] += chosen["right"] and not chosen["kept_old"]
            out[value] = score
        return out

    sweep = swept("_vague", SWEEP)  # follow_up.VAGUE
    margins = swept("_margin", MARGINS)  # follow_up.TOPIC_MARGIN
    figures = {
        split: {name: summarize([r for r in rows if split in ("all", r["split"])], name) for name in names}
        for split in ("tune", "report", "all")
    }
    return {"figures": figures, "sweep": sweep, "margins": margins, "rows": rows}


def markdown(result: dict) -> list[str]:
    lines = ["| half | strategy | first source right (95% CI) | continuations (95% CI) | switches (95% CI) "
             "| switches with old topic in top 3 |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    ci = lambda c: f"{c[0]:.2f}-{c[1]:.2f}"  # noqa: E731
    for split in ("tune", "report"):
        for name, f in result["figures"][split].items():
            if not f["pairs"]:
                continue
            lines.append(
                f"| {split} | {name} | {f['first_source_right']}/{f['pairs']} ({ci(f['ci95'])}) "
                f"| {f['continuations_right']}/{f['continuations']} ({ci(f['continuations_ci95'])}) "
                f"| {f['switches_right']}/{f['switches']} ({ci(f['switches_ci95'])}) "
                f"| {f['switches_keeping_old_in_top3']} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kb", type=Path, help="knowledge base folder (default bench/cache/conversation/kb)")
    parser.add_argument("--half", choices=("tune", "report", "all"), default="all",
                        help="only this half's pairs (tune on 'tune' without seeing the report half)")  # fmt: skip
    args = parser.parse_args()
    result = run(args.kb, args.half)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print("\n".join(markdown(result)))
    print("pairs right with nothing of the old topic in the top 3, by follow_up.VAGUE:", result["sweep"])
    print("pairs right with nothing of the old topic in the top 3, by follow_up.TOPIC_MARGIN:", result["margins"])
    for row in result["rows"]:
        wrong = not row["deepkb"]["right"] or row["deepkb"]["kept_old"]
        if wrong:
            print(f"#{row['id']} {row['kind']} ({row['split']}): {row['decision']} top3 {row['deepkb']['top3']}")


if __name__ == "__main__":
    main()
