"""Grounding: how well deepkb.answer.grounding tells an answer sentence its cited passage backs from one it does not.

    .venv/bin/python bench/manuals_fetch.py          # the manuals (Debian doc packages, into bench/cache)
    .venv/bin/python bench/grounding_eval.py         # the report half, the peers beside it
    .venv/bin/python bench/grounding_eval.py --sweep # the tune half: the weights and threshold grid

bench/grounding_sentences.jsonl was written and labelled before the scorer existed (commit 71abc60). Three shapes:
- manuals: our sentences over 30 passages of Debian's git, find, tar, rsync and Python manuals (bench/cache/manuals);
- scifact: our sentences over 14 SciFact abstracts (read from ../shared/data/scifact, never copied here);
- scifact-claims: SciFact's own claims cited to their abstract, by id: SUPPORT -> supported, CONTRADICT ->
  unsupported, and SUPPORT claims cited to another claim's abstract -> unsupported.
Supported sentences restate or paraphrase the cited passage; unsupported ones change a number, swap a name, negate
it, state another passage's fact or invent one. The split is by passage (claim), so no passage is in both halves.

Reported: precision and recall of "unsupported" with 95% bootstrap intervals, per shape and pooled over our
sentences, and the time checking adds per answer (the sentences of one passage checked as one answer, the embedder
loaded). Peers in the same run: cosine alone (LlamaIndex's SemanticSimilarityEvaluator, the STS stage of
hallucination checkers such as longtracer), content-word overlap alone, and deepkb's checks without the embedder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from deepkb.answer.grounding import Claim, Weights, _passage, decide, features  # noqa: E402
from deepkb.retrieval.search import Hit  # noqa: E402

SENTENCES = REPO / "bench" / "grounding_sentences.jsonl"
MANUALS = REPO / "bench" / "cache" / "manuals" / "docs"
SCIFACT = Path(os.environ.get("SCIFACT_DIR", str(REPO.parent / "shared" / "data" / "scifact")))


def load(scifact: Path, manuals: Path) -> list[dict]:
    """The rows with their sentence and cited passage text filled in (shapes whose data is absent are left out)."""
    rows = [json.loads(line) for line in SENTENCES.read_text().splitlines() if line.strip()]
    corpus, claims = {}, {}
    if (scifact / "corpus.jsonl").exists():
        for line in (scifact / "corpus.jsonl").open():
            doc = json.loads(line)
            corpus[doc["_id"]] = f"{doc['title']}\n{doc['text']}"
        for line in (scifact / "queries_test.jsonl").open():
            q = json.loads(line)
            claims[q["_id"]] = q["text"]
    out = []
    for row in rows:
        if row["shape"] == "manuals":
            path = manuals / row["file"]
            if not path.exists():
                continue
            lines = path.read_text(encoding="utf-8").split("\n")
            a, b = row["lines"]
            row["passage"] = "\n".join(lines[a - 1 : b])
        else:
            if row["doc"] not in corpus:
                continue
            row["passage"] = corpus[row["doc"]]
            if row["shape"] == "scifact-claims":
                row["sentence"] = claims[row["claim"]]
        out.append(row)
    return out


def featurize(rows: list[dict], embed) -> None:
    """Each row's features against its passage (one embed call per passage, as per answer in the product)."""
    by_passage: dict[str, list[dict]] = {}
    for row in rows:
        by_passage.setdefault(row["passage"], []).append(row)
    for text, group in by_passage.items():
        hit = Hit(0, "passage", None, None, None, None, 0.0, text)
        passage = _passage(hit)
        sentences = passage.sentences
        if embed is not None:
            vectors = embed([r["sentence"] for r in group] + sentences)
            sims = vectors[: len(group)] @ vectors[len(group) :].T
        for k, row in enumerate(group):
            if embed is not None:
                j = int(sims[k].argmax())
                dense, closest = float(sims[k, j]), sentences[j]
            else:
                dense, closest = None, _word_closest(row["sentence"], sentences)
            claim = Claim(row["sentence"], row["sentence"], [1])
            row["f"] = features(claim, [passage], dense, closest)


def _word_closest(sentence: str, sentences: list[str]) -> str:
    from deepkb.answer.grounding import content_terms

    terms = content_terms(sentence)
    return max(sentences, key=lambda s: len(terms & content_terms(s)))


