"""The DiReCT trainer for Wan 2.1 (docs/METHOD.md), readable top to bottom.

    config -> data + batch sampler -> model (+ LoRA) -> optimizer/scheduler -> (resume) -> loop:
        batch -> noise -> one forward (main rows + hard-negative rows) -> loss terms -> backward
        -> skip if non-finite -> clip -> step -> log (terms, conflict rates) -> checkpoint

Objectives are presets over the loss terms of `direct_data.training.losses`:

* ``sft``: flow matching only;
* ``deltafm``: flow matching + random in-batch negatives (lam 0.05), Contrastive Flow Matching;
* ``direct``: flow matching + macro (other-partition negatives) + micro (hard physics negatives,
  one extra forward for the rows that carry one, batched with the main forward) + regulariser.

The data set is a `TrainData` (in memory; built from tensors or, later, from the Arrow shards of
`direct-data encode`). Everything stochastic draws from two seeded generators (noise, negatives)
whose states are checkpointed together with model, optimizer, scheduler and sampler position, so a
stopped and resumed run reproduces the uninterrupted loss curve.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from direct_data.training import losses as L
from direct_data.training import wan

__all__ = [
    "TrainConfig",
    "PRESETS",
    "preset",
    "TrainData",
    "Batch",
    "PartitionBatchSampler",
    "ValBatch",
    "make_val_batch",
    "evaluate_fm",
    "train",
    "TrainResult",
    "NonFiniteLossError",
    "latest_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
]

log = logging.getLogger(__name__)

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


# =============================================================================================
# configuration
# =============================================================================================


PREDICTIONS = ("v", "x0")


@dataclass
class TrainConfig:
    """Every knob of a run. Presets (`preset`) set the objective terms; everything else is shared."""

    objective: str = "sft"  # name of the preset the terms came from (logged)
    # --- loss terms (weights 0 switch a term off) ---
    lam_naive: float = 0.0  # random in-batch negatives (deltaFM / CFM)
    lam_macro: float = 0.0  # negatives from other semantic partitions
    macro_source: str = "batch"  # "batch": an eligible row of the batch; "dataset": any eligible row
    exclude_nearest: int = 0  # M: also exclude the M partitions nearest to the row's (needs the graph)
    lam_micro: float = 0.0  # hard physics negatives
    micro_variant: str = "triplet"  # triplet | push | repel
    micro_margin: float = 0.1  # triplet margin, in per-element squared-error units
    micro_fraction: float = 0.25  # fraction of batch rows that run their hard negative (extra forward)
    reg: str = "none"  # none | moments | moments-target | mmd | l2
    lam_reg: float = 1.0
    # --- noise levels (Wan) ---
    noise_dist: str = "logit-normal"  # or "uniform"
    shift: float = 5.0
    logit_loc: float = 0.0
    logit_scale: float = 1.0
    # --- what the network outputs: "v" (Wan: the velocity eps - x0) or "x0" (the clean latent,
    # turned into v = (x_s - x0_hat) / max(s, x0_min_level) before every loss, so all the terms
    # and the sampler stay in velocity space; suggested for pixel-space models with large patches
    # by Li & He 2025; on the physics world it gave cleaner backgrounds, not better objects) ---
    prediction: str = "v"
    x0_min_level: float = 0.05
    # fraction of rows trained on the null caption (all-zero text states), so the sampler can use
    # classifier-free guidance (`sample.sample_latents(guidance_scale=...)`); 0 = never
    cond_dropout: float = 0.0
    # --- model ---
    model_config: str = "tiny"
    pretrained: str | None = None
    model_overrides: dict[str, Any] = field(default_factory=dict)
    lora_rank: int = 16  # 0 = full fine-tuning
    lora_alpha: float | None = None  # None = rank
    lora_targets: tuple[str, ...] = wan.DEFAULT_LORA_TARGETS
    # --- optimisation ---
    batch_size: int = 4
    max_steps: int = 1000
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # constant | cosine (after warmup)
    grad_clip: float = 1.0  # 0 = no clipping (the norm is still logged)
    seed: int = 0
    text_len: int | None = None  # pad text states to this many tokens (Wan: 512); None = data max
    # --- numerics (GPU only: bf16 autocast, gradient checkpointing) ---
    device: str = "auto"
    bf16: bool = True
    grad_checkpointing: bool = True
    max_nan_skips: int = 10  # stop once more than this many steps had a non-finite loss/gradient
    # --- output ---
    out_dir: str | None = None
    log_every: int = 1
    val_every: int = 0  # 0 = only at the start and the end (when a validation batch is given)
    ckpt_every: int = 0  # 0 = only at the end (and when stopped)
    keep_checkpoints: int = 2
    diagnostics: bool = True  # gradient-conflict cosines per negative type
    progress: bool = True
    tensorboard: bool = False

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if self.micro_variant not in L.MICRO_VARIANTS:
            raise ValueError(f"micro_variant must be one of {L.MICRO_VARIANTS}, got {self.micro_variant!r}")
        if self.reg not in L.REG_VARIANTS:
            raise ValueError(f"reg must be one of {L.REG_VARIANTS}, got {self.reg!r}")
        if self.macro_source not in ("batch", "dataset"):
            raise ValueError(f"macro_source must be 'batch' or 'dataset', got {self.macro_source!r}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if not 0.0 < self.x0_min_level < 1.0:
            raise ValueError(f"x0_min_level must be in (0, 1), got {self.x0_min_level}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        for name in ("lam_naive", "lam_macro", "lam_micro"):
            lam = getattr(self, name)
            if not 0.0 <= lam < 1.0:
                raise ValueError(f"{name} must be in [0, 1) (the contrastive optimum needs lam < 1), got {lam}")
        if not 0.0 < self.micro_fraction <= 1.0:
            raise ValueError(f"micro_fraction must be in (0, 1], got {self.micro_fraction}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 (a batch spans at least two partitions)")
        if self.max_nan_skips < 0:
            raise ValueError("max_nan_skips must be >= 0")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        d["betas"] = list(self.betas)
        return d


PRESETS: dict[str, dict[str, Any]] = {
    "sft": {},
    "deltafm": {"lam_naive": 0.05},
    "direct": {"lam_macro": 0.05, "lam_micro": 0.05, "micro_variant": "triplet", "reg": "moments", "lam_reg": 1.0},
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A `TrainConfig` for objective ``sft`` / ``deltafm`` / ``direct`` with overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown objective {name!r}: one of {sorted(PRESETS)}")
    unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ValueError(f"unknown TrainConfig options {sorted(unknown)}")
    return TrainConfig(**{"objective": name, **PRESETS[name], **overrides})


class NonFiniteLossError(RuntimeError):
    """Raised when more than `max_nan_skips` steps had a non-finite loss or gradient."""


# =============================================================================================
# data
# =============================================================================================


class TrainData:
    """Training rows: latent (C, F, H, W), text states (L_i, D), partition id, macro-negative
    candidates, optional hard-negative text states with their physics axis.

    Rows with non-finite tensors or empty text are rejected with a reason (``rejected``), the rest
    are kept (``len(self)``); every input row is accounted for. Macro candidates come either as
    explicit row lists (``macro_ids``: input-row indices) or from the partition graph: any row of
    another partition, minus the ``exclude_nearest`` partitions listed first in
    ``partition_neighbors[p]`` (partitions ordered by centroid similarity to ``p``).
    """

    def __init__(
        self,
        latents: Sequence[Tensor],
        text: Sequence[Tensor],
        partition: Sequence[int],
        *,
        macro_ids: Sequence[Sequence[int]] | None = None,
        hard: Sequence[Sequence[tuple[Tensor, str]]] | None = None,
        partition_neighbors: dict[int, Sequence[int]] | None = None,
        row_ids: Sequence[str] | None = None,
        check_finite: bool = True,
    ) -> None:
        n = len(latents)
        for name, seq in (("text", text), ("partition", partition), ("macro_ids", macro_ids), ("hard", hard),
                          ("row_ids", row_ids)):
            if seq is not None and len(seq) != n:
                raise ValueError(f"{name} has {len(seq)} rows, latents has {n}")
        if n == 0:
            raise ValueError("no training rows")
        shape = tuple(latents[0].shape)
        dim = int(text[0].shape[-1])
        rejected: list[tuple[int, str]] = []
        keep: list[int] = []
        for i in range(n):
            lat, txt = latents[i], text[i]
            if tuple(lat.shape) != shape:
                raise ValueError(f"row {i}: latent shape {tuple(lat.shape)} != {shape} (one latent shape per data set)")
            if txt.ndim != 2 or int(txt.shape[1]) != dim:
                raise ValueError(f"row {i}: text states must be (L, {dim}), got {tuple(txt.shape)}")
            reason = None
            if txt.shape[0] == 0:
                reason = "empty text states"
            elif check_finite and not bool(torch.isfinite(lat).all()):
                reason = "non-finite latent"
            elif check_finite and not bool(torch.isfinite(txt).all()):
                reason = "non-finite text states"
            if reason:
                rejected.append((i, reason))
            else:
                keep.append(i)
        self.rejected = rejected
        self.source_rows = keep  # kept row k is input row source_rows[k]
        remap = {src: k for k, src in enumerate(keep)}
        self.latents = [latents[i] for i in keep]
        self.text = [text[i] for i in keep]
        self.partition = torch.as_tensor([int(partition[i]) for i in keep], dtype=torch.long)
        self.row_ids = [str(row_ids[i]) for i in keep] if row_ids is not None else [str(i) for i in keep]
        self.latent_shape = shape
        self.text_dim = dim
        self.hard: list[list[tuple[Tensor, str]]] = []
        for i in keep:
            negs = []
            for states, axis in (hard[i] if hard is not None else ()):
                if states.ndim != 2 or int(states.shape[1]) != dim or states.shape[0] == 0:
                    raise ValueError(f"row {i}: hard-negative states must be (L>0, {dim}), got {tuple(states.shape)}")
                if check_finite and not bool(torch.isfinite(states).all()):
                    continue  # an unusable hard negative; the row stays (counted in hard_dropped)
                negs.append((states, str(axis)))
            self.hard.append(negs)
        self.hard_dropped = sum(len(hard[i]) for i in keep) - sum(len(h) for h in self.hard) if hard is not None else 0
        self.macro_ids: list[Tensor] | None = None
        if macro_ids is not None:
            self.macro_ids = [
                torch.as_tensor(sorted({remap[j] for j in macro_ids[i] if j in remap}), dtype=torch.long) for i in keep
            ]
        self.partition_neighbors = {int(k): [int(x) for x in v] for k, v in (partition_neighbors or {}).items()}
        self._excluded: dict[int, Tensor] = {}  # exclude_nearest -> (P, P) excluded-partition matrix
        self.max_text_len = max(max(int(t.shape[0]) for t in self.text),
                                max((int(s.shape[0]) for h in self.hard for s, _ in h), default=0))
        if len(set(self.partition.tolist())) < 2:
            raise ValueError("training needs rows from at least two partitions (every batch spans >= 2)")

    @classmethod
    def from_tensors(
        cls,
        latents: Tensor,
        text_states: Tensor,
        text_lengths: Tensor | Sequence[int],
        partition: Tensor | Sequence[int],
        *,
        macro_ids: Sequence[Sequence[int]] | None = None,
        hard_states: Tensor | None = None,
        hard_lengths: Tensor | Sequence[int] | None = None,
        hard_axis: Sequence[str] | None = None,
        partition_neighbors: dict[int, Sequence[int]] | None = None,
        row_ids: Sequence[str] | None = None,
        check_finite: bool = True,
    ) -> "TrainData":
        """From padded tensors: latents (N, C, F, H, W), text states (N, L, D) + lengths (N,),
        partition (N,), optionally one hard negative per row: states (N, L', D) + lengths (0 = none)
        + axis names."""
        n = latents.shape[0]
        lengths = [int(x) for x in torch.as_tensor(text_lengths).tolist()]
        text = [text_states[i, : lengths[i]] for i in range(n)]
        hard = None
        if hard_states is not None:
            if hard_lengths is None or hard_axis is None:
                raise ValueError("hard_states needs hard_lengths and hard_axis")
            hl = [int(x) for x in torch.as_tensor(hard_lengths).tolist()]
            hard = [[(hard_states[i, : hl[i]], hard_axis[i])] if hl[i] > 0 else [] for i in range(n)]
        return cls(list(latents), text, list(torch.as_tensor(partition).tolist()), macro_ids=macro_ids, hard=hard,
                   partition_neighbors=partition_neighbors, row_ids=row_ids, check_finite=check_finite)

    def __len__(self) -> int:
        return len(self.latents)

    def accounting(self) -> dict[str, int]:
        return {"kept": len(self), "rejected": len(self.rejected), "hard_negatives": sum(len(h) for h in self.hard),
                "hard_dropped": self.hard_dropped}

    def macro_partitions_excluded(self, p: int, exclude_nearest: int) -> set[int]:
        """Partitions whose rows are not macro negatives of a row in partition ``p``."""
        return {p, *self.partition_neighbors.get(p, [])[:exclude_nearest]}

    def macro_eligible_matrix(self, rows: Tensor, exclude_nearest: int) -> Tensor:
        """(B, B) boolean: ``[a, b]`` is True when row ``rows[b]`` is a valid macro negative of ``rows[a]``."""
        if self.macro_ids is not None:
            return torch.stack([torch.isin(rows, self.macro_ids[int(r)]) for r in rows])
        key = exclude_nearest
        if key not in self._excluded:
            parts = sorted(set(self.partition.tolist()))
            size = max(parts) + 1
            excl = torch.zeros(size, size, dtype=torch.bool)
            for p in parts:
                excl[p, sorted(q for q in self.macro_partitions_excluded(p, exclude_nearest) if q < size)] = True
            self._excluded[key] = excl
        p = self.partition[rows]
        return ~self._excluded[key][p[:, None], p[None, :]]

    def macro_eligible(self, i: int, candidates: Tensor, exclude_nearest: int) -> Tensor:
        """Boolean mask over ``candidates`` (kept-row indices): valid macro negatives of row ``i``."""
        if self.macro_ids is not None:
            return torch.isin(candidates, self.macro_ids[i])
        excl = torch.as_tensor(sorted(self.macro_partitions_excluded(int(self.partition[i]), exclude_nearest)))
        return ~torch.isin(self.partition[candidates], excl)

    def macro_candidates(self, i: int, exclude_nearest: int) -> Tensor:
        """All kept rows that are valid macro negatives of row ``i``."""
        if self.macro_ids is not None:
            return self.macro_ids[i]
        allrows = torch.arange(len(self))
        return allrows[self.macro_eligible(i, allrows, exclude_nearest)]


def _pad(states: Sequence[Tensor], length: int) -> Tensor:
    """Zero-pad (L_i, D) states to (N, length, D), as Wan's pipeline pads umT5 states."""
    out = torch.zeros(len(states), length, states[0].shape[-1], dtype=torch.float32)
    for k, s in enumerate(states):
        if s.shape[0] > length:
            raise ValueError(f"text states of {s.shape[0]} tokens exceed text_len={length}")
        out[k, : s.shape[0]] = s.float()
    return out


class PartitionBatchSampler:
    """Deterministic shuffled batches, each spanning >= 2 partitions.

    Epoch ``e`` permutes the rows with a generator seeded by ``(seed, e)``; a batch that would hold
    one partition only swaps its last row for the next row of another partition. Rows that cannot
    form a full valid batch at the end of an epoch wait for the next epoch (like ``drop_last``).
    The state is ``(epoch, position)``: resuming recomputes the epoch and continues from there.
    """

    def __init__(self, partition: Tensor, batch_size: int, seed: int = 0) -> None:
        self.partition = [int(p) for p in partition.tolist()]
        self.batch_size = batch_size
        self.seed = seed
        if len(self.partition) < batch_size:
            raise ValueError(f"{len(self.partition)} rows are fewer than one batch of {batch_size}")
        if len(set(self.partition)) < 2:
            raise ValueError("every batch must span two partitions, but the data has one")
        self.epoch = 0
        self.position = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        pool = deque(torch.randperm(len(self.partition), generator=g).tolist())
        part, b = self.partition, self.batch_size
        batches: list[list[int]] = []
        while len(pool) >= b:
            batch = [pool.popleft() for _ in range(b)]
            if len({part[i] for i in batch}) < 2:
                k = next((k for k, j in enumerate(pool) if part[j] != part[batch[0]]), None)
                if k is None:
                    break
                j = pool[k]
                del pool[k]
                pool.appendleft(batch[-1])
                batch[-1] = j
            batches.append(batch)
        if not batches:
            raise ValueError("no valid batch can be formed (too few rows outside the largest partition)")
        self._cache = (epoch, batches)
        return batches

    def next_batch(self) -> tuple[int, list[int]]:
        batches = self.epoch_batches(self.epoch)
        if self.position >= len(batches):
            self.epoch += 1
            self.position = 0
            batches = self.epoch_batches(self.epoch)
        batch = batches[self.position]
        epoch = self.epoch
        self.position += 1
        return epoch, batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["seed"] != self.seed or state["batch_size"] != self.batch_size:
            raise ValueError("sampler state is from a run with another seed or batch size")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


@dataclass
class Batch:
    """One training batch: rows, their latents and text, and the hard negatives they carry."""

    rows: Tensor  # (B,) kept-row indices
    latents: Tensor  # (B, C, F, H, W)
    text: Tensor  # (B, text_len, D)
    partition: Tensor  # (B,)
    micro_rows: Tensor  # (M,) positions in the batch whose hard negative runs this step
    hard_text: Tensor | None  # (M, text_len, D)
    hard_axis: list[str]


def drop_captions(batch: Batch, p: float, gen: torch.Generator) -> Batch:
    """Replace the text of each row, with probability ``p``, by the null caption (zeros: the
    padding value, so the model sees no token at all); the hard negatives are kept."""
    if p <= 0:
        return batch
    drop = torch.rand(batch.rows.numel(), generator=gen) < p
    if not bool(drop.any()):
        return batch
    text = batch.text.clone()
    text[drop] = 0.0
    return dc_replace(batch, text=text)


def collate(data: TrainData, rows: Sequence[int], *, text_len: int, micro_fraction: float, use_micro: bool,
            gen: torch.Generator) -> Batch:
    """Stack a batch; pick ``round(micro_fraction * B)`` (>= 1) of the rows that have a hard
    negative, and one of each picked row's hard negatives (uniformly, with ``gen``)."""
    rows_t = torch.as_tensor(list(rows), dtype=torch.long)
    latents = torch.stack([data.latents[i].float() for i in rows])
    text = _pad([data.text[i] for i in rows], text_len)
    micro_rows = torch.zeros(0, dtype=torch.long)
    hard_text, axes = None, []
    if use_micro:
        have = torch.as_tensor([k for k, i in enumerate(rows) if data.hard[i]], dtype=torch.long)
        if have.numel():
            m = min(have.numel(), max(1, round(micro_fraction * len(rows))))
            micro_rows = have[torch.randperm(have.numel(), generator=gen)[:m]].sort().values
            picks = []
            for k in micro_rows.tolist():
                negs = data.hard[rows[k]]
                states, axis = negs[int(torch.randint(len(negs), (1,), generator=gen))]
                picks.append(states)
                axes.append(axis)
            hard_text = _pad(picks, text_len)
    return Batch(rows_t, latents, text, data.partition[rows_t], micro_rows, hard_text, axes)


# =============================================================================================
# the training step
# =============================================================================================


def _forward(model, x: Tensor, s: Tensor, text: Tensor, prediction: str = "v", x0_min_level: float = 0.05) -> Tensor:
    """Wan forward in its convention (timestep ``1000 * s``), returned as a float32 velocity:
    the output itself (``prediction="v"``), or ``L.x0_to_velocity`` of it (``"x0"``)."""
    out = model(x, 1000.0 * s.to(x.dtype), text.to(x.dtype), return_dict=False)[0].float()
    if prediction == "x0":
        return L.x0_to_velocity(out, x.float(), s, x0_min_level)
    return out


def _macro_targets(data: TrainData, batch: Batch, u: Tensor, cfg: TrainConfig, gen: torch.Generator,
                   device: torch.device) -> tuple[Tensor, Tensor]:
    """Macro-negative targets ``u_j`` and the mask of rows that have one.

    ``batch``: ``u_j`` of a uniformly drawn eligible row of the batch (its latent and noise);
    ``dataset``: ``eps' - x0_j`` for an eligible row drawn from the whole data set, fresh noise.
    """
    b = batch.rows.numel()
    u_neg = torch.zeros_like(u)
    mask = torch.zeros(b, dtype=torch.bool)
    if cfg.macro_source == "batch":
        ok = data.macro_eligible_matrix(batch.rows, cfg.exclude_nearest)
        mask = ok.any(1)
        # a uniform eligible partner per row: argmax of random keys over the eligible entries
        keys = torch.rand(b, b, generator=gen).masked_fill(~ok, -1.0)
        j = keys.argmax(1).to(device)
        u_neg = torch.where(mask.to(device).reshape(-1, *([1] * (u.ndim - 1))), u[j], u_neg)
        return u_neg, mask.to(device)
    lat = []
    for k in range(b):
        cand = data.macro_candidates(int(batch.rows[k]), cfg.exclude_nearest)
        if cand.numel():
            j = int(cand[torch.randint(cand.numel(), (1,), generator=gen)])
            lat.append((k, data.latents[j].float()))
            mask[k] = True
    if lat:
        x0 = torch.stack([x for _, x in lat])
        eps = torch.randn(x0.shape, generator=gen)
        u_neg[torch.as_tensor([k for k, _ in lat])] = L.flow_target(x0, eps).to(device)
    return u_neg, mask.to(device)


def train_step(model, batch: Batch, data: TrainData, cfg: TrainConfig, *, gen_noise: torch.Generator,
               gen_neg: torch.Generator, device: torch.device, ref_model=None) -> tuple[Tensor, dict[str, float]]:
    """One objective evaluation: returns the total loss (with graph) and a dict of every term and
    diagnostic (floats). Random draws: noise/levels from ``gen_noise`` (identical across
    objectives), negative choices from ``gen_neg``."""
    b = batch.rows.numel()
    x0 = batch.latents
    eps = torch.randn(x0.shape, generator=gen_noise)
    s = L.sample_noise_levels(b, gen_noise, dist=cfg.noise_dist, shift=cfg.shift, loc=cfg.logit_loc,
                              scale=cfg.logit_scale)
    naive_shift = int(torch.randint(1, b, (1,), generator=gen_neg))  # random in-batch negative: roll
    x0, eps, s = x0.to(device), eps.to(device), s.to(device)
    text = batch.text.to(device)
    xs = L.noisy_latent(x0, eps, s)
    u = L.flow_target(x0, eps)

    # one forward for the main rows and the rows whose hard negative runs this step
    m = batch.micro_rows.to(device)
    pred = (cfg.prediction, cfg.x0_min_level)
    use_micro = cfg.lam_micro > 0 and m.numel() > 0
    use_bf16 = cfg.bf16 and device.type == "cuda"
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
        if use_micro:
            out = _forward(model, torch.cat([xs, xs[m]]), torch.cat([s, s[m]]),
                           torch.cat([text, batch.hard_text.to(device)]), *pred)
            v, v_tilde = out[:b], out[b:]
        else:
            v, v_tilde = _forward(model, xs, s, text, *pred), None
        v_ref = None
        if cfg.reg in ("moments", "mmd", "l2") and cfg.lam_reg > 0:
            with torch.no_grad():
                if ref_model is None:  # LoRA: the same network with adapters off
                    with wan.adapters_disabled(model):
                        v_ref = _forward(model, xs, s, text, *pred)
                else:
                    v_ref = _forward(ref_model, xs, s, text, *pred)

    terms: dict[str, Tensor] = {"fm": L.fm_loss(v, u)}
    u_naive = torch.roll(u, naive_shift, dims=0)
    if cfg.lam_naive > 0:
        terms["naive"] = L.contrastive_term(v, u_naive, cfg.lam_naive)
    u_macro, macro_mask = None, None
    if cfg.lam_macro > 0:
        u_macro, macro_mask = _macro_targets(data, batch, u, cfg, gen_neg, device)
        terms["macro"] = L.macro_loss(v, u_macro, cfg.lam_macro, macro_mask)
    if use_micro:
        terms["micro"] = L.micro_loss(cfg.micro_variant, v[m], v_tilde, u[m], cfg.lam_micro, cfg.micro_margin)
    if cfg.reg != "none" and cfg.lam_reg > 0:
        terms["reg"] = cfg.lam_reg * L.regulariser(cfg.reg, v, v_ref=v_ref, u=u, generator=gen_neg)
    total = sum(terms.values())

    stats: dict[str, float] = {k: float(t.detach()) for k, t in terms.items()}
    stats["loss"] = float(total.detach())
    stats["s_mean"] = float(s.mean())
    if cfg.lam_macro > 0:
        stats["macro_rows"] = float(macro_mask.float().mean())
    if use_micro:
        stats["micro_rows"] = int(m.numel())
    if cfg.diagnostics:
        vd = v.detach()
        cos = L.contrast_conflict(vd, u, u_naive)
        stats["conflict_naive"], stats["cos_naive"] = L.conflict_rate(cos), _nanmean(cos)
        if u_macro is not None and bool(macro_mask.any()):
            cos = L.contrast_conflict(vd[macro_mask], u[macro_mask], u_macro[macro_mask])
            stats["conflict_macro"], stats["cos_macro"] = L.conflict_rate(cos), _nanmean(cos)
        if use_micro:
            cos = L.micro_conflict(cfg.micro_variant, vd[m], v_tilde.detach(), u[m], cfg.micro_margin)
            stats["conflict_micro"], stats["cos_micro"] = L.conflict_rate(cos), _nanmean(cos)
    return total, stats


def _nanmean(x: Tensor) -> float:
    ok = ~torch.isnan(x)
    return float(x[ok].mean()) if bool(ok.any()) else math.nan


# =============================================================================================
# validation
# =============================================================================================


@dataclass
class ValBatch:
    """A fixed validation batch: latents, text, and the noise and levels drawn once."""

    latents: Tensor
    text: Tensor
    eps: Tensor
    s: Tensor


def make_val_batch(data: TrainData, rows: Sequence[int], *, text_len: int | None = None, seed: int = 1234,
                   shift: float = 5.0, levels: Sequence[float] | None = None) -> ValBatch:
    """Freeze noise and noise levels for ``rows`` (levels: evenly spread over (0, 1) then shifted,
    unless given), so `evaluate_fm` is a deterministic function of the weights."""
    rows = list(rows)
    g = torch.Generator().manual_seed(seed)
    latents = torch.stack([data.latents[i].float() for i in rows])
    text = _pad([data.text[i] for i in rows], text_len or data.max_text_len)
    eps = torch.randn(latents.shape, generator=g)
    if levels is None:
        s = L.shift_noise_level((torch.arange(len(rows), dtype=torch.float32) + 0.5) / len(rows), shift)
    else:
        s = torch.as_tensor(list(levels), dtype=torch.float32)
    return ValBatch(latents, text, eps, s)


@torch.no_grad()
def evaluate_fm(model, val: ValBatch, device: torch.device | str = "cpu", bf16: bool = False,
                prediction: str = "v", x0_min_level: float = 0.05) -> float:
    """Flow-matching loss ``mean ||v - (eps - x0)||^2`` on the fixed validation batch (``v``: the
    model's velocity, converted from its clean-latent output when ``prediction="x0"``)."""
    device = torch.device(device)
    x0, eps, s = val.latents.to(device), val.eps.to(device), val.s.to(device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
        v = _forward(model, L.noisy_latent(x0, eps, s), s, val.text.to(device), prediction, x0_min_level)
    return float(L.fm_loss(v, L.flow_target(x0, eps)))


# =============================================================================================
# checkpoints (safetensors + JSON, written atomically)
# =============================================================================================


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"state.{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, pid, k = key.split(".", 2)
        state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def _fsync_dir(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def save_checkpoint(path: Path, *, model, optimizer, scheduler, sampler: PartitionBatchSampler,
                    gens: dict[str, torch.Generator], state: dict[str, Any], cfg: TrainConfig) -> Path:
    """Write a checkpoint folder atomically (``path.tmp`` then rename).

    LoRA: ``pytorch_lora_weights.safetensors`` in the diffusers Wan format (keys
    ``transformer.blocks.N....lora_A.weight``, LoraConfig in the metadata), loadable with
    ``WanPipeline.load_lora_weights(path)``. Full fine-tuning: ``transformer/`` via ``save_pretrained``.
    Plus ``optimizer.safetensors``, ``rng.safetensors`` and ``trainer_state.json``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if wan.has_lora(model):
        from diffusers import WanPipeline

        layers = {k: v.detach().contiguous().cpu() for k, v in wan.lora_state_dict(model).items()}
        WanPipeline.save_lora_weights(tmp, transformer_lora_layers=layers, weight_name=LORA_WEIGHT_NAME,
                                      transformer_lora_adapter_metadata=wan.lora_metadata(model))
    else:
        model.save_pretrained(tmp / "transformer", safe_serialization=True)
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    save_file({k: g.get_state() for k, g in gens.items()}, str(tmp / "rng.safetensors"))
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    meta = {"state": state, "sampler": sampler.state_dict(), "optimizer": opt_meta, "scheduler": sched,
            "config": cfg.to_json()}
    (tmp / "trainer_state.json").write_text(json.dumps(_json_safe(meta), indent=1, sort_keys=True))
    _fsync_dir(tmp)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step under ``out_dir/checkpoints`` (None if none)."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return None
    done = [p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")
            and (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def load_checkpoint(path: Path, *, model, optimizer, scheduler, sampler: PartitionBatchSampler,
                    gens: dict[str, torch.Generator]) -> dict[str, Any]:
    """Restore everything `save_checkpoint` wrote; returns the trainer state dict."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = json.loads((path / "trainer_state.json").read_text())
    if wan.has_lora(model):
        from peft.utils import set_peft_model_state_dict

        sd = load_file(str(path / LORA_WEIGHT_NAME))
        sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
        res = set_peft_model_state_dict(model, sd)
        unexpected = getattr(res, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"checkpoint {path} has LoRA keys the model lacks: {unexpected[:5]}")
    else:
        sd = {}
        for f in sorted((path / "transformer").glob("*.safetensors")):
            sd.update(load_file(str(f)))
        model.load_state_dict(sd, strict=True)
    # loaded on the CPU: AdamW keeps `step` there; load_state_dict moves the moments to the params' device
    opt_state = _unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), meta["optimizer"])
    optimizer.load_state_dict(opt_state)
    sched = dict(meta["scheduler"])
    sched["lr_lambdas"] = [None] * len(sched["base_lrs"])  # the schedule function is rebuilt from the config
    scheduler.load_state_dict(sched)
    sampler.load_state_dict(meta["sampler"])
    rng = load_file(str(path / "rng.safetensors"))
    for k, g in gens.items():
        g.set_state(rng[k])
    return meta["state"]


# =============================================================================================
# the run
# =============================================================================================


@dataclass
class TrainResult:
    model: Any
    records: list[dict[str, Any]]  # one per logged step (also in out_dir/log.jsonl)
    step: int
    nan_skips: int
    checkpoint: Path | None
    val_fm: list[tuple[int, float]]  # (step, validation FM loss)
    stopped: bool  # True when stop_after ended the run before max_steps


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            t = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
        return 1.0
    return f


def _read_log(path: Path, upto_step: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get("step", 0) <= upto_step:
                out.append(rec)
    return out


def train(cfg: TrainConfig, data: TrainData, *, model=None, val: ValBatch | None = None, resume: bool = True,
          stop_after: int | None = None) -> TrainResult:
    """Train ``model`` (or a new one from ``cfg.model_config`` / ``cfg.pretrained``) on ``data``.

    ``resume``: continue from the latest checkpoint in ``cfg.out_dir`` when one exists.
    ``stop_after``: stop (and checkpoint) once this many steps are done in total, as an interrupted
    run would; a later call with ``resume=True`` continues it. Raises `NonFiniteLossError` once more
    than ``cfg.max_nan_skips`` steps were skipped for a non-finite loss or gradient.
    """
    device = _resolve_device(cfg.device)
    out_dir = Path(cfg.out_dir) if cfg.out_dir else None
    text_len = cfg.text_len or data.max_text_len
    if text_len < data.max_text_len:
        raise ValueError(f"text_len={text_len} is shorter than the longest text states ({data.max_text_len})")

    # --- model ---------------------------------------------------------------------------------
    if model is None:
        model = wan.build_transformer(cfg.model_config, pretrained=cfg.pretrained, seed=cfg.seed,
                                      **cfg.model_overrides)
    if model.config.text_dim != data.text_dim:
        raise ValueError(f"model text_dim={model.config.text_dim} but the data's text states are {data.text_dim} wide")
    if model.config.in_channels != data.latent_shape[0]:
        raise ValueError(f"model in_channels={model.config.in_channels} but latents have {data.latent_shape[0]}")
    needs_ref = cfg.reg in ("moments", "mmd", "l2") and cfg.lam_reg > 0
    ref_model = None
    if cfg.lora_rank > 0:
        if not wan.has_lora(model):
            wan.add_lora(model, rank=cfg.lora_rank, alpha=cfg.lora_alpha, target_modules=cfg.lora_targets,
                         seed=cfg.seed)
    else:
        model.requires_grad_(True)
        if needs_ref:  # full fine-tuning: a frozen copy of the starting weights is the reference
            ref_model = copy.deepcopy(model).requires_grad_(False).eval().to(device)
    model.to(device).train()
    if device.type == "cuda" and cfg.grad_checkpointing:
        model.enable_gradient_checkpointing()
    params = [p for p in model.parameters() if p.requires_grad]

    # --- optimisation ----------------------------------------------------------------------------
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    sampler = PartitionBatchSampler(data.partition, cfg.batch_size, cfg.seed)
    gens = {"noise": torch.Generator().manual_seed(cfg.seed), "neg": torch.Generator().manual_seed(cfg.seed + 1),
            "drop": torch.Generator().manual_seed(cfg.seed + 2)}
    step, nan_skips = 0, 0

    # --- resume ----------------------------------------------------------------------------------
    log_path = out_dir / "log.jsonl" if out_dir else None
    records: list[dict[str, Any]] = []
    ckpt = latest_checkpoint(out_dir) if (out_dir and resume) else None
    if ckpt is not None:
        st = load_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler, gens=gens)
        step, nan_skips = int(st["step"]), int(st["nan_skips"])
        records = _read_log(log_path, step)
        log.info("resumed from %s at step %d", ckpt, step)
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(cfg.to_json(), indent=1, sort_keys=True))
        tmp = log_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(_json_safe(r), sort_keys=True) + "\n" for r in records))
        os.replace(tmp, log_path)
    log_file = open(log_path, "a") if log_path else None
    tb = _tensorboard(out_dir) if (cfg.tensorboard and out_dir) else None

    def checkpoint() -> Path | None:
        if out_dir is None:
            return None
        p = save_checkpoint(out_dir / "checkpoints" / f"step-{step:08d}", model=model, optimizer=optimizer,
                            scheduler=scheduler, sampler=sampler, gens=gens,
                            state={"step": step, "nan_skips": nan_skips, "text_len": text_len, "latent_shape": list(data.latent_shape), "text_dim": data.text_dim}, cfg=cfg)
        olds = sorted((q for q in p.parent.glob("step-*") if q.is_dir() and not q.name.endswith(".tmp")),
                      key=lambda q: int(q.name.split("-")[1]))
        for q in olds[: max(0, len(olds) - cfg.keep_checkpoints)]:
            shutil.rmtree(q)
        return p

    val_fm: list[tuple[int, float]] = [(r["step"], r["val_fm"]) for r in records if r.get("val_fm") is not None]

    def validate() -> None:
        if val is not None:
            model.eval()
            val_fm.append((step, evaluate_fm(model, val, device, cfg.bf16, cfg.prediction, cfg.x0_min_level)))
            model.train()

    if step == 0 and val is not None:
        validate()
        rec0 = {"step": 0, "val_fm": val_fm[-1][1]}
        records.append(rec0)
        if log_file:
            log_file.write(json.dumps(rec0, sort_keys=True) + "\n")
    end = cfg.max_steps if stop_after is None else min(cfg.max_steps, stop_after)
    last_ckpt = None
    pbar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        pbar = tqdm(total=cfg.max_steps, initial=step, desc=f"train[{cfg.objective}]", dynamic_ncols=True)

    # --- the loop --------------------------------------------------------------------------------
    try:
        while step < end:
            t0, c0 = time.perf_counter(), time.process_time()
            epoch, rows = sampler.next_batch()
            batch = collate(data, rows, text_len=text_len, micro_fraction=cfg.micro_fraction,
                            use_micro=cfg.lam_micro > 0, gen=gens["neg"])
            batch = drop_captions(batch, cfg.cond_dropout, gens["drop"])
            loss, stats = train_step(model, batch, data, cfg, gen_noise=gens["noise"], gen_neg=gens["neg"],
                                     device=device, ref_model=ref_model)
            optimizer.zero_grad(set_to_none=True)
            skipped = not math.isfinite(stats["loss"])
            grad_norm = math.nan
            if not skipped:
                loss.backward()
                if cfg.grad_clip > 0:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
                else:
                    grad_norm = float(torch.linalg.vector_norm(
                        torch.stack([p.grad.detach().norm() for p in params if p.grad is not None])))
                skipped = not math.isfinite(grad_norm)
            if skipped:
                optimizer.zero_grad(set_to_none=True)
                nan_skips += 1
            else:
                optimizer.step()
                scheduler.step()
            step += 1
            rec = {"step": step, "epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "grad_norm": grad_norm,
                   "skipped": skipped, "nan_skips": nan_skips, "time_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, **stats}
            if cfg.val_every and step % cfg.val_every == 0 and step < cfg.max_steps:
                validate()
                rec["val_fm"] = val_fm[-1][1]
            if step == cfg.max_steps:
                validate()
                if val is not None:
                    rec["val_fm"] = val_fm[-1][1]
            if step % cfg.log_every == 0 or skipped or "val_fm" in rec:
                records.append(rec)
                if log_file:
                    log_file.write(json.dumps(_json_safe(rec), sort_keys=True) + "\n")
                    log_file.flush()
                if tb is not None:
                    for k, v in rec.items():
                        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                            tb.add_scalar(k, v, step)
            if pbar is not None:
                pbar.update(1)
                pbar.set_postfix({k: f"{stats[k]:.4g}" for k in ("loss", "fm", "macro", "micro", "reg") if k in stats})
            if nan_skips > cfg.max_nan_skips:
                last_ckpt = checkpoint()
                raise NonFiniteLossError(
                    f"stopping at step {step}: {nan_skips} steps had a non-finite loss or gradient "
                    f"(limit max_nan_skips={cfg.max_nan_skips}); last batch rows "
                    f"{[data.row_ids[i] for i in rows]}. Lower the learning rate or check those rows."
                )
            if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step < end:
                last_ckpt = checkpoint()
        last_ckpt = checkpoint() or last_ckpt
    finally:
        if pbar is not None:
            pbar.close()
        if log_file:
            log_file.close()
        if tb is not None:
            tb.close()
    return TrainResult(model=model, records=records, step=step, nan_skips=nan_skips, checkpoint=last_ckpt,
                       val_fm=val_fm, stopped=step < cfg.max_steps)


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard requested but not installed (pip install tensorboard); logging JSONL only")
        return None
    return SummaryWriter(str(out_dir / "tb"))
