"""Training under `torchrun --nproc_per_node 2` on gloo with the tiny `WanTransformer3DModel`:
DDP (LoRA) and FSDP2 (full fine-tuning) steps equal one-process steps on the same global batch
(gradients averaged, not summed), and a stopped and resumed distributed run gives the same loss
curve. The worker is `tests/torchrun_worker.py`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from direct_data.core.errors import ConfigError
from direct_data.training import wan
from direct_data.training.checkpoint import LORA_WEIGHT_NAME
from direct_data.training.data import PartitionBatchSampler, collate, drop_captions
from direct_data.training.distributed import Dist, check_batch, shard_slice
from direct_data.training.step import train_step
from tests.test_train import _cfg, structured_data

ROOT = Path(__file__).resolve().parent.parent


def test_sampler_shards_each_span_two_partitions_and_one_shard_is_the_plain_sampler():
    part = torch.tensor([0] * 40 + [1] * 5 + [2] * 3)  # one dominant partition
    s = PartitionBatchSampler(part, batch_size=8, seed=3, shards=2)
    for _ in range(30):
        _, rows = s.next_batch()
        assert len(rows) == 8 and len(set(rows)) == 8
        for r in range(2):
            shard = rows[shard_slice(8, Dist(rank=r, world_size=2))]
            assert len({int(part[i]) for i in shard}) >= 2, shard
    plain, one = PartitionBatchSampler(part, 4, seed=3), PartitionBatchSampler(part, 4, seed=3, shards=1)
    assert [plain.next_batch() for _ in range(20)] == [one.next_batch() for _ in range(20)]
    with pytest.raises(ConfigError, match="multiple of the 2 processes"):
        check_batch(5, Dist(world_size=2))
    with pytest.raises(ConfigError, match=">= 2 rows each"):
        check_batch(2, Dist(world_size=2))


def _reference(objective: str, lora_rank: int, steps: int):
    """One process, the same global batches (the 2-shard sampler), the loop's model and optimizer."""
    data = structured_data()
    cfg = _cfg(objective, max_steps=4, lora_rank=lora_rank, device="cpu", lr=1e-3 if lora_rank == 0 else 3e-3)
    model = wan.build_for_latents(cfg.model_config, pretrained=None, seed=cfg.seed, overrides=cfg.model_overrides,
                                  latent_channels=data.latent_shape[0])
    if lora_rank:
        wan.add_lora(model, rank=cfg.lora_rank, alpha=cfg.lora_alpha, target_modules=cfg.lora_targets, seed=cfg.seed)
    else:
        model.requires_grad_(True)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    sampler = PartitionBatchSampler(data.partition, cfg.batch_size, cfg.seed, shards=2)
    gens = {"noise": torch.Generator().manual_seed(cfg.seed), "neg": torch.Generator().manual_seed(cfg.seed + 1),
            "drop": torch.Generator().manual_seed(cfg.seed + 2)}
    norms, losses, weights = [], [], []
    for _ in range(steps):
        _, rows = sampler.next_batch()
        batch = collate(data, rows, text_len=data.max_text_len, micro_fraction=cfg.micro_fraction,
                        use_micro=cfg.lam_micro > 0, gen=gens["neg"])
        batch = drop_captions(batch, cfg.cond_dropout, gens["drop"])
        loss, _ = train_step(model, batch, data, cfg, gen_noise=gens["noise"], gen_neg=gens["neg"], device=torch.device("cpu"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)))
        losses.append(float(loss.detach()))
        opt.step()
        sd = wan.lora_state_dict(model) if lora_rank else model.state_dict()
        weights.append({k: v.detach().clone() for k, v in sd.items()})
    return weights, norms, losses


def _torchrun(out: Path, objective: str, lora_rank: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "torchrun_worker.py"), str(out), objective, str(lora_rank)]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads((out / "records.json").read_text())


def _checkpoint_weights(folder: Path, lora: bool) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if lora:
        return {k.removeprefix("transformer."): v for k, v in load_file(str(folder / LORA_WEIGHT_NAME)).items()}
    return load_file(str(folder / "transformer" / "diffusion_pytorch_model.safetensors"))


@pytest.mark.parametrize("objective,lora_rank", [("deltafm", 8), ("sft", 0)], ids=["ddp-lora", "fsdp2-full"])
def test_torchrun_steps_equal_one_process_steps_and_resume_gives_the_same_curve(objective, lora_rank, tmp_path):
    recs = _torchrun(tmp_path, objective, lora_rank)
    assert recs["world"] == 2
    ref_w, ref_norms, ref_losses = _reference(objective, lora_rank, steps=2)
    full = recs["full"]
    # gradients averaged over the ranks (a sum would double the norm), losses the global batch's mean
    assert [r["grad_norm"] for r in full[:2]] == pytest.approx(ref_norms, rel=1e-5)
    assert [r["loss"] for r in full[:2]] == pytest.approx(ref_losses, rel=1e-5)
    # parameters after one and two steps equal the one-process steps on the same global batch (up to float
    # reassociation of the all-reduce, which AdamW's first steps, ~ lr * g / |g|, amplify for tiny gradients)
    lr = 1e-3 if lora_rank == 0 else 3e-3
    for step in (1, 2):
        got = _checkpoint_weights(tmp_path / "full" / "checkpoints" / f"step-{step:08d}", lora_rank > 0)
        assert set(got) == set(ref_w[step - 1])
        for k, v in ref_w[step - 1].items():
            torch.testing.assert_close(got[k], v, rtol=1e-4, atol=lr * 1e-2, msg=k)
    # stopped after 2 steps, resumed: the same loss curve as the uninterrupted run
    assert [r["step"] for r in recs["part"]] == [1, 2]
    keys = ("loss", "fm", "lr", "grad_norm", "epoch")
    assert [tuple(r[k] for k in keys) for r in recs["resumed"]] == [tuple(r[k] for k in keys) for r in full]
    logged = [json.loads(x) for x in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
