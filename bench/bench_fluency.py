"""Cost and signal of the fluency scorer (`direct_data.backends.fluency`, Gemma-3-270M base on CPU).

Cost, in a fresh child process with an empty cache: model identity (weights hash), model load,
scoring `--pairs` real (prompt, negative) pairs from the train split of data/rewrites/labelled.jsonl
(wall and process CPU time; texts/s, pairs/s, tokens/s), then the same pairs again from the cache
by a new scorer (no model load). torch threads are left at their default (the machine's cores).
The scorer runs in `--dtype` (bfloat16 by default, the scorer's default); every distinct text is scored on its own.

Signal: AUC of every feature for `good` (positive) vs `ungrammatical` rows of the train + dev splits
(never test), P(feature of a good row > feature of an ungrammatical row); 0.5 = no signal. Scores go
through a persistent cache (`bench_cache_root()/fluency`), so a rerun is cheap.

    python bench/bench_fluency.py [--pairs 48] [--no-auc] [--dtype bfloat16|float32]

Result: bench/results/fluency.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

LABELLED = ROOT / "data" / "rewrites" / "labelled.jsonl"


def labelled_pairs(splits: tuple[str, ...], labels: tuple[str, ...] | None = None) -> list[tuple[str, str, str]]:
    """(prompt, negative, label) of the labelled rows in `splits`, prompts joined by (source, line)."""
    files: dict[str, list[str]] = {}
    out = []
    for line in LABELLED.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r["split"] not in splits or (labels and r["label"] not in labels):
            continue
        if r["source"] not in files:
            path = C.PROMPTS_DIR / f"{r['source']}.jsonl"
            files[r["source"]] = [json.loads(x)["prompt"] for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        out.append((files[r["source"]][r["line"]], r["negative"], r["label"]))
    return out


def _cost(params: dict) -> dict:
    from direct_data.backends.fluency import FluencyScorer, load_causal_lm

    pairs = [(p, n) for p, n, _ in labelled_pairs(("train",))][: params["pairs"]]
    with tempfile.TemporaryDirectory() as tmp:
        s = FluencyScorer(cache_dir=tmp, dtype=params.get("dtype", "bfloat16"))
        with C.Timer() as t_id:
            _ = s.identity
        with C.Timer() as t_load:
            s._load()
        texts = sorted({t for pr in pairs for t in pr})
        tokens = sum(len(s._encode(t)[0]) - 1 for t in texts)
        with C.Timer() as t_score:
            s.score(pairs)
        s2 = FluencyScorer(cache_dir=tmp, dtype=params.get("dtype", "bfloat16"))
        _ = s2.identity  # lru-cached in this process; measured above
        with C.Timer() as t_hit:
            s2.score(pairs)
        assert not s2.model_loaded
        import torch

        return {
            "pairs": len(pairs), "texts": len(texts), "tokens_scored": tokens, "torch_threads": torch.get_num_threads(),
            "identity_s": round(t_id.wall, 2), "model_load_wall_s": round(t_load.wall, 2), "model_load_cpu_s": round(t_load.cpu, 2),
            "score_wall_s": round(t_score.wall, 2), "score_cpu_s": round(t_score.cpu, 2),
            "texts_per_s_wall": round(len(texts) / t_score.wall, 2), "pairs_per_s_wall": round(len(pairs) / t_score.wall, 2),
            "tokens_per_s_wall": round(tokens / t_score.wall, 1),
            "texts_per_cpu_s": round(len(texts) / t_score.cpu, 2),
            "cache_hit_pairs_per_s": round(len(pairs) / max(t_hit.wall, 1e-9), 0),
            "model": str(load_causal_lm.cache_info()),
        }


def _auc(params: dict) -> dict:
    from direct_data.backends.fluency import FEATURES, FluencyScorer, auc

    rows = labelled_pairs(("train", "dev"), ("good", "ungrammatical"))
    s = FluencyScorer(cache_dir=C.bench_cache_root() / "fluency")
    t0 = time.perf_counter()
    feats = s.score([(p, n) for p, n, _ in rows])
    good = [f for f, r in zip(feats, rows) if r[2] == "good"]
    bad = [f for f, r in zip(feats, rows) if r[2] == "ungrammatical"]
    return {
        "splits": ["train", "dev"], "n_good": len(good), "n_ungrammatical": len(bad),
        "auc_good_gt_ungrammatical": {k: round(auc([g[k] for g in good], [b[k] for b in bad]), 3) for k in FEATURES},
        "texts_scored_now": s.texts_scored, "wall_s": round(time.perf_counter() - t0, 1),
    }


def main() -> int:
    if C.child_main(sys.argv, {"cost": _cost, "auc": _auc}):
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=48)
    ap.add_argument("--no-auc", action="store_true")
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    ap.add_argument("--out")
    a = ap.parse_args()
    t0 = time.perf_counter()
    info = C.machine_info()
    C.log(f"cost: {a.pairs} pairs, empty cache")
    cost = C.run_child(__file__, "cost", {"pairs": a.pairs, "dtype": a.dtype})
    res = {"benchmark": f"fluency scorer (Gemma-3-270M base, {a.dtype}, CPU)", "cost": {k: v for k, v in cost.items() if not k.startswith("_")}}
    if not a.no_auc:
        C.log("signal: AUC good vs ungrammatical on train+dev")
        auc = C.run_child(__file__, "auc", {})
        res["signal"] = {k: v for k, v in auc.items() if not k.startswith("_")}
    res["machine"] = C.finish_machine_info(info, t0)
    path = C.write_result("fluency", res, a.out)
    C.log(f"wrote {path}")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