def prf(rows: list[dict], predict) -> tuple[float, float, int, int]:
    """Precision and recall of "unsupported"."""
    tp = fp = fn = 0
    for row in rows:
        flagged = predict(row)
        wrong = row["label"] == "unsupported"
        tp += flagged and wrong
        fp += flagged and not wrong
        fn += (not flagged) and wrong
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall, tp + fp, tp + fn


def bootstrap(rows: list[dict], predict, n: int = 2000, seed: int = 0) -> tuple[tuple, tuple]:
    """95% intervals of precision and recall, resampling sentences."""
    rng = random.Random(seed)
    flags = [(predict(r), r["label"] == "unsupported") for r in rows]
    ps, rs = [], []
    for _ in range(n):
        sample = [flags[rng.randrange(len(flags))] for _ in flags]
        tp = sum(f and w for f, w in sample)
        fp = sum(f and not w for f, w in sample)
        fn = sum((not f) and w for f, w in sample)
        ps.append(tp / (tp + fp) if tp + fp else 1.0)
        rs.append(tp / (tp + fn) if tp + fn else 1.0)
    ps.sort(), rs.sort()
    lo, hi = int(0.025 * n), int(0.975 * n) - 1
    return (ps[lo], ps[hi]), (rs[lo], rs[hi])


def deepkb_predict(weights: Weights):
    return lambda row: not decide(row["f"], weights)[0]


def cosine_predict(threshold: float):
    return lambda row: row["f"]["dense"] < threshold


def overlap_predict(threshold: float):
    return lambda row: row["f"]["coverage"] < threshold


def f1(rows, predict) -> float:
    p, r, _, _ = prf(rows, predict)
    return 2 * p * r / (p + r) if p + r else 0.0


def sweep(rows: list[dict]) -> tuple[Weights, float, float]:
    """The best weights, threshold and peers' thresholds on the tune rows (F1 of "unsupported")."""
    best = (-1.0, Weights())
    for dense_w, threshold in itertools.product([0.0, 0.25, 0.5, 0.75, 1.0], [x / 100 for x in range(30, 91, 2)]):
        for hard in itertools.product([True, False], repeat=2):
            w = Weights(dense_w, 1 - dense_w, threshold, hard_names=hard[0], hard_negation=hard[1])
            score = f1(rows, deepkb_predict(w))
            if score > best[0]:
                best = (score, w)
    cos = max((x / 100 for x in range(20, 96)), key=lambda t: f1(rows, cosine_predict(t)))
    ovl = max((x / 100 for x in range(10, 100, 2)), key=lambda t: f1(rows, overlap_predict(t)))
    return best[1], cos, ovl


def report_line(name: str, rows: list[dict], predict) -> str:
    p, r, flagged, wrong = prf(rows, predict)
    (plo, phi), (rlo, rhi) = bootstrap(rows, predict)
    return (
        f"| {name} | {len(rows)} ({wrong} unsupported) | {p:.3f} [{plo:.3f}, {phi:.3f}] | "
        f"{r:.3f} [{rlo:.3f}, {rhi:.3f}] |"
    )


