"""Throughput of `VLLMBackend.generate` vs a bare `vllm.LLM.generate`, one engine, one process.

Both sides send the same rendered few-shot requests with the same sampling parameters, seeds and
JSON-schema constraint to the same `vllm.LLM` (shared, so engine settings are identical by
construction); what is measured is our overhead: building `SamplingParams`, the schema cache,
parsing and validating every output, building `Response`s. A warm-up pass over all requests
first fills the prefix cache (and torch.compile caches) so that neither timed side gets the cold
start; then the sides alternate (bare, ours, bare, ours) and their times are summed.

    python bench/bench_vllm.py                     # the packaged Gemma-3-270M on CPU
    python bench/bench_vllm.py --model /path/to/7b --requests 256   # on a GPU machine

Result: bench/results/vllm_throughput.json (ratio = ours_tokens_per_s / bare_tokens_per_s,
target >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

PROMPTS = Path(os.environ.get("DIRECT_DATA_PROMPTS", "/work/shared/data/prompts/videophy1_test.jsonl"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model folder (default: the packaged Gemma-3-270M, converted)")
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per side (alternating)")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--max-model-len", type=int, default=2048)
    ap.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=None,
                    help="default: VLLMBackend's (eager on CPU, compiled elsewhere)")
    ap.add_argument("--out", help="result file (default: bench/results/vllm_throughput.json)")
    a = ap.parse_args()
    t_bench = time.perf_counter()
    info = C.machine_info()

    from direct_data.backends.llm import Request, VLLMBackend, cpu_engine_env, import_vllm, min_max_tokens, prepare_gemma, rewrite_schema
    from direct_data.text.templates import AXES, load_template, render

    try:
        vllm = import_vllm()
    except ImportError as e:  # an optional dependency: say so, keep the last real result
        C.log(f"bench_vllm skipped: {e}")
        return 0
    from vllm.platforms import current_platform

    on_cpu = bool(current_platform.is_cpu())
    tmp = tempfile.mkdtemp(prefix="bench-vllm-")
    if on_cpu:
        for k, v in cpu_engine_env(tmp).items():
            os.environ.setdefault(k, v)

    model = a.model or str(prepare_gemma())
    rows = [json.loads(line) for line in PROMPTS.read_text().splitlines() if line.strip()]
    prompts = [r["prompt"] for r in rows[: a.requests]]
    reqs = []
    for i, p in enumerate(prompts):
        axis = AXES[i % len(AXES)]
        reqs.append(Request(request_id=f"b{i}", prompt_text=render(load_template(axis), p), seed=i,
                            max_tokens=min_max_tokens(rewrite_schema(axis)), temperature=a.temperature, axis=axis))

    t0 = time.perf_counter()
    backend = VLLMBackend(model, max_model_len=a.max_model_len, seed=0, enforce_eager=a.enforce_eager)
    engine_start_s = time.perf_counter() - t0
    llm = backend.llm

    def bare():
        # The baseline builds the same SamplingParams with vLLM's own classes, then only calls generate.
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        schemas = {ax: json.dumps(rewrite_schema(ax), separators=(",", ":")) for ax in AXES}
        params = [SamplingParams(n=r.n, temperature=r.temperature, seed=r.seed, max_tokens=r.max_tokens,
                                 structured_outputs=StructuredOutputsParams(json=schemas[r.axis])) for r in reqs]
        outs = llm.generate([r.prompt_text for r in reqs], params, use_tqdm=False)
        return [o.outputs[0].text for o in outs], sum(len(c.token_ids) for o in outs for c in o.outputs)

    def ours():
        resps = backend.generate(reqs)
        return [r.candidates[0].text for r in resps], sum(r.completion_tokens for r in resps)

    ours()  # fills the prefix cache for every request
    times = {"bare": 0.0, "ours": 0.0}
    tokens = {"bare": 0, "ours": 0}
    texts = {}
    for _ in range(a.repeats):
        for side, fn in (("bare", bare), ("ours", ours)):
            t = time.perf_counter()
            texts[side], n = fn()
            times[side] += time.perf_counter() - t
            tokens[side] += n
    tps = {k: tokens[k] / times[k] for k in times}
    final = backend.generate(reqs)
    result = {
        "benchmark": "perturb vllm backend vs bare LLM.generate",
        "ratio": tps["ours"] / tps["bare"],
        "target": 0.9,
        "meets_target": tps["ours"] / tps["bare"] >= 0.9,
        "bare_tokens_per_s": tps["bare"],
        "ours_tokens_per_s": tps["ours"],
        "bare_s": times["bare"],
        "ours_s": times["ours"],
        "completion_tokens_per_pass": tokens["ours"] // a.repeats,
        "identical_outputs": texts["bare"] == texts["ours"],
        "schema_valid_share": sum(c.valid for r in final for c in r.candidates) / sum(len(r.candidates) for r in final),
        "requests": len(reqs),
        "repeats": a.repeats,
        "engine_start_s_incl_probe": engine_start_s,
        "model": model,
        "device": "cpu" if on_cpu else str(current_platform.device_type),
        "vllm": vllm.__version__,
        "engine_settings": backend.engine_settings,
        "cpu_env": {k: os.environ.get(k) for k in ("VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_KVCACHE_SPACE")} if on_cpu else None,
        "machine": C.finish_machine_info(info, t_bench),
    }
    C.write_result("vllm_throughput", result, a.out)
    print(json.dumps({k: result[k] for k in ("ratio", "bare_tokens_per_s", "ours_tokens_per_s", "identical_outputs")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
