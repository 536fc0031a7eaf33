"""The Ray executor's overhead against the local one (issue 12), on recombined prompts.

Each side runs in its own fresh process (`common.run_child`), with its own empty embedding cache:

- perturb on N = 20k prompts (BENCH_RAY_N): `--backend rules` on the prompt file, axes
  BENCH_RAY_AXES (default: kinematics), the validator's lexicon mode without the embedding band
  (the validator's cost is the same on both sides; the bench measures what Ray adds);
- partition on BENCH_RAY_N_PARTITION = 2k prompts: embed (cold cache: the embedding runs in the Ray
  actors) + k-means + map-side assignment. (20k cold embeddings take ~10 min per side at the
  ~32 texts/s of this 2-core machine: too long to run twice here.)

The Ray side starts a local cluster inside its process (`ray.init(num_cpus=BENCH_RAY_CPUS)`, default
4 logical CPUs on this 2-core machine) with BENCH_RAY_ACTORS actors (default 2); its wall time
includes the cluster start. The result also says whether the two sides wrote byte-identical shards.

    python bench/bench_ray.py                 # N = 20000
    BENCH_RAY_N=5000 python bench/bench_ray.py

Writes bench/results/ray_overhead.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common as C  # noqa: E402

N = int(os.environ.get("BENCH_RAY_N", "20000"))
N_PARTITION = int(os.environ.get("BENCH_RAY_N_PARTITION", "2000"))
AXES = tuple(os.environ.get("BENCH_RAY_AXES", "kinematics").split(","))
CPUS = int(os.environ.get("BENCH_RAY_CPUS", "4"))
ACTORS = int(os.environ.get("BENCH_RAY_ACTORS", "2"))
NOTE = ("On a shared machine the wall times include contention: when the load average exceeds the core count, the Ray side's extra processes (actors) take a larger share of the contended CPUs, so ray_s < local_s there is not a speed-up of Ray on an idle machine. The fixed cost of the Ray side is ray_init_s (cluster start) plus actor start-up inside ray_s; driver_cpu_s shows the work leaving the driver. Compare on an idle machine for the pure overhead.")


def _digest(folder: Path) -> dict[str, str]:
    m = json.loads((folder / "manifest.json").read_text())
    names = [s["path"] for t in m["shards"].values() for s in t] + [f["path"] for f in m.get("files", [])]
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in sorted(names) if n != "README.md"}


def side(p: dict) -> dict:
    """One executor: partition then perturb, timed separately."""
    from direct_data import pipeline
    from direct_data.stages.partition import PartitionConfig
    from direct_data.stages.perturb import PerturbConfig
    from direct_data.text.validator import Validator, ValidatorConfig

    out, ex = Path(p["out"]), p["executor"]
    t0 = time.perf_counter()
    ray_start = 0.0
    if ex == "ray":
        import ray

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - t0
    with C.Timer() as tp:
        part = pipeline.partition([p["partition_prompts"]], out / "partition",
                                  PartitionConfig(cache_dir=str(out / "cache"), executor=ex, ray_actors=ACTORS))
    validator = Validator(config=ValidatorConfig(mode="lexicon", use_embedding=False))
    with C.Timer() as tn:
        pert = pipeline.perturb([p["prompts"]], out / "perturb",
                                PerturbConfig(backend="rules", axes=AXES, use_embedding=False, executor=ex, ray_actors=ACTORS),
                                validator=validator)
    return {"executor": ex, "ray_init_s": round(ray_start, 2),
            "partition": {"wall_s": round(tp.wall, 2), "driver_cpu_s": round(tp.cpu, 2), "units": part.run["units"],
                          "kept": part.manifest.counts["kept"], "k": part.manifest.stats["k"]},
            "perturb": {"wall_s": round(tn.wall, 2), "driver_cpu_s": round(tn.cpu, 2), "units": pert.run["units"],
                        "requests": pert.manifest.counts["requests"], "accepted": pert.manifest.counts["accepted"]},
            "digests": {"partition": _digest(out / "partition"), "perturb": _digest(out / "perturb")}}


def main() -> None:
    import bench_partition as BP

    info = C.machine_info()
    t0 = time.perf_counter()
    prompts, pinfo = BP.prompts_jsonl(N)
    pprompts, ppinfo = BP.prompts_jsonl(N_PARTITION)
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="dd-bench-ray-") as tmp:
        for ex in ("local", "ray"):
            C.log(f"{ex}: partition + perturb on {N} prompts")
            r = C.run_child(__file__, "side", {"executor": ex, "out": str(Path(tmp) / ex), "prompts": str(prompts),
                                                     "partition_prompts": str(pprompts)})
            r.pop("_stdout", None)
            res[ex] = r
    loc, ray_ = res["local"], res["ray"]
    summary = {}
    for stage in ("partition", "perturb"):
        lw, rw = loc[stage]["wall_s"], ray_[stage]["wall_s"]
        summary[stage] = {"local_s": lw, "ray_s": rw, "overhead_s": round(rw - lw, 2), "ratio": round(rw / lw, 3) if lw else None,
                          "identical_shards": loc["digests"][stage] == ray_["digests"][stage]}
    for r in res.values():
        r.pop("digests", None)
    data = {
        "what": f"Ray executor (local cluster, {CPUS} logical CPUs, {ACTORS} actors) vs the local executor: "
                f"perturb --backend rules on {N} prompts (axes {','.join(AXES)}, lexicon validator, no embedding band) and "
                f"partition on {N_PARTITION} prompts (cold embedding cache); each side in its own process; "
                "ray_s excludes ray.init (ray_init_s)",
        "n_prompts_perturb": N, "n_prompts_partition": N_PARTITION,
        "prompts": {k: v for k, v in pinfo.items() if k != "examples"},
        "partition_prompts": {k: v for k, v in ppinfo.items() if k != "examples"},
        "summary": summary, "sides": res, "machine": C.finish_machine_info(info, t0), "note": NOTE,
    }
    path = C.write_result("ray_overhead", data)
    C.log(f"wrote {path}: {json.dumps(summary)}")


if __name__ == "__main__":
    if not C.child_main(sys.argv, {"side": side}):
        main()
