"""Acceptance rate per axis and backend on the real prompts, with the rejection reasons.

- rules: every distinct prompt of the nine public sets (../shared/data/prompts), all five axes;
- vllm (Gemma-3-270M base, the packaged test model): a seeded sample of prompts, all five axes
  (only when vLLM is installed; the engine runs in a child process).

Writes bench/results/perturb_acceptance.json and a markdown table next to it.
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


def main() -> None:
    from direct_data.core.manifest import Manifest

    tmp = Path(tempfile.mkdtemp(prefix="bench-perturb-"))
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
    t = run([*rules_inputs, "--axis", "all", "--out", str(tmp / "rules")], env)
    m = Manifest.read(tmp / "rules")
    res["backends"]["rules"] = {"prompts": m.counts["prompts"], "seconds": round(t, 1), "per_axis": m.stats["per_axis"]}
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
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "perturb_acceptance.json").write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    lines = ["| backend | prompts | axis | accepted | top rejection reasons |", "|---|---:|---|---:|---|"]
    for b, r in res["backends"].items():
        for a, d in r["per_axis"].items():
            top = sorted(d["reasons"].items(), key=lambda kv: -kv[1])[:3]
            lines.append(f"| {b} | {r['prompts']} | {a} | {d['acceptance']:.1%} | {', '.join(f'{k} {v}' for k, v in top) or '-'} |")
    (RESULTS / "perturb_acceptance.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
