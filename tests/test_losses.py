"""Each DiReCT loss against a direct reference computation on small tensors, plus the sign of its gradient."""

from __future__ import annotations

import math

import pytest
import torch

from direct_data.training import losses as L

SHAPE = (4, 3, 2, 3, 3)  # (B, C, F, H, W)


def _t(seed: int, shape=SHAPE) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _sqdist(a, b, i):
    """Reference ||a_i - b_i||^2 as the per-element mean, element by element."""
    n = a[i].numel()
    return sum((float(x) - float(y)) ** 2 for x, y in zip(a[i].flatten(), b[i].flatten())) / n


def _gd_step(loss_fn, v, lr=1e-2):
    v = v.clone().requires_grad_(True)
    loss_fn(v).backward()
    return (v - lr * v.grad).detach(), v.grad


# ---------------------------------------------------------------------------------------------- flow matching


def test_shift_noise_level_formula_and_range():
    s0 = torch.linspace(0, 1, 11, dtype=torch.float64)
    for k in (1.0, 3.0, 5.0):
        s = L.shift_noise_level(s0, k)
        ref = torch.tensor([k * x / (1 + (k - 1) * x) for x in s0.tolist()], dtype=torch.float64)
        torch.testing.assert_close(s, ref)
        assert float(s[0]) == 0.0 and float(s[-1]) == pytest.approx(1.0)
    # k > 1 moves every interior level towards noise
    assert bool((L.shift_noise_level(s0[1:-1], 5.0) > s0[1:-1]).all())
    with pytest.raises(ValueError):
        L.shift_noise_level(s0, 0.0)


def test_sample_noise_levels_deterministic_and_distributions():
    a = L.sample_noise_levels(4000, torch.Generator().manual_seed(0), dist="uniform", shift=1.0)
    b = L.sample_noise_levels(4000, torch.Generator().manual_seed(0), dist="uniform", shift=1.0)
    assert torch.equal(a, b)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert float(a.mean()) == pytest.approx(0.5, abs=0.03)
    ln = L.sample_noise_levels(4000, torch.Generator().manual_seed(1), dist="logit-normal", shift=1.0)
    assert float(ln.median()) == pytest.approx(0.5, abs=0.03)
    shifted = L.sample_noise_levels(4000, torch.Generator().manual_seed(1), dist="logit-normal", shift=5.0)
    torch.testing.assert_close(shifted, L.shift_noise_level(ln, 5.0))
    with pytest.raises(ValueError, match="logit-normal"):
        L.sample_noise_levels(3, dist="beta")


def test_noisy_latent_and_target_wan_convention():
    x0, eps = _t(0), _t(1)
    s = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    xs = L.noisy_latent(x0, eps, s)
    for i, si in enumerate(s.tolist()):
        torch.testing.assert_close(xs[i], (1 - si) * x0[i] + si * eps[i])
    torch.testing.assert_close(xs[0], x0[0])
    torch.testing.assert_close(xs[3], eps[3])
    u = L.flow_target(x0, eps)
    torch.testing.assert_close(u, eps - x0)
    # u is the derivative of x_s in s
    h = 1e-6
    torch.testing.assert_close((L.noisy_latent(x0, eps, s + h) - xs) / h, u, atol=1e-5, rtol=1e-5)


def test_x0_to_velocity_is_exact_above_the_floor_and_finite_below():
    x0, eps = _t(0), _t(1)
    s = torch.tensor([0.0, 0.01, 0.3, 1.0], dtype=torch.float64)
    xs = L.noisy_latent(x0, eps, s)
    v = L.x0_to_velocity(x0, xs, s, min_level=0.05)
    u = L.flow_target(x0, eps)
    # a perfect clean-latent prediction is the true velocity wherever s >= the floor
    torch.testing.assert_close(v[2:], u[2:])
    # below the floor the division uses the floor: (x_s - x0) / 0.05 = (s / 0.05) u
    torch.testing.assert_close(v[1], (0.01 / 0.05) * u[1])
    torch.testing.assert_close(v[0], torch.zeros_like(v[0]))
    # the velocity error is the clean-latent error scaled by 1 / max(s, floor)
    x0_hat = x0 + 0.1
    torch.testing.assert_close(L.x0_to_velocity(x0_hat, xs, s, 0.05)[2] - u[2], -(0.1 / 0.3) * torch.ones_like(u[2]))


