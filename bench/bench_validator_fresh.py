"""The validator on a fresh blind holdout: `data/rewrites/fresh_holdout.jsonl`.

Rows the packaged validator was never fitted, tuned or designed on, by writers who never saw the
validator, its code, its labelled set, its errors or its results, on prompts that share no more
than half of their content words with any prompt of `data/rewrites/labelled.jsonl`
(data/rewrites/README.md).
Nothing is fitted, tuned or designed on it: it is not part of the labelled set (so the packaged
artefact's `labelled_sha256` does not cover it) and only aggregate numbers are written, never rows.

Per label, the share decided right (good kept, bad rejected) and the reasons given, for the learnt
validator without and with the fluency model (a probe of Gemma's span states) and for the
lexicon validator. Targets (issue 10): good kept >= 90%, every bad label rejected >= 90%,
ungrammatical rejected >= 95%.

Writes bench/results/validator_fresh.json and bench/results/validator_fresh.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_validator import FLUENCY, RESULTS, TARGETS, pair_classifier  # noqa: E402  (the test-split bench's settings)

HOLDOUT = ROOT / "data" / "rewrites" / "fresh_holdout.jsonl"


def main() -> int:
    from direct_data.text import learnt
    from direct_data.text.validator import Validator, ValidatorConfig

    rows = learnt.load_labelled(HOLDOUT)
    base = Validator()
    configs = {"learnt": base, "lexicon": Validator(embedder=base.embedder, config=ValidatorConfig(mode="lexicon"))}
    dtype = None
    if FLUENCY and base.model.accept_fluency is not None:
        from direct_data.backends.fluency import SpanStates

        scorer = SpanStates()
        dtype = scorer.dtype
        configs["learnt+fluency"] = Validator(embedder=base.embedder, model=base.model, fluency=scorer)
    pc = pair_classifier()
    if pc is not None:
        configs["learnt+pair"] = Validator(embedder=base.embedder, model=base.model, pair=pc)
        if "learnt+fluency" in configs:
            configs["learnt+fluency+pair"] = Validator(embedder=base.embedder, model=base.model, fluency=configs["learnt+fluency"].fluency, pair=pc)
    out = {"holdout_sha256": learnt.file_sha256(HOLDOUT), "rows": len(rows), "prompts": len({r.prompt_id for r in rows}),
           "model_labelled_sha256": json.loads(learnt.SIDECAR.read_text(encoding="utf-8"))["labelled_sha256"],
           "fluency_dtype": dtype, "results": {}}
    for name, v in configs.items():
        out["results"][name] = learnt.evaluate(v, rows)
        r = out["results"][name]
        print(name, "good kept", r["good_kept"], "bad rejected", r["bad_rejected"], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "validator_fresh.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    names = list(out["results"])
    first = out["results"][names[0]]
    lines = [f"Fresh blind holdout `data/rewrites/fresh_holdout.jsonl` ({out['rows']} rows on {out['prompts']} prompts,"
             " by writers who never saw the validator; nothing fitted, tuned or designed"
             " on it), share of each label decided right"
             + (f"; fluency in {dtype}" if dtype else "") + ":", "",
             "| label (rows) | " + " | ".join(names) + " | target |", "|---|" + "---:|" * (len(names) + 1)]
    for lab, d in first["per_label"].items():
        target = TARGETS.get(lab, 0.90)
        lines.append(f"| {lab} ({d['rows']}), {'kept' if lab == 'good' else 'rejected'} | "
                     + " | ".join(f"{out['results'][n]['per_label'][lab]['rate']:.0%}" for n in names) + f" | >= {target:.0%} |")
    lines.append("| all bad labels, rejected | " + " | ".join(f"{out['results'][n]['bad_rejected']:.0%}" for n in names) + " | |")
    (RESULTS / "validator_fresh.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
