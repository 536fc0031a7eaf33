"""Acceptance rate per axis and backend on the real prompts, with the rejection reasons.

- rules: every distinct prompt of the nine public sets (../shared/data/prompts), all five axes;
  acceptance and the top rejection reasons per prompt set x axis (a prompt that occurs in several
  sets counts in each), and how formulaic the accepted negatives are: the share of the three most
  frequent edited spans (`span_after`, lower-cased) among the accepted negatives of each axis;
- vllm (Gemma-3-270M base, the packaged test model): a seeded sample of prompts, all five axes
  (only when vLLM is installed; the engine runs in a child process).

Writes bench/results/perturb_acceptance.json and a markdown table next to it.

`python bench/bench_perturb.py --precision-sample FILE` also writes the stratified sample of accepted
rules negatives that was labelled by hand for `data/rewrites/rules_precision.jsonl` (see
`precision_sample`); `BENCH_PERTURB_OUT=DIR` keeps the perturb outputs in DIR.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT.parent / "shared" / "data" / "prompts"
RESULTS = ROOT / "bench" / "results"
VLLM_PROMPTS = int(os.environ.get("BENCH_VLLM_PROMPTS", "40"))
RULES_PROMPTS = int(os.environ.get("BENCH_RULES_PROMPTS", "0"))  # 0: every prompt; N: a seeded sample of N lines


def run(args: list[str], env: dict) -> float:
    t = time.time()
    subprocess.run([sys.executable, "-m", "direct_data.cli", "perturb", *args], env=env, check=True, cwd=ROOT, capture_output=True)
    return time.time() - t


def per_set(out: Path, files: list[Path]) -> tuple[dict, dict]:
    """Acceptance and top rejection reasons per prompt file x axis, and the top-3 span share per axis."""
    from collections import Counter

    from direct_data.core.manifest import read_table
    from direct_data.core.read import read_prompts

    neg = read_table(out, "negatives", ["prompt_id", "axis", "span_after"]).to_pylist()
    rej = read_table(out, "negative_rejects", ["prompt_id", "axis", "reason"]).to_pylist()
    outcome = {(r["prompt_id"], r["axis"]): None for r in neg}
    outcome.update({(r["prompt_id"], r["axis"]): r["reason"] for r in rej})
    axes = sorted({a for _, a in outcome})
    table: dict = {}
    for f in files:
        ids = {p.prompt_id for p in read_prompts([f]).prompts}
        for a in axes:
            got = [outcome[(i, a)] for i in ids if (i, a) in outcome]
            reasons = Counter(r for r in got if r is not None)
            table.setdefault(f.stem, {})[a] = {"prompts": len(got), "accepted": sum(r is None for r in got),
                                               "acceptance": round(sum(r is None for r in got) / max(len(got), 1), 4),
                                               "top_reasons": reasons.most_common(3)}
    phrases: dict = {}
    for a in axes:
        c = Counter(" ".join(r["span_after"].lower().strip(" ,.").split()) for r in neg if r["axis"] == a)
        n = sum(c.values())
        top = c.most_common(3)
        phrases[a] = {"accepted": n, "distinct_spans": len(c), "top3": top,
                      "top3_share": round(sum(v for _, v in top) / max(n, 1), 4)}
    return table, phrases


PRECISION_SEED = 20251130
PRECISION_PER_AXIS = 20


def precision_sample(out: Path, files: list[Path], per_axis: int = PRECISION_PER_AXIS, seed: int = PRECISION_SEED) -> list[dict]:
    """The accepted rules negatives to label by hand, stratified by axis and spread over the sets.

    Each accepted negative belongs to the first prompt file (sorted by name) that holds its prompt,
    at the first line holding it. Per axis, the rows of each set are ordered by
    sha256(f"{seed}\\x00{prompt_id}\\x00{axis}"); the sets are then visited in name order, one row
    per set per round, until `per_axis` rows are taken. No prompt text is returned: rows carry
    source, line, prompt_id = sha256(prompt)[:16], axis, negative (and the edited spans), like
    labelled.jsonl; `label` and `note` are filled in by hand.
    """
    import hashlib

    from direct_data.core.manifest import read_table
    from direct_data.core.read import normalize_text, prompt_id

    where: dict[str, tuple[str, int, str]] = {}  # perturb's prompt_id -> (set, line, sha256(prompt)[:16])
    for f in sorted(files):
        for line_no, raw in enumerate(f.read_text(encoding="utf-8").splitlines()):
            try:
                rec = json.loads(raw) if raw.strip() else None
            except ValueError:
                rec = None
            text = next((rec[k] for k in ("prompt", "caption", "text") if isinstance(rec.get(k), str)), None) if isinstance(rec, dict) else None
            if text and text.strip():
                where.setdefault(prompt_id(normalize_text(text)), (f.stem, line_no, hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]))
    neg = read_table(out, "negatives", ["prompt_id", "axis", "negative", "span_before", "span_after"]).to_pylist()
    rows = []
    for axis in sorted({r["axis"] for r in neg}):
        by_set: dict[str, list[dict]] = {}
        for r in neg:
            if r["axis"] == axis and r["prompt_id"] in where:
                by_set.setdefault(where[r["prompt_id"]][0], []).append(r)
        for v in by_set.values():
            v.sort(key=lambda r: hashlib.sha256(f"{seed}\x00{r['prompt_id']}\x00{axis}".encode()).hexdigest())
        taken: list[dict] = []
        k = 0
        while len(taken) < per_axis and any(len(v) > k for v in by_set.values()):
            for name in sorted(by_set):
                if len(by_set[name]) > k and len(taken) < per_axis:
                    taken.append(by_set[name][k])
            k += 1
        for r in taken:
            source, line, pid = where[r["prompt_id"]]
            rows.append({"source": source, "line": line, "prompt_id": pid, "axis": axis, "negative": r["negative"],
                         "span_before": r["span_before"], "span_after": r["span_after"], "label": None, "note": ""})
    return rows


def main() -> None:
    from direct_data.core.manifest import Manifest

    keep = os.environ.get("BENCH_PERTURB_OUT")
    tmp = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="bench-perturb-"))
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    files = sorted(PROMPTS.glob("*.jsonl"))
    res: dict = {"machine": {"cores": os.cpu_count(), "platform": platform.platform(), "load_start": os.getloadavg()}, "backends": {}}
    rules_inputs = [str(f) for f in files]
    if RULES_PROMPTS:
        import random

        lines = [l for f in files for l in f.read_text().splitlines() if l.strip()]
        random.Random(1).shuffle(lines)
        (tmp / "rules_sample.jsonl").write_text("\n".join(lines[:RULES_PROMPTS]) + "\n")
        rules_inputs = [str(tmp / "rules_sample.jsonl")]
    mode = os.environ.get("BENCH_VALIDATOR")  # e.g. "lexicon": run in-process with that validator mode
    if mode:
        from direct_data import pipeline
        from direct_data.stages.perturb import PerturbConfig
        from direct_data.text.validator import Validator, ValidatorConfig

        t0 = time.time()
        pipeline.perturb([Path(f) for f in rules_inputs], tmp / "rules", PerturbConfig(axes=("all",)),
                         validator=Validator(config=ValidatorConfig(mode=mode)))
        t = time.time() - t0
    else:
        t = run([*rules_inputs, "--axis", "all", "--out", str(tmp / "rules")], env)
    m = Manifest.read(tmp / "rules")
    res["backends"]["rules"] = {"prompts": m.counts["prompts"], "seconds": round(t, 1), "per_axis": m.stats["per_axis"],
                                "validator": m.stats.get("validator")}
    res["rules_per_set"], res["rules_phrases"] = per_set(tmp / "rules", [Path(f) for f in rules_inputs])
    if "--precision-sample" in sys.argv:
        target = Path(sys.argv[sys.argv.index("--precision-sample") + 1])
        rows = precision_sample(tmp / "rules", [Path(f) for f in rules_inputs])
        target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"wrote {len(rows)} rows to {target}")
    try:
        import vllm  # noqa: F401

        have_vllm = True
    except Exception:
        have_vllm = False
    if have_vllm and VLLM_PROMPTS > 0:
        import random

        from direct_data.backends.llm import cpu_engine_env, prepare_gemma

        lines = [l for f in files for l in f.read_text().splitlines() if l.strip()]
        random.Random(0).shuffle(lines)
        sub = tmp / "sub.jsonl"
        sub.write_text("\n".join(lines[:VLLM_PROMPTS]) + "\n")
        gemma = prepare_gemma()
        venv = {**env, **cpu_engine_env(tmp), "DIRECT_DATA_CACHE": str(tmp / "cache")}
        t = run([str(sub), "--axis", "all", "--backend", "vllm", "--model", str(gemma), "--num-candidates", "2", "--out", str(tmp / "vllm")], venv)
        m = Manifest.read(tmp / "vllm")
        res["backends"]["vllm (gemma3-270m base)"] = {"prompts": m.counts["prompts"], "seconds": round(t, 1), "per_axis": m.stats["per_axis"]}
    res["machine"]["load_end"] = os.getloadavg()
    res["rules_candidate_phrases"] = candidate_phrases([Path(f) for f in rules_inputs])
    write_results(res)


#: The same measure as `candidate_phrases`, taken with the rules rewriter as it was before issue 10
#: (commit eeb6f33) on all 5345 distinct prompts: the share of the first candidate's edited span
#: that the 3 most frequent spans take, per axis ("in reverse" alone was 64% of kinematics).
PHRASES_BEFORE_ISSUE10 = {
    "kinematics": {"with_candidate": 3637, "top3_share": 0.738, "top3": [["in reverse", 2333], ["move backward", 205], ["fall", 147]]},
    "forces": {"with_candidate": 5345, "top3_share": 0.917,
               "top3": [["with gravity pulling sideways", 1645], ["in zero gravity", 1644], ["with gravity reversed", 1611]]},
    "materials": {"with_candidate": 3036, "top3_share": 0.504, "top3": [["rubber", 539], ["paper", 525], ["glass", 465]]},
    "interactions": {"with_candidate": 2305, "top3_share": 0.953, "top3": [["bounce off", 974], ["pass through", 887], ["sink into", 335]]},
    "magnitudes": {"with_candidate": 3685, "top3_share": 0.573, "top3": [["tiny", 769], ["gigantic", 671], ["violently", 671]]},
}


def candidate_phrases(files: list[Path]) -> dict:
    """Per axis, over every distinct prompt: the edit (phrase or target word) of the first rules
    candidate, seeded per request like `perturb`, and the share the 3 most frequent take."""
    from collections import Counter

    from direct_data.core.read import read_prompts
    from direct_data.stages.perturb import request_seed
    from direct_data.text import rules
    from direct_data.text.axes import AXES

    prompts = [(p.prompt_id, p.prompt) for p in read_prompts(files).prompts]
    out = {}
    for axis in AXES:
        c: Counter[str] = Counter()
        for pid, text in prompts:
            got = rules.rewrite(text, axis, seed=request_seed(0, pid, axis))
            if got:
                r = got[0].rule
                c[(r.split("->")[-1] if "->" in r else r.split(":")[-1]).strip(", ")] += 1
        n = sum(c.values())
        top = c.most_common(3)
        out[axis] = {"prompts": len(prompts), "with_candidate": n, "distinct": len(c), "top3": top,
                     "top3_share": round(sum(v for _, v in top) / max(n, 1), 3)}
    return out


def write_results(res: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "perturb_acceptance.json").write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    lines = ["| backend | prompts | axis | accepted | top rejection reasons |", "|---|---:|---|---:|---|"]
    for b, r in res["backends"].items():
        for a, d in r["per_axis"].items():
            top = sorted(d["reasons"].items(), key=lambda kv: -kv[1])[:3]
            lines.append(f"| {b} | {r['prompts']} | {a} | {d['acceptance']:.1%} | {', '.join(f'{k} {v}' for k, v in top) or '-'} |")
    if "rules_per_set" in res:
        axes = list(res["rules_phrases"])
        lines += ["", f"Rules backend per prompt set x axis (validator `{res['backends']['rules'].get('validator')}`): "
                  "acceptance, then the top rejection reasons.", "",
                  "| set | prompts | " + " | ".join(axes) + " |", "|---|---:|" + "---|" * len(axes)]
        for name, d in res["rules_per_set"].items():
            cells = []
            for a in axes:
                x = d[a]
                why = ", ".join(f"{k} {v}" for k, v in x["top_reasons"][:2])
                cells.append(f"{x['acceptance']:.0%} ({why})" if why else f"{x['acceptance']:.0%}")
            lines.append(f"| {name} | {next(iter(d.values()))['prompts']} | " + " | ".join(cells) + " |")
        lines += ["", "How formulaic the accepted rules negatives are: share of the 3 most frequent edited spans per axis.", "",
                  "| axis | accepted | distinct spans | top-3 share | top-3 spans |", "|---|---:|---:|---:|---|"]
        for a, x in res["rules_phrases"].items():
            lines.append(f"| {a} | {x['accepted']} | {x['distinct_spans']} | {x['top3_share']:.1%} | "
                         + ", ".join(f"{k} ({v})" for k, v in x["top3"]) + " |")
    if "rules_candidate_phrases" in res:
        lines += ["", "The same, before the validator, against the rewriter before issue 10: the first rules candidate per "
                  "(prompt, axis) over every distinct prompt (top-3 share of the edit; prompts with a candidate).", "",
                  "| axis | before: with candidate | before: top-3 share | before: top-3 | now: with candidate | now: top-3 share | now: top-3 |",
                  "|---|---:|---:|---|---:|---:|---|"]
        for a, x in res["rules_candidate_phrases"].items():
            b = PHRASES_BEFORE_ISSUE10.get(a, {})
            lines.append(f"| {a} | {b.get('with_candidate', '-')} | {b.get('top3_share', 0):.1%} | "
                         + ", ".join(f"{k} ({v})" for k, v in b.get("top3", [])) + f" | {x['with_candidate']} | {x['top3_share']:.1%} | "
                         + ", ".join(f"{k} ({v})" for k, v in x["top3"]) + " |")
    (RESULTS / "perturb_acceptance.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if "--render-only" in sys.argv:  # add the candidate-phrase table to an existing result and rewrite both files
        saved = json.loads((RESULTS / "perturb_acceptance.json").read_text())
        saved["rules_candidate_phrases"] = candidate_phrases(sorted(PROMPTS.glob("*.jsonl")))
        write_results(saved)
    else:
        main()
