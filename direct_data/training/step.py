"""One training step of the DiReCT objective (docs/METHOD.md), and the validation loss.

    batch -> noise + levels -> noisy latent, target u = eps - x0
          -> ONE forward for the main rows and the rows whose hard negative runs this step
          -> (no-grad) reference forward for the regulariser
          -> loss terms: fm + naive + macro + micro + reg  -> total, and per-term stats
          -> gradient-conflict diagnostics (cosine between the FM and each contrastive gradient)

Random draws: noise and levels from ``gen_noise`` (identical across objectives), negative choices
from ``gen_neg``, always in the same order (so a resumed run draws what the uninterrupted one did).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from direct_data.training import losses as L
from direct_data.training import wan
from direct_data.training.config import TrainConfig
from direct_data.training.data import Batch, TrainData, ValBatch

__all__ = ["forward", "macro_targets", "train_step", "conflict_stats", "evaluate_fm"]


# =============================================================================================
# the training step
# =============================================================================================


def forward(model, x: Tensor, s: Tensor, text: Tensor, prediction: str = "v", x0_min_level: float = 0.05) -> Tensor:
    """Wan forward in its convention (timestep ``1000 * s``), returned as a float32 velocity:
    the output itself (``prediction="v"``), or ``L.x0_to_velocity`` of it (``"x0"``)."""
    out = model(x, 1000.0 * s.to(x.dtype), text.to(x.dtype), return_dict=False)[0].float()
    if prediction == "x0":
        return L.x0_to_velocity(out, x.float(), s, x0_min_level)
    return out


def macro_targets(data: TrainData, batch: Batch, u: Tensor, cfg: TrainConfig, gen: torch.Generator,
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
               gen_neg: torch.Generator, device: torch.device, ref_model=None,
               shard: slice | None = None) -> tuple[Tensor, dict[str, float]]:
    """One objective evaluation: returns the total loss (with graph) and a dict of every term and
    diagnostic (floats). Random draws: noise/levels from ``gen_noise`` (identical across
    objectives), negative choices from ``gen_neg``.

    ``shard`` (distributed training, `training.distributed`): ``batch`` is the global batch; every
    draw is made for all of it (so every rank's generators stay in step and macro negatives come
    from the whole batch), then the forward and the loss run on the rows ``batch[shard]`` only."""
    b = batch.rows.numel()
    x0 = batch.latents
    eps = torch.randn(x0.shape, generator=gen_noise)
    s = L.sample_noise_levels(b, gen_noise, dist=cfg.noise_dist, shift=cfg.shift, loc=cfg.logit_loc,
                              scale=cfg.logit_scale)
    naive_shift = int(torch.randint(1, b, (1,), generator=gen_neg))  # random in-batch negative: roll
    x0, eps, s = x0.to(device), eps.to(device), s.to(device)
    text = batch.text.to(device)
    u = L.flow_target(x0, eps)
    u_naive = torch.roll(u, naive_shift, dims=0)
    u_macro, macro_mask = None, None
    if cfg.lam_macro > 0:  # data-only targets: drawn before the forward (the same gen_neg order)
        u_macro, macro_mask = macro_targets(data, batch, u, cfg, gen_neg, device)
    m, hard_text = batch.micro_rows, batch.hard_text
    if shard is not None:
        lo, hi = shard.start, shard.stop
        inside = (m >= lo) & (m < hi)
        m, hard_text = m[inside] - lo, (hard_text[inside] if hard_text is not None else None)
        x0, eps, s, text, u, u_naive = (t[shard] for t in (x0, eps, s, text, u, u_naive))
        if u_macro is not None:
            u_macro, macro_mask = u_macro[shard], macro_mask[shard]
        b = hi - lo
    xs = L.noisy_latent(x0, eps, s)

    # one forward for the main rows and the rows whose hard negative runs this step
    m = m.to(device)
    pred = (cfg.prediction, cfg.x0_min_level)
    use_micro = cfg.lam_micro > 0 and m.numel() > 0
    use_bf16 = cfg.bf16 and device.type == "cuda"
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
        if use_micro:
            out = forward(model, torch.cat([xs, xs[m]]), torch.cat([s, s[m]]),
                          torch.cat([text, hard_text.to(device)]), *pred)
            v, v_tilde = out[:b], out[b:]
        else:
            v, v_tilde = forward(model, xs, s, text, *pred), None
        v_ref = None
        if cfg.reg in ("moments", "mmd", "l2") and cfg.lam_reg > 0:
            with torch.no_grad():
                if ref_model is None:  # LoRA: the same network with adapters off (under DDP: its module)
                    inner = getattr(model, "module", model)
                    with wan.adapters_disabled(inner):
                        v_ref = forward(inner, xs, s, text, *pred)
                else:
                    v_ref = forward(ref_model, xs, s, text, *pred)

    terms: dict[str, Tensor] = {"fm": L.fm_loss(v, u)}
    if cfg.lam_naive > 0:
        terms["naive"] = L.contrastive_term(v, u_naive, cfg.lam_naive)
    if cfg.lam_macro > 0:
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
        stats.update(conflict_stats(v.detach(), u, u_naive, u_macro, macro_mask,
                                    (m, v_tilde.detach(), cfg.micro_variant, cfg.micro_margin) if use_micro else None))
    return total, stats


def conflict_stats(v: Tensor, u: Tensor, u_naive: Tensor, u_macro: Tensor | None, macro_mask: Tensor | None,
                   micro: tuple[Tensor, Tensor, str, float] | None) -> dict[str, float]:
    """The gradient-conflict diagnostics of METHOD.md: per negative type, the fraction of rows whose
    contrastive gradient opposes the FM gradient (``conflict_*``) and the mean cosine (``cos_*``).
    ``micro``: (batch positions of the micro rows, their ``v~``, variant, margin). No random draws."""
    out: dict[str, float] = {}
    cos = L.contrast_conflict(v, u, u_naive)
    out["conflict_naive"], out["cos_naive"] = L.conflict_rate(cos), _nanmean(cos)
    if u_macro is not None and bool(macro_mask.any()):
        cos = L.contrast_conflict(v[macro_mask], u[macro_mask], u_macro[macro_mask])
        out["conflict_macro"], out["cos_macro"] = L.conflict_rate(cos), _nanmean(cos)
    if micro is not None:
        m, v_tilde, variant, margin = micro
        cos = L.micro_conflict(variant, v[m], v_tilde, u[m], margin)
        out["conflict_micro"], out["cos_micro"] = L.conflict_rate(cos), _nanmean(cos)
    return out


def _nanmean(x: Tensor) -> float:
    ok = ~torch.isnan(x)
    return float(x[ok].mean()) if bool(ok.any()) else math.nan


# =============================================================================================
# validation
# =============================================================================================


@torch.no_grad()
def evaluate_fm(model, val: ValBatch, device: torch.device | str = "cpu", bf16: bool = False,
                prediction: str = "v", x0_min_level: float = 0.05) -> float:
    """Flow-matching loss ``mean ||v - (eps - x0)||^2`` on the fixed validation batch (``v``: the
    model's velocity, converted from its clean-latent output when ``prediction="x0"``)."""
    device = torch.device(device)
    x0, eps, s = val.latents.to(device), val.eps.to(device), val.s.to(device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
        v = forward(model, L.noisy_latent(x0, eps, s), s, val.text.to(device), prediction, x0_min_level)
    return float(L.fm_loss(v, L.flow_target(x0, eps)))
