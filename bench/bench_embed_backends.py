"""Embedding backends side by side (issue 13, part 1), in one run on the shared real prompts.

Sides, each in its own fresh subprocess (model load / export outside the timed call, reported apart):
  bare      SentenceTransformer.encode(texts, batch_size=64, normalize_embeddings=True), packaged MiniLM
  torch     Embedder(backend="torch").embed(texts), empty cache
  onnx      Embedder(backend="onnx").embed(texts), empty cache (ONNX Runtime, fused, int8 dynamic, 1 text/pass)
  openvino  Embedder(backend="openvino").embed(texts), empty cache (OpenVINO, bf16 where the CPU has it)
  openvino-f32  Embedder(backend="openvino-f32").embed(texts), empty cache (OpenVINO, f32 on every CPU)
Order: bare, torch, onnx, openvino, openvino-f32, then reversed for the next repeat. Throughput = distinct texts /
wall of the embed call; ratios against bare and torch use the best run of each side.

Agreement, against the torch backend's vectors: mean / min cosine, and the share of prompts whose
partition is unchanged: `partition_vectors(x, PartitionConfig())` (same k, seed) on each backend's
vectors; `unchanged` counts equal partition ids, `unchanged_matched` after the best one-to-one
matching of partition ids (Hungarian on the confusion matrix), for reference.

    python bench/bench_embed_backends.py [--repeats 1] [--n 0 (all)]

Result: bench/results/embed_backends.json and .md
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

SCRIPT = Path(__file__).resolve()
BACKENDS = ("torch", "onnx", "openvino", "openvino-f32")
FAST = BACKENDS[1:]  # the runtimes compared against torch
TARGETS = {"speedup_vs_bare": 2.0, "mean_cos": 0.99, "unchanged": 0.97}


def _texts(n: int) -> list[str]:
    texts, _ = C.real_prompts()
    return texts[:n] if n else texts


def side_bare(p: dict) -> dict:
    import numpy as np

    from direct_data.backends.models import load_sentence_model

    texts = _texts(p["n"])
    with C.Timer() as tl:
        model = load_sentence_model()
    with C.Timer() as t:
        v = model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    np.save(p["vectors_out"], np.asarray(v, dtype=np.float32))
    return {"side": "bare", "texts": len(texts), "load_s": round(tl.wall, 2), "wall_s": round(t.wall, 2), "cpu_s": round(t.cpu, 2),
            "texts_per_s": round(len(texts) / t.wall, 2)}


def side_prepare(p: dict) -> dict:
    """Untimed: make sure the exports exist (first use exports them), and time that once."""
    from direct_data.backends.embed import Embedder

    out = {}
    for b in FAST:
        with C.Timer() as t:
            e = Embedder(backend=b, use_cache=False)
            e.embed(["a ball rolls down a hill", "two cats"])
        out[b] = {"identity": e.identity, "first_use_s": round(t.wall, 2)}
    return {"side": "prepare", "backends": out}


def side_ours(p: dict) -> dict:
    import numpy as np

    from direct_data.backends.embed import Embedder

    texts = _texts(p["n"])
    with C.Timer() as tl:
        emb = Embedder(backend=p["backend"], cache_dir=p["cache_dir"])
        emb._load_runtime() if p["backend"] != "torch" else emb.model  # load outside the timed call (as bare)
    with C.Timer() as t:
        v = emb.embed(texts)
    np.save(p["vectors_out"], v)
    return {"side": p["backend"], "identity": emb.identity, "batch_size": emb.batch_size, "texts": len(texts), "load_s": round(tl.wall, 2),
            "wall_s": round(t.wall, 2), "cpu_s": round(t.cpu, 2), "texts_per_s": round(len(texts) / t.wall, 2)}


def side_startup(p: dict) -> dict:
    """A fully cached `partition` through the API, in a fresh process: was any model or runtime loaded?"""
    from direct_data import pipeline
    from direct_data.stages.partition import PartitionConfig

    with C.Timer() as t:
        res = pipeline.partition(p["files"], p["out"], PartitionConfig(cache_dir=p["cache_dir"]), force=True)
    heavy = sorted(m for m in ("torch", "openvino", "onnxruntime", "sentence_transformers") if m in sys.modules)
    return {"side": "startup", "wall_s": round(t.wall, 2), "run": {k: res.run.get(k) for k in ("embedded", "cached", "model_loaded")},
            "heavy_modules_imported": heavy}


SIDES = {"bare": side_bare, "prepare": side_prepare, "ours": side_ours, "startup": side_startup}


def measure_startup() -> dict:
    """Start-to-first-output of `direct-data partition <shared prompts>` rerun with a warm embedding cache
    (a fresh output folder, so the partition itself is recomputed; the texts are all cached)."""
    import glob
    import os
    import subprocess

    files = sorted(glob.glob(str(C.PROMPTS_DIR / "*.jsonl")))
    cache = C.bench_cache_root() / "startup-embedding-cache"
    exe = str(Path(sys.executable).with_name("direct-data"))
    with tempfile.TemporaryDirectory(prefix="dd-bench-startup-") as tmp:
        warm = subprocess.run([exe, "partition", *files, "--out", f"{tmp}/warm", "--cache-dir", str(cache), "--force"], capture_output=True, text=True)
        if warm.returncode:
            raise RuntimeError(warm.stderr[-2000:])
        runs = []
        for i in range(3):
            t0 = time.perf_counter()
            proc = subprocess.Popen([exe, "partition", *files, "--out", f"{tmp}/o{i}", "--cache-dir", str(cache)], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"})
            first = proc.stdout.readline()
            t_first = time.perf_counter() - t0
            rest = proc.stdout.read()
            proc.wait()
            runs.append({"first_output_s": round(t_first, 2), "total_s": round(time.perf_counter() - t0, 2), "rc": proc.returncode,
                         "first_line": first.strip()[:200], "output_tail": (first + rest).strip()[-600:]})
        api = C.run_child(SCRIPT, "startup", {"files": files, "out": f"{tmp}/api", "cache_dir": str(cache)})
    return {"command": "direct-data partition ../shared/data/prompts/*.jsonl --out <fresh folder> --cache-dir <warm cache>", "runs": runs,
            "first_output_s_median": sorted(r["first_output_s"] for r in runs)[1], "total_s_median": sorted(r["total_s"] for r in runs)[1],
            "api": {k: v for k, v in api.items() if not k.startswith("_")}}


def _agreement(ref, x) -> dict:
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    from direct_data.stages.partition import PartitionConfig, assign, partition_vectors

    cos = np.einsum("ij,ij->i", ref, x)
    a = partition_vectors(ref, PartitionConfig())
    b = partition_vectors(x, PartitionConfig())
    la, lb, k = a["labels"], b["labels"], a["stats"]["k"]
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (la, lb), 1)
    r, c = linear_sum_assignment(-conf)
    # the same centroids (the torch run's): which prompts does the backend's vector move to another partition?
    fixed = assign(x, a["centroids"])[0][:, 0]
    moved = fixed != la
    sweep = seed_sweep(ref, x)
    return {"unchanged_seeds": sweep,"mean_cos": round(float(cos.mean()), 6), "min_cos": round(float(cos.min()), 6), "k": k,
            "unchanged": round(float((la == lb).mean()), 4), "unchanged_matched": round(float(conf[r, c].sum() / len(la)), 4),
            "unchanged_same_centroids": round(float((~moved).mean()), 4),
            "moved_median_margin": round(float(np.median(a["margin"][moved])), 4) if moved.any() else None,
            "all_median_margin": round(float(np.nanmedian(a["margin"])), 4)}


SWEEP_SEEDS = range(10)


def seed_sweep(ref, x) -> dict:
    """k-means retrained on both sides with each of SWEEP_SEEDS (same k): the share of prompts
    whose partition id is unchanged, per seed; and, for scale, the same share between two torch
    runs that differ only in the seed (seed s vs s + 1 on the torch vectors, ids matched one to one)."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    from direct_data.stages.partition import PartitionConfig, choose_k, partition_vectors

    k = choose_k(len(ref))
    per, seed_only = [], []
    for seed in SWEEP_SEEDS:
        cfg = PartitionConfig(k=k, seed=seed)
        la, lb = partition_vectors(ref, cfg)["labels"], partition_vectors(x, cfg)["labels"]
        per.append(round(float((la == lb).mean()), 4))
        lc = partition_vectors(ref, PartitionConfig(k=k, seed=seed + 1))["labels"]
        conf = np.zeros((k, k), dtype=np.int64)
        np.add.at(conf, (la, lc), 1)
        r, c = linear_sum_assignment(-conf)
        seed_only.append(round(float(conf[r, c].sum() / len(la)), 4))
    return {"seeds": list(SWEEP_SEEDS), "unchanged": per, "median": round(float(np.median(per)), 4), "min": min(per), "max": max(per),
            "meeting_target": sum(v >= TARGETS["unchanged"] for v in per),
            "torch_seed_change_only_matched": {"median": round(float(np.median(seed_only)), 4), "min": min(seed_only), "max": max(seed_only)}}


