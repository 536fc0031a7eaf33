"""The validator on the held-out test split, on the old regression set, and its throughput.

- Test split of data/rewrites/labelled.jsonl (never used to fit or tune anything): per label, the
  share decided right (good kept, bad rejected) and the reasons given, for the learnt validator
  without and with the Gemma fluency features and for the old lexicon validator. Targets (issue 10):
  good kept >= 90%, every bad label rejected >= 90%, ungrammatical rejected >= 95%.
- tests/data/labelled_rewrites.jsonl (the old regression set): precision / recall of accepting `good`.
- Throughput: rows/s on BENCH_VALIDATOR_ROWS rows (default 2000) made by the rules rewriter from
  real prompts of ../shared/data/prompts (a seeded sample, 5 negatives per prompt over the five
  axes, as in 6,000 prompts x 5: each prompt is one text to score per 5 rows), without and with
  fluency (each on a fresh, empty embedding cache, and learnt again on the warm one; fluency, the
  Gemma span states of `SpanStates` (float32, no cache), on the first BENCH_VALIDATOR_FLUENCY_ROWS
  rows, default 1000, the Gemma load included), extrapolated linearly to 30,000 rows (6,000
  prompts x 5 axes).
- With the packaged pair classifier (`direct_data/backends/pair.py`; BENCH_VALIDATOR_PAIR=0 leaves it
  out): the learnt+pair and learnt+fluency+pair columns, and a learnt+fluency+pair throughput line
  on the fluency rows (the classifier's load and LoRA merge included).

Writes bench/results/validator.json and bench/results/validator.md (a table for the README).
Only aggregate numbers of the test split are written; its rows are never printed.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
N_ROWS = int(os.environ.get("BENCH_VALIDATOR_ROWS", "2000"))
PER_PROMPT = 5  # negatives per prompt in the throughput rows
FLUENCY_ROWS = int(os.environ.get("BENCH_VALIDATOR_FLUENCY_ROWS", "1000"))
FLUENCY = os.environ.get("BENCH_VALIDATOR_FLUENCY", "1") != "0"
#: also the learnt model blended with the packaged pair classifier (`direct_data.backends.pair`)
PAIR = os.environ.get("BENCH_VALIDATOR_PAIR", "1") != "0"


def pair_classifier():
    """The packaged pair classifier, or None (BENCH_VALIDATOR_PAIR=0, or none packaged)."""
    from direct_data.backends.pair import ARTEFACT, PairClassifier

    return PairClassifier.load() if PAIR and ARTEFACT.is_file() else None
TARGETS = {"good": 0.90, "ungrammatical": 0.95}
#: the test split's blind batch: rows whose note ends so (docs/labelling-guide.md, batch 6)
BLIND_BATCH = "(batch 6)"


def regression_pr(validator) -> dict:
    rows = [json.loads(x) for x in open(ROOT / "tests" / "data" / "labelled_rewrites.jsonl", encoding="utf-8") if x.strip()]
    vs = validator.check_many(rows, dedupe_within=False)
    tp = sum(v.accepted and r["label"] == "good" for r, v in zip(rows, vs))
    fp = sum(v.accepted and r["label"] == "bad" for r, v in zip(rows, vs))
    fn = sum(not v.accepted and r["label"] == "good" for r, v in zip(rows, vs))
    return {"rows": len(rows), "precision": round(tp / max(tp + fp, 1), 4), "recall": round(tp / max(tp + fn, 1), 4), "tp": tp, "fp": fp, "fn": fn}


def rules_rows(n: int, per_prompt: int = PER_PROMPT) -> list[tuple[str, str, str]]:
    """`n` rows, `per_prompt` negatives of each prompt (the issue's 30k = 6,000 prompts x 5): rules
    rewrites of a seeded shuffle of the shared prompts, taken round-robin over the five axes (first
    candidates first); prompts with fewer than `per_prompt` candidates are skipped."""
    from direct_data.text.axes import AXES
    from direct_data.text.learnt import DEFAULT_PROMPTS
    from direct_data.text.rules import rewrite

    prompts: list[str] = []
    for f in sorted(DEFAULT_PROMPTS.glob("*.jsonl")):
        for line in open(f, encoding="utf-8"):
            if line.strip():
                r = json.loads(line)
                t = r.get("prompt") or r.get("caption") or r.get("text")
                if isinstance(t, str) and t.strip():
                    prompts.append(t)
    prompts = sorted(set(prompts))
    random.Random(0).shuffle(prompts)
    rows: list[tuple[str, str, str]] = []
    for p in prompts:
        cands = {a: rewrite(p, a, seed=0, num_candidates=per_prompt) for a in AXES}
        mine = [(p, a, cands[a][i].text) for i in range(per_prompt) for a in AXES if i < len(cands[a])][:per_prompt]
        if len(mine) == per_prompt:
            rows.extend(mine)
        if len(rows) >= n:
            break
    return rows[:n]


def throughput(validator, rows) -> dict:
    t = time.perf_counter()
    vs = validator.check_many(rows, dedupe_within=False)
    dt = time.perf_counter() - t
    rps = len(rows) / dt
    return {"rows": len(rows), "prompts": len({r[0] for r in rows}), "seconds": round(dt, 1), "rows_per_s": round(rps, 1), "extrapolated_30k_minutes": round(30000 / rps / 60, 1),
            "accepted": sum(v.accepted for v in vs)}


def main() -> int:
    from direct_data.backends.embed import Embedder
    from direct_data.backends.models import load_sentence_model
    from direct_data.text import learnt
    from direct_data.text.validator import VALIDATOR_EMBED_BACKEND, Validator, ValidatorConfig

    test = learnt.load_labelled(splits=("test",))
    blind = [r for r in test if r.note.endswith(BLIND_BATCH)]
    meta = json.loads(learnt.SIDECAR.read_text(encoding="utf-8"))
    base = Validator()
    emb, model = base.embedder, base.model
    lexicon = Validator(embedder=emb, config=ValidatorConfig(mode="lexicon"))
    configs: dict[str, Validator] = {"learnt": base, "lexicon": lexicon}
    scorer = None
    if FLUENCY and model.accept_fluency is not None:
        from direct_data.backends.fluency import SpanStates

        scorer = SpanStates()
        configs["learnt+fluency"] = Validator(embedder=emb, model=model, fluency=scorer)
    pc = pair_classifier()
    if pc is not None:
        configs["learnt+pair"] = Validator(embedder=emb, model=model, pair=pc)
        if scorer is not None:
            configs["learnt+fluency+pair"] = Validator(embedder=emb, model=model, fluency=scorer, pair=pc)
    out: dict = {"labelled_sha256": learnt.file_sha256(learnt.DEFAULT_LABELLED), "model_labelled_sha256": meta["labelled_sha256"],
                 "threshold": meta["threshold"], "threshold_fluency": meta.get("threshold_fluency"), "test": {}, "blind": {}, "regression": {}}
    for name, v in configs.items():
        out["test"][name] = learnt.evaluate(v, test)
        out["blind"][name] = learnt.evaluate(v, blind)
        out["regression"][name] = regression_pr(v)
        print(name, "test good kept", out["test"][name]["good_kept"], "bad rejected", out["test"][name]["bad_rejected"], flush=True)
    rows = rules_rows(N_ROWS)
    out["throughput"] = {}
    # each on an empty embedding cache, the model loaded before the clock starts (lazy=False); then
    # the same rows again, every vector cached; and sentence-transformers' own encode (the
    # validator's embedder before session 20, no cache) as the baseline
    with tempfile.TemporaryDirectory() as d:
        cold = Embedder(backend=VALIDATOR_EMBED_BACKEND, cache_dir=d, lazy=False)
        out["throughput"]["learnt"] = throughput(Validator(embedder=cold, model=model), rows)
        out["throughput"]["learnt, rerun (vectors cached)"] = throughput(Validator(embedder=cold, model=model), rows)
    out["throughput"]["learnt, sentence-transformers encode (before session 20)"] = throughput(
        Validator(embedder=load_sentence_model(), model=model), rows)
    with tempfile.TemporaryDirectory() as d:
        cold = Embedder(backend=VALIDATOR_EMBED_BACKEND, cache_dir=d, lazy=False)
        out["throughput"]["lexicon"] = throughput(Validator(embedder=cold, config=ValidatorConfig(mode="lexicon")), rows)
    if scorer is not None:
        from direct_data.backends.fluency import SpanStates

        # a new scorer (the Gemma load in the time) on an empty embedding cache, as the learnt line
        with tempfile.TemporaryDirectory() as d:
            cold = Embedder(backend=VALIDATOR_EMBED_BACKEND, cache_dir=d, lazy=False)
            out["throughput"][f"learnt+fluency (Gemma span states, {scorer.dtype})"] = throughput(
                Validator(embedder=cold, model=model, fluency=SpanStates()), rows[:FLUENCY_ROWS])
        out["fluency_dtype"] = scorer.dtype
        out["fluency_scorer"] = scorer.identity
    if pc is not None:
        from direct_data.backends.pair import PairClassifier

        # a new classifier (its load and LoRA merge in the time), fluency on, an empty embedding cache
        with tempfile.TemporaryDirectory() as d:
            cold = Embedder(backend=VALIDATOR_EMBED_BACKEND, cache_dir=d, lazy=False)
            flu = SpanStates() if scorer is not None else None
            name = "learnt+fluency+pair" if flu is not None else "learnt+pair"
            out["throughput"][f"{name} (pair classifier: Gemma's first 8 layers + LoRA, float32)"] = throughput(
                Validator(embedder=cold, model=model, fluency=flu, pair=PairClassifier.load()), rows[:FLUENCY_ROWS])
        out["pair_calibration"] = pc.meta["calibration"]
    out["machine"] = {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "validator.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    (RESULTS / "validator.md").write_text(markdown(out), encoding="utf-8")
    print((RESULTS / "validator.md").read_text(encoding="utf-8"))
    return 0


def pair_note(out: dict) -> str:
    c = out.get("pair_calibration")
    if not c:
        return ""
    return (f" The +pair columns blend the pair classifier (`backends/pair.py`) in at weight {c['blend_weight']},"
            f" with its own dev-fitted cut-offs: threshold {c['threshold']} ({c.get('threshold_fluency')} with fluency).")


def markdown(out: dict) -> str:
    from direct_data.text.learnt import LABELS

    names = list(out["test"])
    first, fblind = out["test"][names[0]], out["blind"][names[0]]
    head = ("| label (test rows, of which blind) | " + " | ".join(f"{n}: test | {n}: blind" for n in names) + " | target |\n|---|"
            + "---:|" * (2 * len(names) + 1) + "\n")
    lines = []
    for lab in LABELS:
        if lab not in first["per_label"]:
            continue
        what = "kept" if lab == "good" else "rejected"
        cells = [f"{out[s][n]['per_label'][lab]['rate']:.0%}" if lab in out[s][n]["per_label"] else "-" for n in names for s in ("test", "blind")]
        rows = f"{first['per_label'][lab]['rows']}, {fblind['per_label'].get(lab, {}).get('rows', 0)}"
        lines.append(f"| {lab} ({rows}), {what} | " + " | ".join(cells) + f" | >= {TARGETS.get(lab, 0.90):.0%} |")
    lines.append("| all bad labels, rejected | " + " | ".join(f"{out[s][n]['bad_rejected']:.0%}" for n in names for s in ("test", "blind")) + " | |")
    reg = "| old regression set: precision / recall | " + " | ".join(
        f"{out['regression'][n]['precision']:.3f} / {out['regression'][n]['recall']:.3f} | -" for n in names) + " | 0.984 / 0.955 |"
    tp = out["throughput"]
    thr = "\n".join(f"| {n} | {d['rows']} ({d.get('prompts', '?')} prompts) | {d['seconds']} | {d['rows_per_s']} | {d['extrapolated_30k_minutes']} |" for n, d in tp.items())
    m = out["machine"]
    return f"""## Validator (bench/bench_validator.py)

Held-out test split of `data/rewrites/labelled.jsonl` ({first['rows']} rows; never used to fit or tune),
share of each label decided right. "blind" is its batch 6 ({fblind['rows']} rows on 40 new prompts),
written after the validator was built by a writer who never saw the validator, its code or its
errors: the honest figure (the rest of the test split has been read once per design since
session 5). Learnt threshold p(good) >= {out['threshold']} (fluency model:
{out['threshold_fluency']}), both fitted on the dev split. The fluency model reads a probe of
Gemma's span states (`SpanStates`, {out.get('fluency_dtype', 'float32')}).{pair_note(out)}

{head}{chr(10).join(lines)}
{reg}

Throughput on this machine ({m['cpus']} CPUs, load average {m['load_average']} while measuring: the
cores were shared), rules rewrites of real prompts, 5 per prompt, one `check_many` call; 30k = 6,000
prompts x 5 axes, extrapolated linearly from the measured rate. Sentence vectors on an empty
embedding cache, the embedding model loaded before the clock starts (the "rerun" line: the same
rows again, every vector cached; the sentence-transformers line: its own `encode`, no cache, the
validator's embedder before session 20, same machine and run); fluency (Gemma span states,
never cached) on an empty embedding cache, the Gemma load included:

| validator | rows | seconds | rows/s | 30k rows, minutes (extrapolated) |
|---|---:|---:|---:|---:|
{thr}
"""


if __name__ == "__main__":
    raise SystemExit(main())
