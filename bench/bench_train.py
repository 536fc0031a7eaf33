"""Step time and peak memory of the `direct` objective over `sft` at equal batch.

CPU: the tiny and a mid-size `WanTransformer3DModel` (LoRA), `direct` with the micro term on 25% of
the rows and the `moments-target` regulariser (target ratio <= 1.3). GPU (when one is present):
the Wan2.1-1.3B architecture, LoRA, bf16, 480p x 81-frame latents (16 x 21 x 60 x 104), umT5 states
(512 x 4096).

Each (config, objective) runs in its own subprocess (so peak RSS is its own); runs alternate
sft/direct in adjacent pairs `--repeats` times; the reported ratio is the median of the paired ratios
(CPU: process CPU time per step, which a machine shared with other jobs does not inflate; GPU: wall
time). Wall and CPU medians are both recorded.

    python bench/bench_train.py [--steps 30] [--repeats 3] [--out bench/results/train_step.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

SHAPES = {
    # config: (batch, latent (C, F, H, W), text_len, text_dim)
    "tiny": (4, (16, 2, 8, 8), 16, 384),
    "mid": (4, (16, 4, 16, 16), 32, 384),
    "wan2.1-1.3b": (1, (16, 21, 60, 104), 512, 4096),
}


def _child(config: str, objective: str, steps: int, warmup: int, threads: int) -> dict:
    import resource
    import time

    import torch

    from direct_data.training import wan
    from direct_data.training.config import preset
    from direct_data.training.data import TrainData
    from direct_data.training.loop import train

    if threads:
        torch.set_num_threads(threads)
    batch, (c, f, h, w), text_len, dim = SHAPES[config]
    n = max(4 * batch, 8)
    g = torch.Generator().manual_seed(0)
    part = torch.arange(n) % 4
    latents = torch.randn(4, c, f, h, w, generator=g)[part] + 0.3 * torch.randn(n, c, f, h, w, generator=g)
    text = torch.randn(n, text_len, dim, generator=g)
    lengths = torch.full((n,), text_len)
    data = TrainData.from_tensors(latents, text, lengths, part, hard_states=text + 0.5 * torch.randn(text.shape, generator=g),
                                    hard_lengths=lengths, hard_axis=["forces"] * n)
    cuda = torch.cuda.is_available()
    kw = dict(batch_size=batch, max_steps=warmup + steps, lr=1e-4, lora_rank=16, progress=False, model_config=config,
              device="cuda" if cuda else "cpu")
    if objective == "direct":
        cfg = preset("direct", micro_fraction=0.25, reg="moments-target", **kw)
    else:
        cfg = preset("sft", **kw)
    model = wan.build_transformer(config, text_dim=dim) if config != "wan2.1-1.3b" else wan.build_transformer(config)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = train(cfg, data, model=model)
    wall = time.perf_counter() - t0
    times = [r["time_s"] for r in res.records if r.get("step", 0) > warmup]
    cpu = [r["cpu_s"] for r in res.records if r.get("step", 0) > warmup]
    out = {
        "config": config, "objective": objective, "batch": batch, "latent": [c, f, h, w], "text_len": text_len,
        "steps_timed": len(times), "step_s_median": statistics.median(times), "step_s_mean": statistics.fmean(times),
        "step_cpu_s_median": statistics.median(cpu),
        "wall_s": wall, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_train_mib": rss0 / 1024, "micro_rows": res.records[-1].get("micro_rows", 0),
        "threads": torch.get_num_threads(),
    }
    if cuda:
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["device"] = torch.cuda.get_device_name()
    return out


def _run(config: str, objective: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", config, objective, "--steps", str(args.steps), "--warmup",
           str(args.warmup), "--threads", str(args.threads)]
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default); 1 keeps a shared CPU quiet")
    ap.add_argument("--configs", default=None, help="comma list; default tiny,mid (+ wan2.1-1.3b on GPU)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_step.json"))
    ap.add_argument("--child", nargs=2, metavar=("CONFIG", "OBJECTIVE"))
    args = ap.parse_args()
    if args.child:
        sys.stdout.write(json.dumps(_child(*args.child, args.steps, args.warmup, args.threads)) + "\n")
        return

    import torch

    configs = args.configs.split(",") if args.configs else ["tiny", "mid"] + (
        ["wan2.1-1.3b"] if torch.cuda.is_available() else [])
    results = {}
    for config in configs:
        runs: dict[str, list[dict]] = {"sft": [], "direct": []}
        paired: list[float] = []
        for rep in range(args.repeats):
            # adjacent sft/direct pairs, order alternating: drift of a shared machine cancels out
            order = ("sft", "direct") if rep % 2 == 0 else ("direct", "sft")
            pair = {objective: _run(config, objective, args) for objective in order}
            for objective, r in pair.items():
                runs[objective].append(r)
            key = "step_s_median" if torch.cuda.is_available() else "step_cpu_s_median"
            paired.append(pair["direct"][key] / pair["sft"][key])
        summary = {}
        for objective, rs in runs.items():
            summary[objective] = {
                "step_s_median": statistics.median(r["step_s_median"] for r in rs),
                "step_s_per_repeat": [r["step_s_median"] for r in rs],
                "step_cpu_s_median": statistics.median(r["step_cpu_s_median"] for r in rs),
                "step_cpu_s_per_repeat": [r["step_cpu_s_median"] for r in rs],
                "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
                "rss_before_train_mib": max(r["rss_before_train_mib"] for r in rs),
                **({"peak_cuda_mib": max(r["peak_cuda_mib"] for r in rs)} if "peak_cuda_mib" in rs[0] else {}),
                "micro_rows_per_batch": rs[0]["micro_rows"],
            }
        wall_ratio = summary["direct"]["step_s_median"] / summary["sft"]["step_s_median"]
        cpu_ratio = summary["direct"]["step_cpu_s_median"] / summary["sft"]["step_cpu_s_median"]
        # On a GPU the wall time is the measure; on a shared CPU machine the process CPU time is the
        # one that does not depend on what else runs there (both are reported).
        ratio = statistics.median(paired)
        results[config] = {"direct_over_sft_paired": paired, "batch": rs[0]["batch"], "latent": rs[0]["latent"], "text_len": rs[0]["text_len"],
                           **summary, "direct_over_sft_wall": wall_ratio, "direct_over_sft_cpu": cpu_ratio,
                           "direct_over_sft": ratio,
                           "ratio_from": "median of paired runs, " + ("wall" if torch.cuda.is_available() else "cpu") + " time",
                           "target": 1.3, "meets_target": ratio <= 1.3}
    out = {
        "benchmark": "train_step", "direct": "micro on 25% of rows, moments-target regulariser, macro from batch, "
        "diagnostics on", "lora_rank": 16, "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": __import__("os").cpu_count(),
                    "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    sys.stdout.write(json.dumps({k: {"direct_over_sft": v["direct_over_sft"], "wall": v["direct_over_sft_wall"],
                                     "sft_s": v["sft"]["step_s_median"], "direct_s": v["direct"]["step_s_median"]}
                                 for k, v in results.items()}) + "\n")


if __name__ == "__main__":
    main()
