"""Training on N processes (`torchrun --nproc_per_node N -m direct_data.cli train ...`).

The same entry point runs alone or under torchrun: `from_env` reads the variables torchrun sets
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), starts the process group (NCCL on CUDA, gloo on
the CPU) and picks the device ``cuda:LOCAL_RANK``. Without them it is a one-process no-op.

How a step is split (every rank holds the same sampler, generators and global batch):

* the sampler draws the **global** batch of ``batch_size`` rows as ``world_size`` shards of
  ``batch_size / world_size`` rows, each shard spanning >= 2 partitions (`PartitionBatchSampler`);
* every rank collates the global batch and draws the global noise, levels and negative choices
  from identically seeded generators, so the random streams never diverge between ranks (a
  checkpoint's generator states are every rank's) and macro negatives are drawn from the global
  batch; each rank then runs the forward and the loss on its own shard;
* **DDP** (LoRA, the default: every rank holds the frozen base and the adapters; gradients of the
  adapters are averaged) or **FSDP2** (``lora_rank = 0``: `fully_shard` on every transformer block,
  then on the root). On gloo FSDP2 reduces with SUM and a post-division by the world size
  (`set_force_sum_reduction_for_comms`): gloo has no AVG reduce-scatter;
* with equal shards the averaged gradient of the per-shard flow-matching means is the gradient of
  the global mean: one distributed step equals a one-process step on the same global batch (the
  batch-level terms, macro/micro masks and the moments regulariser, are per-shard statistics);
* rank 0 writes checkpoints (FSDP2: the full state dict gathered on rank 0) and the log; every
  rank reads the checkpoint on resume.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from direct_data.core.errors import ConfigError

__all__ = ["Dist", "from_env", "wrap_model", "unwrap", "shard_slice", "mean_stats"]

log = logging.getLogger(__name__)


@dataclass
class Dist:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    started_here: bool = False  # this module started the process group (and ends it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.started_here:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.started_here = False


def from_env(device_name: str = "auto") -> tuple[Dist, torch.device | None]:
    """The job as torchrun describes it in the environment, and the device of this rank (None
    when not distributed: the caller resolves ``device_name`` itself)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), None
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError(f"device={device_name}: CUDA is not available on this machine; use device=cpu (or auto)")
    if device_name.startswith("cuda:"):
        raise ConfigError(f"device={device_name}: under torchrun each rank uses cuda:LOCAL_RANK; give device=cuda or auto")
    device = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    started = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=device if use_cuda else None)
        started = True
    d = Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local,
             backend=dist.get_backend(), started_here=started)
    if d.world_size != world or d.rank != rank:
        log.warning("process group (rank %d of %d) differs from the environment (RANK=%d, WORLD_SIZE=%d)",
                    d.rank, d.world_size, rank, world)
    return d, device


def check_batch(batch_size: int, d: Dist) -> int:
    """Rows per rank: the global batch split in equal shards of >= 2 rows (a `ConfigError` otherwise)."""
    if batch_size % d.world_size or batch_size // d.world_size < 2:
        raise ConfigError(f"batch_size={batch_size} is the global batch: it must be a multiple of the "
                          f"{d.world_size} processes with >= 2 rows each (every shard spans 2 partitions); "
                          f"use batch_size={2 * d.world_size * max(1, -(-batch_size // (2 * d.world_size)))}")
    return batch_size // d.world_size


def shard_slice(n: int, d: Dist) -> slice:
    """This rank's rows of a global batch of ``n`` rows (the sampler's shard order)."""
    k = n // d.world_size
    return slice(d.rank * k, (d.rank + 1) * k)


def wrap_model(model, *, full: bool, d: Dist, device: torch.device):
    """DDP for adapters (``full=False``), FSDP2 per transformer block for full fine-tuning. The
    model must already be on ``device`` with its trainable parameters set."""
    if not d.enabled:
        return model
    if not full:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        return DDP(model, device_ids=ids, broadcast_buffers=False)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (d.world_size,))
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise ConfigError("FSDP2 (full fine-tuning under torchrun) needs a model with `blocks` (WanTransformer3DModel)")
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    if d.backend == "gloo":  # gloo has no AVG reduce-scatter: sum, then divide by the world size
        model.set_force_sum_reduction_for_comms(True)
        for block in blocks:
            block.set_force_sum_reduction_for_comms(True)
    return model


def unwrap(model):
    """The module under a DDP wrapper (FSDP2 shards in place: the model itself)."""
    return getattr(model, "module", model)


def is_fsdp(model) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, FSDPModule)


def mean_stats(stats: dict[str, Any], d: Dist) -> dict[str, Any]:
    """Per-shard float statistics averaged over the ranks (NaN-aware: a rank without a value does
    not count); other values are rank 0's."""
    if not d.enabled:
        return stats
    import torch.distributed as dist

    keys = sorted(k for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    gathered: list[Any] = [None] * d.world_size
    dist.all_gather_object(gathered, {k: float(stats[k]) for k in keys})
    out = dict(stats)
    for k in keys:
        vals = [g[k] for g in gathered if k in g and (k == "loss" or g[k] == g[k])]  # NaN loss: NaN everywhere
        out[k] = sum(vals) / len(vals) if vals else float("nan")
    return out


def full_state_dicts(model, optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """FSDP2: the full (unsharded) model and optimizer state dicts, on the CPU (a collective: call
    on every rank; the tensors are complete on every rank)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=opts), get_optimizer_state_dict(model, optimizer, options=opts)


def load_full_state_dicts(model, optimizer, model_sd: dict[str, torch.Tensor], optim_sd: dict[str, Any]) -> None:
    """FSDP2: load full state dicts (every rank read them from the checkpoint) into the shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_sd, options=opts)
    set_optimizer_state_dict(model, optimizer, optim_state_dict=optim_sd, options=opts)
