"""The DiReCT loss terms as small pure functions (docs/METHOD.md).

Conventions (Wan 2.1 flow matching):

* ``x0`` clean latent, ``eps ~ N(0, I)``, noise level ``s`` in [0, 1] (1 = pure noise);
* ``x_s = (1 - s) x0 + s eps`` and the regression target is ``u = eps - x0``;
* the transformer sees timestep ``1000 * s``.

Every tensor of model outputs / targets is ``(B, C, ...)`` (batch first, channel second). The
squared distance ``||a - b||^2`` of METHOD.md is taken as the *per-element mean* over all non-batch
dimensions (``mse_per_sample``), so every term, margin and weight is independent of the latent size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from direct_data.training.config import MICRO_VARIANTS, REG_VARIANTS  # declared with the config

__all__ = [
    "shift_noise_level",
    "sample_noise_levels",
    "noisy_latent",
    "flow_target",
    "x0_to_velocity",
    "mse_per_sample",
    "fm_loss",
    "cfm_loss",
    "contrastive_term",
    "macro_loss",
    "micro_triplet",
    "micro_push",
    "micro_repel",
    "micro_loss",
    "channel_moments",
    "moments_reg",
    "mmd_reg",
    "l2_reg",
    "regulariser",
    "output_grads",
    "per_sample_cosine",
    "conflict_rate",
    "contrast_conflict",
    "micro_conflict",
    "MICRO_VARIANTS",
    "REG_VARIANTS",
]


# ---------------------------------------------------------------------------------------------
# flow matching in Wan's convention
# ---------------------------------------------------------------------------------------------


def shift_noise_level(s0: Tensor, shift: float) -> Tensor:
    """Wan's timestep shift: ``s = k * s0 / (1 + (k - 1) * s0)`` with ``k = shift``.

    ``k = 1`` is the identity; ``k > 1`` moves mass towards high noise. Maps [0, 1] onto [0, 1].
    """
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return shift * s0 / (1.0 + (shift - 1.0) * s0)


def sample_noise_levels(
    n: int,
    generator: torch.Generator | None = None,
    *,
    dist: str = "logit-normal",
    shift: float = 5.0,
    loc: float = 0.0,
    scale: float = 1.0,
) -> Tensor:
    """Draw ``n`` noise levels: ``s0 ~ sigmoid(N(loc, scale^2))`` (logit-normal) or ``U(0, 1)``,
    then ``s = shift_noise_level(s0, shift)``. Returned on CPU in float32 (move as needed).
    """
    if dist == "logit-normal":
        s0 = torch.sigmoid(loc + scale * torch.randn(n, generator=generator))
    elif dist == "uniform":
        s0 = torch.rand(n, generator=generator)
    else:
        raise ValueError(f"unknown noise-level distribution {dist!r}: use 'logit-normal' or 'uniform'")
    return shift_noise_level(s0, shift)


def _bcast(s: Tensor, like: Tensor) -> Tensor:
    return s.reshape(s.shape[0], *([1] * (like.ndim - 1))).to(like.dtype)


def noisy_latent(x0: Tensor, eps: Tensor, s: Tensor) -> Tensor:
    """``x_s = (1 - s) * x0 + s * eps`` with ``s`` of shape (B,) broadcast over the rest."""
    sb = _bcast(s, x0)
    return (1.0 - sb) * x0 + sb * eps


def flow_target(x0: Tensor, eps: Tensor) -> Tensor:
    """Velocity target ``u = eps - x0`` (d x_s / d s)."""
    return eps - x0


def x0_to_velocity(x0_hat: Tensor, xs: Tensor, s: Tensor, min_level: float = 0.05) -> Tensor:
    """Velocity of a clean-latent prediction: ``v = (x_s - x0_hat) / max(s, min_level)``.

    Exact where ``s >= min_level`` (``x_s - x0 = s (eps - x0)``); the floor keeps the velocity
    finite at the clean end, where ``x_s`` is almost ``x0`` (as in "Back to Basics: Let Denoising
    Generative Models Denoise", Li & He 2025, which predicts x0 and regresses v)."""
    return (xs - x0_hat) / _bcast(s.clamp_min(min_level), xs)


def mse_per_sample(a: Tensor, b: Tensor) -> Tensor:
    """``||a - b||^2`` per sample as the mean over all non-batch dims: shape (B,)."""
    return (a.float() - b.float()).pow(2).flatten(1).mean(1)


# ---------------------------------------------------------------------------------------------
# flow matching and contrastive flow matching
# ---------------------------------------------------------------------------------------------


def fm_loss(v: Tensor, u: Tensor) -> Tensor:
    """``L_fm = mean_i ||v_i - u_i||^2``."""
    return mse_per_sample(v, u).mean()


def contrastive_term(v: Tensor, u_neg: Tensor, lam: float, mask: Tensor | None = None) -> Tensor:
    """``-lam * mean_i ||v_i - u_j(i)||^2`` over rows with ``mask`` (all rows when None).

    The negative-sample part of contrastive flow matching; its gradient pushes ``v`` away from the
    negative target. Returns 0 (with a graph) when the mask selects no row.
    """
    d = mse_per_sample(v, u_neg)
    if mask is not None:
        m = mask.to(d.dtype)
        return -lam * (d * m).sum() / m.sum().clamp_min(1.0)
    return -lam * d.mean()


def cfm_loss(v: Tensor, u: Tensor, u_neg: Tensor, lam: float = 0.05) -> Tensor:
    """Contrastive flow matching (deltaFM):
    ``L_cfm = mean_i ||v_i - u_i||^2 - lam * mean_i ||v_i - u_j(i)||^2``.

    Its minimiser over ``v`` is ``v* = u + lam / (1 - lam) * (u - u_neg)``; ``lam`` must stay < 1
    (at ``lam >= 1`` the loss is unbounded below).
    """
    if not 0.0 <= lam < 1.0:
        raise ValueError(f"lam must be in [0, 1), got {lam}")
    return fm_loss(v, u) + contrastive_term(v, u_neg, lam)


def macro_loss(v: Tensor, u_macro: Tensor, lam_macro: float = 0.05, mask: Tensor | None = None) -> Tensor:
    """``L_macro = -lam_macro * mean_i ||v_i - u_j||^2`` with ``j`` from another semantic partition
    (``u_j = eps_j - x0_j``). ``mask`` marks rows that have a macro negative."""
    return contrastive_term(v, u_macro, lam_macro, mask)


# ---------------------------------------------------------------------------------------------
# micro (hard physics negatives): v~ = model(x_s, s, c~)
# ---------------------------------------------------------------------------------------------


def micro_triplet(v: Tensor, v_tilde: Tensor, u: Tensor, lam_micro: float = 0.05, margin: float = 0.1) -> Tensor:
    """``L_micro = lam_micro * mean_i max(0, margin + ||v_i - u_i||^2 - ||v~_i - u_i||^2)``.

    ``v`` (positive caption) must be closer to the target than ``v~`` (hard negative caption) by
    ``margin``; rows already past the margin contribute 0 and no gradient.
    """
    return lam_micro * torch.relu(margin + mse_per_sample(v, u) - mse_per_sample(v_tilde, u)).mean()


def micro_push(v_tilde: Tensor, u: Tensor, lam_micro: float = 0.05) -> Tensor:
    """``L_micro = -lam_micro * mean_i ||v~_i - u_i||^2`` (push the hard negative's prediction away)."""
    return -lam_micro * mse_per_sample(v_tilde, u).mean()


def micro_repel(v: Tensor, v_tilde: Tensor, lam_micro: float = 0.05) -> Tensor:
    """``L_micro = -lam_micro * mean_i ||v_i - stopgrad(v~_i)||^2`` (separate the two predictions)."""
    return -lam_micro * mse_per_sample(v, v_tilde.detach()).mean()


def micro_loss(
    variant: str, v: Tensor, v_tilde: Tensor, u: Tensor, lam_micro: float = 0.05, margin: float = 0.1
) -> Tensor:
    """Dispatch to ``micro_triplet`` / ``micro_push`` / ``micro_repel`` (rows: those with a hard negative)."""
    if variant == "triplet":
        return micro_triplet(v, v_tilde, u, lam_micro, margin)
    if variant == "push":
        return micro_push(v_tilde, u, lam_micro)
    if variant == "repel":
        return micro_repel(v, v_tilde, lam_micro)
    raise ValueError(f"unknown micro variant {variant!r}: one of {MICRO_VARIANTS}")


# ---------------------------------------------------------------------------------------------
# velocity-space distributional regularisers
# ---------------------------------------------------------------------------------------------


def channel_moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (biased) variance of ``x`` (B, C, ...) over batch x tokens: two (C,) tensors."""
    c = x.shape[1]
    flat = x.float().transpose(0, 1).reshape(c, -1)
    mu = flat.mean(1)
    var = (flat - mu[:, None]).pow(2).mean(1)
    return mu, var


def moments_reg(v: Tensor, ref: Tensor) -> Tensor:
    """``L = mean_c [(mu_c(v) - mu_c(ref))^2 + (var_c(v) - var_c(ref))^2]`` with per-channel
    statistics over batch x tokens. ``ref`` is the frozen reference prediction ``v_ref`` (variant
    ``moments``) or the target ``u`` (``moments-target``); it is treated as a constant."""
    mu_v, var_v = channel_moments(v)
    mu_r, var_r = channel_moments(ref.detach())
    return ((mu_v - mu_r).pow(2) + (var_v - var_r).pow(2)).mean()


def _tokens(x: Tensor) -> Tensor:
    """(B, C, ...) -> (B * tokens, C): one C-dim velocity vector per latent position."""
    c = x.shape[1]
    return x.float().transpose(0, 1).reshape(c, -1).t()


def mmd_reg(
    v: Tensor,
    ref: Tensor,
    *,
    max_points: int = 1024,
    bandwidths: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Biased RBF-kernel MMD^2 between the pooled per-token velocities of ``v`` and ``ref``:

    ``MMD^2 = mean k(a, a') + mean k(b, b') - 2 mean k(a, b)``, ``k(a, b) = sum_h exp(-||a - b||^2 / (2 h^2 m))``

    with ``a`` the C-dim vectors of ``v`` at every (sample, token), ``b`` those of ``ref`` (constant),
    ``m`` the median squared distance of the reference to itself (scale-free bandwidths ``h``).
    At most ``max_points`` positions (the same ones in both, drawn with ``generator``) are used.
    Zero when the two point sets are equal, positive when the distributions differ.
    """
    a = _tokens(v)
    b = _tokens(ref.detach())
    n = a.shape[0]
    if n > max_points:
        idx = torch.randperm(n, generator=generator)[:max_points].to(a.device)
        a, b = a[idx], b[idx]
    d_ab = torch.cdist(a, b).pow(2)
    d_aa = torch.cdist(a, a).pow(2)
    d_bb = torch.cdist(b, b).pow(2)
    m = d_bb.detach().median().clamp_min(1e-6)
    def k(d: Tensor) -> Tensor:
        return sum(torch.exp(-d / (2.0 * h * h * m)) for h in bandwidths)
    return (k(d_aa).mean() + k(d_bb).mean() - 2.0 * k(d_ab).mean()).clamp_min(0.0)


def l2_reg(v: Tensor, ref: Tensor) -> Tensor:
    """``L = mean_i ||v_i - v_ref_i||^2`` (reference is constant)."""
    return mse_per_sample(v, ref.detach()).mean()


def regulariser(variant: str, v: Tensor, *, v_ref: Tensor | None = None, u: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """Dispatch: ``moments`` / ``mmd`` / ``l2`` against ``v_ref``; ``moments-target`` against ``u``."""
    if variant == "moments-target":
        if u is None:
            raise ValueError("moments-target needs the target u")
        return moments_reg(v, u)
    if variant in ("moments", "mmd", "l2"):
        if v_ref is None:
            raise ValueError(f"regulariser {variant!r} needs the reference prediction v_ref")
        if variant == "moments":
            return moments_reg(v, v_ref)
        if variant == "mmd":
            return mmd_reg(v, v_ref, generator=generator)
        return l2_reg(v, v_ref)
    raise ValueError(f"unknown regulariser {variant!r}: one of {REG_VARIANTS}")


# ---------------------------------------------------------------------------------------------
# gradient-conflict diagnostic (the measured alignment condition)
# ---------------------------------------------------------------------------------------------


def output_grads(loss_fn: Callable[..., Tensor], *outputs: Tensor) -> tuple[Tensor, ...]:
    """Gradients of ``loss_fn(*outputs)`` w.r.t. detached copies of ``outputs`` (no model graph).

    Use to get the gradient of one loss term w.r.t. the model output, e.g.
    ``g_fm, = output_grads(lambda v: fm_loss(v, u), v)``.
    """
    leaves = [o.detach().float().requires_grad_(True) for o in outputs]
    with torch.enable_grad():
        loss = loss_fn(*leaves)
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return tuple(torch.zeros_like(l) if g is None else g for l, g in zip(leaves, grads))


def per_sample_cosine(a: Tensor, b: Tensor, eps: float = 1e-12) -> Tensor:
    """``cos_i = <a_i, b_i> / (||a_i|| ||b_i||)`` per sample: (B,). NaN where either vector is 0
    (e.g. a triplet row past its margin: no contrastive gradient, no conflict to measure)."""
    a = a.float().flatten(1)
    b = b.float().flatten(1)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    cos = (a * b).sum(1) / (na * nb).clamp_min(eps)
    return torch.where((na > eps) & (nb > eps), cos, torch.full_like(cos, float("nan")))


def conflict_rate(cos: Tensor) -> float:
    """Fraction of defined cosines that are < 0 (the contrastive gradient opposes flow matching);
    NaN when no cosine is defined."""
    ok = ~torch.isnan(cos)
    if not bool(ok.any()):
        return math.nan
    return float((cos[ok] < 0).float().mean())


def contrast_conflict(v: Tensor, u: Tensor, u_neg: Tensor) -> Tensor:
    """Per-sample cosine between ``dL_fm/dv`` (prop. to ``v - u``) and the gradient of the
    contrastive term ``-lam ||v - u_neg||^2`` (prop. to ``-(v - u_neg)``), i.e.
    ``cos_i = -<v_i - u_i, v_i - u_neg_i> / (||v_i - u_i|| ||v_i - u_neg_i||)``.

    Negative exactly when ``<v - u_i, v - u_j> > 0``: METHOD.md's conflict condition. Used for the
    naive (random in-batch) and macro negatives.
    """
    # closed forms of the two output gradients (positive factors dropped: cosines ignore them)
    return per_sample_cosine(v.float() - u.float(), u_neg.float() - v.float())


def micro_conflict(variant: str, v: Tensor, v_tilde: Tensor, u: Tensor, margin: float = 0.1) -> Tensor:
    """Per-sample cosine between ``dL_fm/dv`` and the micro term's gradient with respect to the model
    output, ``dL_micro/dv + dL_micro/dv~``.

    ``v`` and ``v~`` are the same network on the same noisy latent (captions ``c`` and ``c~``); to
    first order (equal Jacobians) the parameter update of the micro term is the network's Jacobian
    applied to the *sum* of its output gradients, which is what is compared with flow matching.
    Triplet: ``prop. to (v - v~)`` on active rows (NaN past the margin); push: ``-(v~ - u)``;
    repel: ``-(v - v~)``.
    """
    v, v_tilde, u = v.float(), v_tilde.float(), u.float()
    # closed forms of the output gradients (positive per-row factors dropped: cosines ignore them)
    if variant == "triplet":
        active = (margin + mse_per_sample(v, u) - mse_per_sample(v_tilde, u)) > 0
        g = (v - v_tilde) * active.reshape(-1, *([1] * (v.ndim - 1)))
    elif variant == "push":
        g = u - v_tilde
    elif variant == "repel":
        g = v_tilde - v
    else:
        raise ValueError(f"unknown micro variant {variant!r}: one of {MICRO_VARIANTS}")
    return per_sample_cosine(v - u, g)