def test_fm_loss_reference_and_gradient_pulls_towards_target():
    v, u = _t(2), _t(3)
    ref = sum(_sqdist(v, u, i) for i in range(4)) / 4
    assert float(L.fm_loss(v, u)) == pytest.approx(ref, rel=1e-6)
    assert float(L.fm_loss(u, u)) == 0.0
    v2, _ = _gd_step(lambda x: L.fm_loss(x, u), v)
    assert bool((L.mse_per_sample(v2, u) < L.mse_per_sample(v, u)).all())


# ---------------------------------------------------------------------------------------------- contrastive


def test_cfm_loss_reference_and_push_away():
    v, u, un = _t(4), _t(5), _t(6)
    lam = 0.05
    ref = sum(_sqdist(v, u, i) - lam * _sqdist(v, un, i) for i in range(4)) / 4
    assert float(L.cfm_loss(v, u, un, lam)) == pytest.approx(ref, rel=1e-6)
    # the contrastive part alone: a gradient step increases ||v - u_j|| for every row
    v2, _ = _gd_step(lambda x: L.contrastive_term(x, un, lam), v)
    assert bool((L.mse_per_sample(v2, un) > L.mse_per_sample(v, un)).all())
    with pytest.raises(ValueError):
        L.cfm_loss(v, u, un, 1.0)


def test_cfm_optimum_matches_closed_form():
    u, un = _t(7), _t(8)
    lam = 0.2
    v = torch.zeros_like(u, requires_grad=True)
    opt = torch.optim.SGD([v], lr=0.5 * u[0].numel())
    for _ in range(400):
        opt.zero_grad()
        L.cfm_loss(v, u, un, lam).backward()
        opt.step()
    v_star = u + lam / (1 - lam) * (u - un)
    torch.testing.assert_close(v.detach(), v_star, atol=1e-6, rtol=1e-6)
    # and the gradient vanishes there
    vs = v_star.clone().requires_grad_(True)
    L.cfm_loss(vs, u, un, lam).backward()
    assert float(vs.grad.abs().max()) < 1e-8


def test_macro_loss_mask_reference_and_sign():
    v, um = _t(9), _t(10)
    mask = torch.tensor([True, False, True, True])
    ref = -0.05 * sum(_sqdist(v, um, i) for i in (0, 2, 3)) / 3
    assert float(L.macro_loss(v, um, 0.05, mask)) == pytest.approx(ref, rel=1e-6)
    v2, g = _gd_step(lambda x: L.macro_loss(x, um, 0.05, mask), v)
    d_before, d_after = L.mse_per_sample(v, um), L.mse_per_sample(v2, um)
    assert bool((d_after[mask] > d_before[mask]).all())
    assert float(g[1].abs().max()) == 0.0  # unmasked row: no gradient
    assert float(L.macro_loss(v, um, 0.05, torch.zeros(4, dtype=torch.bool))) == 0.0


# ---------------------------------------------------------------------------------------------- micro


def test_micro_triplet_reference_margin_and_gradient():
    u = _t(11)
    v = u + 0.1 * _t(12)          # close to the target
    vt_far = u + 2.0 * _t(13)     # hard negative already far: beyond the margin
    vt_near = u + 0.1 * _t(14)    # hard negative as close as the positive: inside the margin
    lam, margin = 0.5, 0.1
    ref = lam * sum(max(0.0, margin + _sqdist(v, u, i) - _sqdist(vt_near, u, i)) for i in range(4)) / 4
    assert float(L.micro_triplet(v, vt_near, u, lam, margin)) == pytest.approx(ref, rel=1e-6)
    assert ref > 0
    # beyond the margin: zero loss and zero gradient
    a, b = v.clone().requires_grad_(True), vt_far.clone().requires_grad_(True)
    loss = L.micro_triplet(a, b, u, lam, margin)
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert float(a.grad.abs().max()) == 0.0 and float(b.grad.abs().max()) == 0.0
    # inside the margin: a step pushes v~ away from u and pulls v towards it
    a, b = v.clone().requires_grad_(True), vt_near.clone().requires_grad_(True)
    L.micro_triplet(a, b, u, lam, margin).backward()
    a2, b2 = (a - 0.01 * a.grad).detach(), (b - 0.01 * b.grad).detach()
    assert bool((L.mse_per_sample(b2, u) > L.mse_per_sample(vt_near, u)).all())
    assert bool((L.mse_per_sample(a2, u) < L.mse_per_sample(v, u)).all())