def run(repeats: int, n: int) -> dict:
    import numpy as np

    info = C.machine_info()
    t0 = time.perf_counter()
    prep = C.run_child(SCRIPT, "prepare", {})
    runs, vecs = [], {}
    order = ["bare", *BACKENDS]
    with tempfile.TemporaryDirectory(prefix="dd-bench-backends-") as tmp:
        for r in range(repeats):
            for side in order if r % 2 == 0 else order[::-1]:
                out = str(Path(tmp) / f"{side}-{r}.npy")
                C.log(f"embed backends: repeat {r + 1}/{repeats}, {side}")
                if side == "bare":
                    res = C.run_child(SCRIPT, "bare", {"n": n, "vectors_out": out})
                else:
                    res = C.run_child(SCRIPT, "ours", {"n": n, "backend": side, "vectors_out": out, "cache_dir": str(Path(tmp) / f"cache-{side}-{r}")})
                runs.append({k: v for k, v in res.items() if not k.startswith("_")})
                vecs.setdefault(side, np.load(out))
    best = {s: max(r_["texts_per_s"] for r_ in runs if r_["side"] == s) for s in order}
    ref = vecs["torch"]
    table = {}
    for s in order:
        row = {"texts_per_s": best[s], "vs_bare": round(best[s] / best["bare"], 2), "vs_torch": round(best[s] / best["torch"], 2)}
        if s != "torch":
            row |= _agreement(ref, vecs[s])
        table[s] = row
    ok = [b for b in FAST if table[b]["mean_cos"] >= TARGETS["mean_cos"] and table[b]["unchanged"] >= TARGETS["unchanged"]]
    # k-means retrained on vectors that differ by ~1e-5 (bare encode vs torch backend: identical -> 1.0)
    # can still move boundary prompts; on the centroids held fixed the embedding alone is judged
    ok_fixed = [b for b in FAST if table[b]["mean_cos"] >= TARGETS["mean_cos"] and table[b]["unchanged_same_centroids"] >= TARGETS["unchanged"]]
    fastest_fixed = max(ok_fixed, key=lambda b: table[b]["texts_per_s"]) if ok_fixed else "torch"
    fastest = max(ok, key=lambda b: table[b]["texts_per_s"]) if ok else "torch"
    return {
        "benchmark": "embed_backends", "machine": C.finish_machine_info(info, t0), "texts": runs[0]["texts"], "repeats": repeats,
        "what": __doc__.split("\n\n")[1], "prepare": {k: v for k, v in prep.items() if not k.startswith("_")},
        "runs": runs, "table": table, "targets": TARGETS, "meets_agreement": ok, "fastest_meeting_targets": fastest,
        "meets_agreement_same_centroids": ok_fixed, "fastest_meeting_targets_same_centroids": fastest_fixed,
    }


