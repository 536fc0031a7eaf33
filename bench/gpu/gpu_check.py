"""The prepared GPU check of issue 12 (its train part ran on an H200: bench/results/gpu_check.md). Two parts:

    python bench/gpu/gpu_check.py train [--steps 6] [--rows-per-gpu 2] [--no-grad-checkpointing] [--objectives sft,direct]
    torchrun --nproc_per_node 1 bench/gpu/gpu_check.py train # the same under torchrun (1 process)
    python bench/gpu/gpu_check.py vllm [--requests 256]

train: the Wan2.1-T2V-1.3B architecture (random init) with LoRA rank 16, bf16 autocast and gradient
checkpointing, on 480p x 81-frame latent shapes (16 x 21 x 60 x 104, 32,760 tokens per row after
the 1x2x2 patch) and umT5-width text states (512 x 4096), batch 2 (two partitions, one hard negative
per row), objectives `sft` and `direct`: seconds per step (median of the steps after the first) and
peak GPU memory (`torch.cuda.max_memory_allocated`).

vllm: a 7B-scale decoder (Llama layout: 32 layers, 4096 wide, 11008 FFN; the tokenizer of the
packaged Gemma-3-270M) with random weights (`load_format="dummy"`), one engine shared by both
sides: `perturb --backend vllm` (`pipeline.perturb` with the project's LLM rewriter and validator
on that engine) against bare `LLM.generate` of the same requests (same templates, schemas, seeds,
n candidates): requests per second and completion tokens per second.

Every part writes one JSON line to $OUT/gpu_check.jsonl (or ./gpu_check.jsonl), with what ran and
what did not (a missing package is recorded, not raised).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
OUT = Path(os.environ.get("OUT", ".")) / "gpu_check.jsonl"


def record(d: dict) -> None:
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        with open(OUT, "a") as f:
            f.write(json.dumps(d) + "\n")
        print(json.dumps(d), flush=True)


def latent_data(rows: int = 4):
    import torch

    from direct_data.training.data import TrainData

    g = torch.Generator().manual_seed(0)
    lat = torch.randn(rows, 16, 21, 60, 104, generator=g, dtype=torch.float32)
    text = torch.randn(rows, 512, 4096, generator=g) * 0.1
    hard = text + 0.05 * torch.randn(rows, 512, 4096, generator=g)
    lengths = torch.full((rows,), 512)
    return TrainData.from_tensors(lat, text, lengths, torch.arange(rows) % 2, hard_states=hard, hard_lengths=lengths,
                                  hard_axis=["kinematics"] * rows)


def part_train(steps: int, rows_per_gpu: int = 2, grad_checkpointing: bool = True, objectives: tuple[str, ...] = ("sft", "direct")) -> None:
    import torch

    from direct_data.training.config import preset
    from direct_data.training.loop import train

    world = int(os.environ.get("WORLD_SIZE", "1"))
    data = latent_data(max(4, 2 * rows_per_gpu * world))
    for objective in objectives:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        cfg = preset(objective, model_config="wan2.1-1.3b", model_overrides={"text_dim": 4096}, lora_rank=16, batch_size=rows_per_gpu * world,
                     max_steps=steps, device="cuda", bf16=True, grad_checkpointing=grad_checkpointing, progress=False, diagnostics=False,
                     text_len=512)
        t0 = time.perf_counter()
        try:
            res = train(cfg, data)
        except Exception as e:  # noqa: BLE001 - recorded, the next part still runs
            record({"part": "train", "objective": objective, "world_size": world, "ok": False, "error": repr(e)[:2000],
                    "traceback": traceback.format_exc()[-3000:]})
            continue
        times = [r["time_s"] for r in res.records if "time_s" in r]
        record({"part": "train", "objective": objective, "world_size": world, "ok": True, "torchrun": "RANK" in os.environ,
                "latent": [16, 21, 60, 104], "text": [512, 4096], "batch_rows_per_gpu": rows_per_gpu, "lora_rank": 16, "bf16": True,
                "grad_checkpointing": grad_checkpointing, "steps": len(times), "s_per_step_median_after_first": round(statistics.median(times[1:]), 3) if len(times) > 1 else None,
                "s_per_step_all": [round(t, 3) for t in times], "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                "loss_last": res.records[-1].get("loss"), "wall_s": round(time.perf_counter() - t0, 1),
                "gpu": torch.cuda.get_device_name(0)})


def random_7b_folder(root: Path) -> Path:
    """config.json of a 7B-scale Llama decoder + the packaged Gemma tokenizer (weights: vLLM dummy)."""
    import shutil

    from direct_data.backends.llm import prepare_gemma

    tok_src = Path(prepare_gemma())
    folder = root / "random-7b"
    folder.mkdir(parents=True, exist_ok=True)
    for f in tok_src.iterdir():
        if f.name.startswith("tokenizer") or f.name in ("special_tokens_map.json", "chat_template.jinja"):
            shutil.copy(f, folder / f.name)
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(folder))
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
           "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": vocab,
           "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "torch_dtype": "bfloat16",
           "tie_word_embeddings": False, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    return folder


def part_vllm(n_requests: int) -> None:
    try:
        import vllm
    except ImportError as e:
        record({"part": "vllm", "ok": False, "error": f"vllm not installed: {e}"})
        return
    from direct_data import pipeline
    from direct_data.backends.llm import VLLMBackend
    from direct_data.stages.perturb import LLMRewriter, PerturbConfig
    from direct_data.text.templates import render

    prompts_file = ROOT.parent / "shared" / "data" / "prompts" / "phyworldbench.jsonl"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = random_7b_folder(tmp)
        lines = [json.loads(x)["prompt"] for x in prompts_file.read_text().splitlines()[: max(1, n_requests // 5)]] \
            if prompts_file.is_file() else [f"A red ball number {i} rolls down a wooden ramp and hits a box." for i in range(max(1, n_requests // 5))]
        src = tmp / "prompts.jsonl"
        src.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in lines))
        t0 = time.perf_counter()
        llm = vllm.LLM(str(folder), load_format="dummy", seed=0, max_model_len=2048, enable_prefix_caching=True,
                       structured_outputs_config={"backend": "auto", "disable_any_whitespace": True})
        load_s = time.perf_counter() - t0
        cfg = PerturbConfig(backend="vllm", model=str(folder), num_candidates=3, cache_dir=str(tmp / "cache"))
        backend = VLLMBackend(str(folder), engine=llm, probe=False)
        rw = LLMRewriter(lambda: backend, name="vllm", model="random-7b", cfg=cfg, cache_dir=tmp / "cache")
        # bare LLM.generate on exactly the requests perturb sends
        from direct_data.backends.llm import Request
        from direct_data.stages.perturb import request_seed

        reqs = [Request(request_id=f"{i}:{a}", prompt_text=render(rw.templates[a], p), seed=request_seed(0, str(i), a),
                        max_tokens=rw.max_tokens, temperature=cfg.temperature, n=cfg.num_candidates, axis=a)
                for i, p in enumerate(lines) for a in cfg.axes]
        params = [backend.sampling_params(r) for r in reqs]
        t0 = time.perf_counter()
        outs = llm.generate([r.prompt_text for r in reqs], params, use_tqdm=False)
        bare_s = time.perf_counter() - t0
        bare_tokens = sum(len(o.token_ids) for out in outs for o in out.outputs)
        t0 = time.perf_counter()
        res = pipeline.perturb([src], tmp / "perturb", cfg, rewriter=rw)
        ours_s = time.perf_counter() - t0
        record({"part": "vllm", "ok": True, "model": "Llama-layout 7B (32 x 4096, FFN 11008), random weights (load_format=dummy)",
                "requests": len(reqs), "candidates_per_request": cfg.num_candidates, "engine_load_s": round(load_s, 1),
                "bare_generate_s": round(bare_s, 2), "bare_requests_per_s": round(len(reqs) / bare_s, 2),
                "bare_completion_tokens_per_s": round(bare_tokens / bare_s, 1),
                "perturb_s": round(ours_s, 2), "perturb_requests_per_s": round(res.manifest.counts["requests"] / ours_s, 2),
                "perturb_generated": rw.stats, "perturb_over_bare": round(ours_s / bare_s, 3),
                "note": "perturb includes templates, the request cache writes, validation and shard writing; the engine is shared"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=("train", "vllm"))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--requests", type=int, default=250)
    ap.add_argument("--rows-per-gpu", type=int, default=2)
    ap.add_argument("--no-grad-checkpointing", action="store_true")
    ap.add_argument("--objectives", default="sft,direct")
    a = ap.parse_args()
    try:
        import torch

        if not torch.cuda.is_available():
            record({"part": a.part, "ok": False, "error": "no CUDA device"})
            return
    except ImportError as e:
        record({"part": a.part, "ok": False, "error": f"torch missing: {e}"})
        return
    if a.part == "train":
        part_train(a.steps, a.rows_per_gpu, not a.no_grad_checkpointing, tuple(a.objectives.split(",")))
    else:
        part_vllm(a.requests)


if __name__ == "__main__":
    main()