def test_micro_push_and_repel_reference_and_sign():
    u, v, vt = _t(15), _t(16), _t(17)
    lam = 0.05
    assert float(L.micro_push(vt, u, lam)) == pytest.approx(-lam * sum(_sqdist(vt, u, i) for i in range(4)) / 4, rel=1e-6)
    assert float(L.micro_repel(v, vt, lam)) == pytest.approx(-lam * sum(_sqdist(v, vt, i) for i in range(4)) / 4, rel=1e-6)
    vt2, _ = _gd_step(lambda x: L.micro_push(x, u, lam), vt)
    assert bool((L.mse_per_sample(vt2, u) > L.mse_per_sample(vt, u)).all())
    # repel: v moves away from v~, and v~ gets no gradient (stop-grad)
    a, b = v.clone().requires_grad_(True), vt.clone().requires_grad_(True)
    L.micro_repel(a, b, lam).backward()
    assert b.grad is None
    a2 = (a - 0.01 * a.grad).detach()
    assert bool((L.mse_per_sample(a2, vt) > L.mse_per_sample(v, vt)).all())
    for name in L.MICRO_VARIANTS:
        assert torch.isfinite(L.micro_loss(name, v, vt, u))
    with pytest.raises(ValueError, match="triplet"):
        L.micro_loss("bogus", v, vt, u)


# ---------------------------------------------------------------------------------------------- regularisers


def test_moments_reg_reference_zero_when_matching_positive_otherwise():
    v = _t(18)
    # same statistics, different values: a permutation of the batch x tokens positions per channel
    perm = v.transpose(0, 1).reshape(3, -1)[:, torch.randperm(v[:, 0].numel(), generator=torch.Generator().manual_seed(0))]
    v_perm = perm.reshape(3, *v.shape[:1], *v.shape[2:]).transpose(0, 1)
    assert not torch.equal(v, v_perm)
    assert float(L.moments_reg(v, v_perm)) == pytest.approx(0.0, abs=1e-12)
    ref = 1.5 * v + 0.3
    flat_v, flat_r = v.transpose(0, 1).reshape(3, -1), ref.transpose(0, 1).reshape(3, -1)
    expect = sum(
        (float(flat_v[c].mean()) - float(flat_r[c].mean())) ** 2
        + (float(flat_v[c].var(unbiased=False)) - float(flat_r[c].var(unbiased=False))) ** 2
        for c in range(3)
    ) / 3
    assert float(L.moments_reg(v, ref)) == pytest.approx(expect, rel=1e-6)
    assert expect > 0
    # a gradient step moves the statistics towards the reference
    v2, _ = _gd_step(lambda x: L.moments_reg(x, ref), v, lr=0.05)
    assert float(L.moments_reg(v2, ref)) < float(L.moments_reg(v, ref))
    # moments-target uses u
    torch.testing.assert_close(L.regulariser("moments-target", v, u=ref), L.moments_reg(v, ref))


def test_mmd_reg_zero_on_equal_sets_positive_on_shift():
    v = _t(19)
    assert float(L.mmd_reg(v, v.clone())) == pytest.approx(0.0, abs=1e-6)
    shifted = v + 1.0
    m = float(L.mmd_reg(v, shifted))
    assert m > 0.05
    # direct reference computation of the biased MMD^2
    a = v.transpose(0, 1).reshape(3, -1).t()
    b = shifted.transpose(0, 1).reshape(3, -1).t()
    med = float(torch.cdist(b, b).pow(2).median())

    def k(x, y):
        d = float(((x - y) ** 2).sum())
        return sum(math.exp(-d / (2 * h * h * med)) for h in (0.5, 1.0, 2.0, 4.0))

    n = a.shape[0]
    kaa = sum(k(a[i], a[j]) for i in range(n) for j in range(n)) / n**2
    kbb = sum(k(b[i], b[j]) for i in range(n) for j in range(n)) / n**2
    kab = sum(k(a[i], b[j]) for i in range(n) for j in range(n)) / n**2
    assert m == pytest.approx(kaa + kbb - 2 * kab, rel=1e-5)
    v2, _ = _gd_step(lambda x: L.mmd_reg(x, shifted), v, lr=5.0)
    assert float(L.mmd_reg(v2, shifted)) < m