def pick_default(res: dict) -> dict:
    """Among the backends meeting the agreement targets (mean cos, and unchanged on torch's centroids):
    the most texts per CPU-second (wall clock on a shared machine is noise); within 5% of each other,
    the one closer to torch (higher mean cosine)."""
    t = res["table"]
    cpu = {r["side"]: r["texts"] / r["cpu_s"] for r in res["runs"]}
    ok = res.get("meets_agreement_same_centroids") or []
    if not ok:
        return {"backend": "torch", "rule": pick_default.__doc__}
    best = max(cpu[b] for b in ok)
    close = [b for b in ok if cpu[b] >= 0.95 * best]
    choice = max(close, key=lambda b: t[b]["mean_cos"])
    return {"backend": choice, "texts_per_cpu_s": {b: round(cpu[b], 1) for b in ok}, "rule": " ".join(pick_default.__doc__.split())}


def markdown(res: dict) -> str:
    t, m = res["table"], res["machine"]
    lines = [
        "### Embedding backends (`bench/bench_embed_backends.py`)", "",
        f"{res['texts']:,} distinct real prompts (the shared prompts, de-duplicated), empty caches, each side its own process; machine: "
        f"{m.get('cpu_count')} cores (load average {m.get('load_average_start')} -> {m.get('load_average_end')}).", "",
        "| Backend | texts/s (wall) | vs bare `encode` | vs torch backend | texts per CPU-second (vs bare) | mean cos vs torch | min cos | partition unchanged: k-means retrained (same k, seed) | unchanged: torch's centroids |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cpu = {r_["side"]: r_["texts"] / r_["cpu_s"] for r_ in res["runs"]}
    for s, r in t.items():
        name = "bare SentenceTransformer.encode(batch 64)" if s == "bare" else s
        cos = r.get("mean_cos", "1 (reference)" if s == "torch" else "")
        same = f"{r['unchanged']} (matched ids: {r['unchanged_matched']})" if "unchanged" in r else ""
        lines.append(f"| {name} | {r['texts_per_s']} | {r['vs_bare']}x | {r['vs_torch']}x | {cpu[s]:.1f} ({cpu[s] / cpu['bare']:.2f}x) | {cos} | {r.get('min_cos', '')} | {same} | {r.get('unchanged_same_centroids', '')} |")
    busy = max((m.get("load_average_start") or [0])[0], (m.get("load_average_end") or [0])[0]) > (m.get("cpu_count") or 1)
    lines += ["", ("Wall-clock figures were taken on cores shared with other jobs (load average above the core count); " if busy else
                   "Wall-clock figures were taken on a quiet machine (load average at or below the core count); ")
              + "texts per CPU-second (the process's own user + system time) is the contention-free view of the same runs.",
              "", f"Targets: >= {TARGETS['speedup_vs_bare']}x bare, mean cos >= {TARGETS['mean_cos']}, >= {TARGETS['unchanged']:.0%} unchanged. "
              f"Meeting the agreement targets with k-means retrained: {', '.join(res['meets_agreement']) or 'none'} (fastest: {res['fastest_meeting_targets']}); "
              f"with the partition unchanged judged on torch's centroids: {', '.join(res['meets_agreement_same_centroids']) or 'none'} "
              f"(fastest: **{res['fastest_meeting_targets_same_centroids']}**). The prompts that move sit on partition boundaries: median margin "
              + ", ".join(f"{b} {t[b].get('moved_median_margin')}" for b in FAST) + f" vs {t['openvino'].get('all_median_margin')} over all prompts.",
              "", "Seeds (`seed_sweep`): k-means retrained on both sides with each of seeds " + f"{min(SWEEP_SEEDS)}-{max(SWEEP_SEEDS)}: "
              + "; ".join(f"{b} unchanged median {t[b]['unchanged_seeds']['median']:.2%} (min {t[b]['unchanged_seeds']['min']:.2%}, max "
                          f"{t[b]['unchanged_seeds']['max']:.2%}; {t[b]['unchanged_seeds']['meeting_target']} of {len(SWEEP_SEEDS)} seeds >= {TARGETS['unchanged']:.0%})"
                          for b in FAST if "unchanged_seeds" in t[b])
              + (". For scale, torch against torch with only the seed changed (s vs s + 1, ids matched one to one): median "
                 f"{t['openvino']['unchanged_seeds']['torch_seed_change_only_matched']['median']:.2%} unchanged. Lloyd's iterations amplify a 1e-5 "
                 "difference in the vectors into another local optimum, so the retrained figure measures k-means as much as the backend; the "
                 "centroids held fixed judge the embedding alone." if "unchanged_seeds" in t.get("openvino", {}) else ""),
              "", "Every target at once, k-means retrained: the speed target is met by "
              + (", ".join(b for b in FAST if t[b]["vs_bare"] >= TARGETS["speedup_vs_bare"]) or "none") + ", the agreement targets by "
              + (", ".join(res["meets_agreement"]) or "none") + "; both by "
              + (", ".join(b for b in res["meets_agreement"] if t[b]["vs_bare"] >= TARGETS["speedup_vs_bare"]) or "**none** on this machine") + ".",
              "", f"Default backend: **{res['default_choice']['backend']}** (rule: {res['default_choice']['rule']}; texts per CPU-second: {res['default_choice'].get('texts_per_cpu_s')}).",
              "First use (export + optimise/quantise, once per model, cached under ~/.cache/direct-data/models/embedders/): "
              + ", ".join(f"{b} {v['first_use_s']} s" for b, v in res["prepare"]["backends"].items()) + "."]
    su = res.get("startup_warm_cache")
    if su:
        api = su["api"]
        lines += ["", f"Start-up, fully cached rerun (`{su['command']}`, {len(su['runs'])} runs, median): first output after "
                  f"{su['first_output_s_median']} s, done after {su['total_s_median']} s (first line: `{su['runs'][0]['first_line']}`). "
                  f"Through the API in a fresh process: embedded {api['run']['embedded']}, cached {api['run']['cached']}, model loaded: "
                  f"{api['run']['model_loaded']}; heavy modules imported: {', '.join(api['heavy_modules_imported']) or 'none'}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--n", type=int, default=0, help="first N distinct prompts (0: all)")
    ap.add_argument("--startup-only", action="store_true", help="only (re)measure the warm-cache start-up, into the existing result")
    ap.add_argument("--md-only", action="store_true", help="only rewrite embed_backends.md from the existing result")
    a = ap.parse_args()
    if a.md_only or a.startup_only:
        res = json.loads((C.RESULTS_DIR / "embed_backends.json").read_text())
    else:
        res = run(a.repeats, a.n)
    if not a.md_only:
        res["startup_warm_cache"] = measure_startup()
    res["default_choice"] = pick_default(res)
    C.write_result("embed_backends", res)
    md = markdown(res)
    (C.RESULTS_DIR / "embed_backends.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    if not C.child_main(sys.argv, SIDES):
        sys.exit(main())
