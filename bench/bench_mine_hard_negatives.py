"""End to end, EMBEDDING INCLUDED ON BOTH SIDES (issue 13, part 3): `direct-data partition` vs
`sentence_transformers.util.mine_hard_negatives`, 5 negatives per prompt, on N prompts.

The prompts: the shared real prompts recombined head + tail (deterministic, documented in
`bench_partition.RECOMBINATION_DOC`, seed 0) up to N distinct texts, written once as JSONL.
Each side runs in its own fresh subprocess, from a cold start, and its wall time covers everything:
  ours    pipeline.partition([jsonl], out, PartitionConfig(macro_negatives=5)) with an EMPTY embedding
          cache (default embed backend), so it reads, embeds every text, partitions, draws the macro
          negatives, certifies, writes the Parquet shards, centroids, card and manifest;
  theirs  read the JSONL, Dataset(anchor=prompt, positive=prompt), load the packaged MiniLM (torch),
          mine_hard_negatives(ds, model, num_negatives=5) with every other argument default (no
          cache_folder: it embeds the queries and the corpus itself).
Target: ours >= 4x faster. What they mine differs by design (macro negatives from other,
non-neighbouring partitions vs nearest neighbours); the anchor-negative cosines are reported.

    python bench/bench_mine_hard_negatives.py --n 100000       # the issue's size
    python bench/bench_mine_hard_negatives.py [--n 2000]       # default (make bench): a few minutes

Result: bench/results/mine_hard_negatives_<n>.json and mine_hard_negatives.md (latest run)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402
from bench_partition import prompts_jsonl, read_jsonl_prompts  # noqa: E402

SCRIPT = Path(__file__).resolve()


def side_ours(p: dict) -> dict:
    from direct_data import pipeline
    from direct_data.stages.partition import PartitionConfig

    cfg = PartitionConfig(macro_negatives=5, cache_dir=p["cache_dir"])
    with C.Timer() as t:
        res = pipeline.partition([p["jsonl"]], p["out"], cfg, force=True)
    st = res.stats
    cert = st["certificate"]
    return {"side": "ours: direct-data partition, empty embedding cache", "embed_backend": cfg.embed_backend, "wall_s": round(t.wall, 2), "cpu_s": round(t.cpu, 2),
            "run": res.run, "k": st["k"], "embedding": st.get("embedding"),
            "certificate": {k: cert[k] for k in ("violations", "negatives", "shortfall_prompts", "anchor_negative_cos")}}


def side_theirs(p: dict) -> dict:
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from direct_data.backends.models import load_sentence_model

    with C.Timer() as t:
        with C.Timer() as tr:
            texts = read_jsonl_prompts(p["jsonl"])
            ds = Dataset.from_dict({"anchor": texts, "positive": texts})
        with C.Timer() as tl:
            model = load_sentence_model()
        with C.Timer() as tm:
            out = mine_hard_negatives(ds, model, num_negatives=5, verbose=False)
    return {"side": "sentence_transformers.util.mine_hard_negatives(ds, model, num_negatives=5), defaults, embedding included",
            "wall_s": round(t.wall, 2), "cpu_s": round(t.cpu, 2), "output_rows": len(out),
            "breakdown_s": {"read_and_dataset_s": round(tr.wall, 2), "model_load_s": round(tl.wall, 2), "mine_hard_negatives_s": round(tm.wall, 2)}}


SIDES = {"ours": side_ours, "theirs": side_theirs}


def markdown(res: dict) -> str:
    ours, theirs, n, mi = res["ours"], res["theirs"], res["n"], res["machine"]
    backend = (ours.get("embedding") or {}).get("identity", "").split("-eqlen")[-1].lstrip("-") or "torch"
    cpu_ratio = round(theirs["cpu_s"] / ours["cpu_s"], 2)
    return (f"### End to end vs `mine_hard_negatives`, embedding included (`bench/bench_mine_hard_negatives.py --n {n}`)\n\n"
            f"| Prompts | ours (`direct-data partition`, embed backend {backend}, empty cache) | `mine_hard_negatives` (torch, defaults) | speed-up (wall) | CPU time ratio | target |\n"
            f"|---|---|---|---|---|---|\n"
            f"| {n:,} (real prompts recombined, seed 0) | {ours['wall_s']} s wall, {ours['cpu_s']} s CPU, {ours['peak_memory']['vmhwm_mib'] / 1024:.2f} GiB "
            f"| {theirs['wall_s']} s wall, {theirs['cpu_s']} s CPU, {theirs['peak_memory']['vmhwm_mib'] / 1024:.2f} GiB | {res['speedup_wall']}x | {cpu_ratio}x "
            f"| >= 4x: {'met' if res['met'] else '**not met**'} |\n\n"
            f"Both from a cold process, each its own; ours: k={ours['k']}, {ours['certificate']['violations']} violations, anchor-negative cos mean "
            f"{ours['certificate']['anchor_negative_cos'].get('mean')}, and it also writes the Parquet shards, card and manifest; theirs: {theirs['breakdown_s']} "
            f"(it embeds the queries and the corpus: 2 x {n:,} texts). Load average {mi['load_average_start']} -> {mi['load_average_end']} on {mi['cpu_count']} "
            f"shared cores."
            + (" This is the issue's size." if n >= 100_000 else
               " The issue's size (about 30 min on this machine, most of it the torch side): `python bench/bench_mine_hard_negatives.py --n 100000`.")
            + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="prompts (the issue asks 100000: about 30 min on 2 quiet cores, most of it the torch side)")
    ap.add_argument("--md-only", action="store_true", help="rewrite mine_hard_negatives.md from the --n result")
    a = ap.parse_args()
    if a.md_only:
        md = markdown(json.loads((C.RESULTS_DIR / f"mine_hard_negatives_{a.n}.json").read_text()))
        (C.RESULTS_DIR / "mine_hard_negatives.md").write_text(md)
        print(md)
        return 0
    info = C.machine_info()
    import time

    t0 = time.perf_counter()
    jsonl, rec = prompts_jsonl(a.n)
    with tempfile.TemporaryDirectory(prefix="dd-bench-mhn-") as tmp:
        C.log(f"mine_hard_negatives: ours on {a.n:,} prompts (empty cache)")
        ours = C.run_child(SCRIPT, "ours", {"jsonl": str(jsonl), "out": str(Path(tmp) / "out"), "cache_dir": str(Path(tmp) / "cache")})
        C.log(f"ours {ours['wall_s']} s; theirs")
        theirs = C.run_child(SCRIPT, "theirs", {"jsonl": str(jsonl)})
    ours = {k: v for k, v in ours.items() if not k.startswith("_")}
    theirs = {k: v for k, v in theirs.items() if not k.startswith("_")}
    speedup = round(theirs["wall_s"] / ours["wall_s"], 2)
    res = {"benchmark": f"mine_hard_negatives_{a.n}", "n": a.n, "what": __doc__.split("\n\n")[1], "prompts": {k: rec[k] for k in ("method", "seed", "n", "sha256")},
           "ours": ours, "theirs": theirs, "speedup_wall": speedup, "target": ">= 4x", "met": speedup >= 4, "machine": C.finish_machine_info(info, t0)}
    C.write_result(res["benchmark"], res)
    md = markdown(res)
    (C.RESULTS_DIR / "mine_hard_negatives.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    if not C.child_main(sys.argv, SIDES):
        sys.exit(main())