def time_per_answer(rows: list[dict], embedder) -> dict:
    """Median and p90 ms of deepkb.answer.grounding.check_answer over answers made of one passage's sentences (up to 5,
    each citing it), with the embedder and without it, beside one embed call of one sentence (what embedding a
    question for search costs on the same machine at the same moment) and the load average."""
    from deepkb.answer.grounding import check_answer

    groups: dict[str, list[dict]] = {}
    for row in rows:
        if row["shape"] != "scifact-claims":
            groups.setdefault(row["passage"], []).append(row)
    load = os.getloadavg()[0]
    timed: dict[str, list[float]] = {"embedder": [], "words only": [], "one query embed": []}
    for text, group in groups.items():
        answer = " ".join(f"{r['sentence'].rstrip('.')} [1]." for r in group[:5])
        hits = [Hit(0, "passage", None, None, None, None, 0.0, text)]
        for name, (call, args) in {
            "embedder": (check_answer, (answer, hits, embedder.embed)),
            "words only": (check_answer, (answer, hits, None)),
            "one query embed": (embedder.embed, ([group[0]["sentence"]],)),
        }.items():
            started = time.perf_counter()
            call(*args)
            timed[name].append((time.perf_counter() - started) * 1000)
    out = {"answers": len(groups), "load_before": load, "load_after": os.getloadavg()[0]}
    for name, times in timed.items():
        times.sort()
        out[name] = (statistics.median(times), times[int(0.9 * (len(times) - 1))])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scifact", type=Path, default=SCIFACT)
    parser.add_argument("--manuals", type=Path, default=MANUALS)
    parser.add_argument("--sweep", action="store_true", help="Tune on the tune half and print the best settings.")
    parser.add_argument("--timing", action="store_true", help="Only the time per answer.")
    args = parser.parse_args()
    rows = load(args.scifact, args.manuals)
    if not rows:
        print("No data: run bench/manuals_fetch.py and check --scifact.", file=sys.stderr)
        return 1
    from deepkb.embedders import create_embedder

    embedder = create_embedder("all-MiniLM-L6-v2")
    if args.timing:
        rows = [r for r in rows if r["shape"] != "scifact-claims"]
    else:
        featurize(rows, embedder.embed)
    tune = [r for r in rows if r["split"] == "tune"]
    report = [r for r in rows if r["split"] == "report"]
    ours = [r for r in tune if r["shape"] != "scifact-claims"]
    if args.timing:
        print_timing(rows, embedder)
        return 0
    weights, cos_t, ovl_t = sweep(ours)
    print(f"tuned on {len(ours)} tune sentences (our shapes): {weights}; cosine alone < {cos_t}; overlap < {ovl_t}")
    if args.sweep:
        p, r, _, _ = prf(ours, deepkb_predict(weights))
        print(f"tune half with them: precision {p:.3f}, recall {r:.3f} of unsupported")
        for kind in sorted({x["kind"] for x in ours}):
            subset = [x for x in ours if x["kind"] == kind]
            print(f"  {kind}: {sum(deepkb_predict(weights)(x) for x in subset)}/{len(subset)} flagged")
            for x in subset:
                ok, score, reason = decide(x["f"], weights)
                if ok == (x["label"] == "supported"):
                    continue
                print(f"     {score:.2f} {reason} | {x['sentence'][:110]}")
        return 0
    word_rows = [dict(r) for r in rows if r["split"] == "report"]
    featurize(word_rows, None)
    print("| checker / shape | sentences | precision of unsupported [95% CI] | recall of unsupported [95% CI] |")
    print("|---|---|---|---|")
    shapes = [
        ("our sentences (manuals + scifact)", [r for r in report if r["shape"] != "scifact-claims"]),
        ("manuals", [r for r in report if r["shape"] == "manuals"]),
        ("scifact (our sentences)", [r for r in report if r["shape"] == "scifact"]),
        ("scifact-claims (SciFact's own)", [r for r in report if r["shape"] == "scifact-claims"]),
    ]
    for name, subset in shapes:
        print(report_line(f"deepkb.answer.grounding: {name}", subset, deepkb_predict(Weights())))
    for name, subset in shapes[:1] + shapes[3:]:
        print(report_line(f"cosine alone (< {cos_t}): {name}", subset, cosine_predict(cos_t)))
        print(report_line(f"word overlap alone (< {ovl_t}): {name}", subset, overlap_predict(ovl_t)))
    no_embed = [r for r in word_rows if r["shape"] != "scifact-claims"]
    print(
        report_line("deepkb.answer.grounding without the embedder: our sentences", no_embed, deepkb_predict(Weights()))
    )
    kinds = sorted({r["kind"] for r in shapes[0][1]})
    print("\nrecall by kind (our sentences, report half); false flags among supported kinds:")
    for kind in kinds:
        subset = [r for r in shapes[0][1] if r["kind"] == kind]
        flagged = sum(deepkb_predict(Weights())(r) for r in subset)
        print(f"  {kind}: {flagged}/{len(subset)} flagged")
    print_timing(rows, embedder)
    return 0


def print_timing(rows: list[dict], embedder) -> None:
    timing = time_per_answer(rows, embedder)
    print(f"\ntime per answer ({timing['answers']} answers of up to 5 sentences, load average "
          f"{timing['load_before']:.1f} -> {timing['load_after']:.1f}):")  # fmt: skip
    for name in ("embedder", "words only", "one query embed"):
        median, p90 = timing[name]
        print(f"  {name}: median {median:.1f} ms, p90 {p90:.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