def test_l2_reg_and_dispatch_errors():
    v, r = _t(20), _t(21)
    assert float(L.l2_reg(v, r)) == pytest.approx(sum(_sqdist(v, r, i) for i in range(4)) / 4, rel=1e-6)
    assert float(L.l2_reg(v, v)) == 0.0
    with pytest.raises(ValueError, match="v_ref"):
        L.regulariser("moments", v)
    with pytest.raises(ValueError, match="unknown"):
        L.regulariser("kl", v, v_ref=r)


# ---------------------------------------------------------------------------------------------- conflict diagnostic


def test_contrast_conflict_matches_alignment_condition():
    u, un = _t(22), _t(23)
    e = 0.5 * _t(24)
    d = un - u
    v = u + e
    cos = L.contrast_conflict(v, u, un)
    # it is the cosine of the two loss terms' output gradients (autograd)
    g_fm, = L.output_grads(lambda x: L.fm_loss(x, u), v)
    g_c, = L.output_grads(lambda x: L.contrastive_term(x, un, 0.05), v)
    torch.testing.assert_close(cos, L.per_sample_cosine(g_fm, g_c))
    for i in range(4):
        a, b = (v[i] - u[i]).flatten(), (v[i] - un[i]).flatten()
        expect = -float(a @ b) / float(a.norm() * b.norm())
        assert float(cos[i]) == pytest.approx(expect, rel=1e-5)
        # conflict (cos < 0) exactly when <e, d> < ||e||^2
        assert (float(cos[i]) < 0) == (float(e[i].flatten() @ d[i].flatten()) < float(e[i].norm() ** 2))
    # a negative identical to the positive is the extreme conflict (cos = -1)
    same = L.contrast_conflict(v, u, u)
    torch.testing.assert_close(same, -torch.ones(4, dtype=torch.float32))
    assert L.conflict_rate(same) == 1.0
    # a negative beyond v on the line from u (pushing away from it moves v towards u) never conflicts
    far = u + 10.0 * (v - u)
    assert L.conflict_rate(L.contrast_conflict(v, u, far)) == 0.0


def test_micro_conflict_triplet_inactive_rows_undefined():
    u = _t(25)
    v = u + 0.1 * _t(26)
    vt = v.clone()
    vt[:2] = u[:2] + 3.0 * _t(27)[:2]  # rows 0-1 beyond the margin
    cos = L.micro_conflict("triplet", v, vt, u, margin=0.1)
    # rows 0-1 past the margin, rows 2-3 with v~ == v (net output gradient v - v~ = 0): all undefined
    assert bool(torch.isnan(cos).all())
    vt[2:] = v[2:] + 0.05 * _t(28)[2:]
    cos = L.micro_conflict("triplet", v, vt, u, margin=0.1)
    assert bool(torch.isnan(cos[:2]).all()) and not bool(torch.isnan(cos[2:]).any())
    for i in (2, 3):
        a, b = (v[i] - u[i]).flatten(), (v[i] - vt[i]).flatten()
        assert float(cos[i]) == pytest.approx(float(a @ b) / float(a.norm() * b.norm()), rel=1e-4)
    # the closed forms are the cosine between dL_fm/dv and dL_micro/dv + dL_micro/dv~ (autograd)
    vt3 = u + 0.12 * _t(29)
    for variant in L.MICRO_VARIANTS:
        g_fm, = L.output_grads(lambda x: L.fm_loss(x, u), v)
        g_v, g_vt = L.output_grads(lambda a, b, variant=variant: L.micro_loss(variant, a, b, u, 0.05, 0.1), v, vt3)
        torch.testing.assert_close(L.micro_conflict(variant, v, vt3, u, margin=0.1),
                                   L.per_sample_cosine(g_fm, g_v + g_vt), equal_nan=True)
    # push with v~ == v opposes flow matching exactly
    push = L.micro_conflict("push", v, v.clone(), u)
    torch.testing.assert_close(push, -torch.ones(4, dtype=torch.float32))
    assert L.conflict_rate(torch.tensor([float("nan"), 0.5, -0.2, -0.1])) == pytest.approx(2 / 3)
    assert math.isnan(L.conflict_rate(torch.tensor([float("nan")])))
