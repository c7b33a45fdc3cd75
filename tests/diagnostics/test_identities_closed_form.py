"""Closed-form checks of the edge-coupling identities (docs/theory.md §1-3).

Written to kill the mutants that tests/diagnostics/test_identities.py lets survive in
eoskit.diagnostics.identities and eoskit.diagnostics.forcing
(benchmarks/results/mutation.md). References: a quadratic L = ½ xᵀAx + bᵀx, whose
values, gradients and GD steps are exact closed forms, and hand-computed numbers.
"""

import math

import pytest
import torch

from eoskit.diagnostics.forcing import ForcingTracker
from eoskit.diagnostics.identities import (
    _eps,
    _float,
    _rel,
    edge_coupling,
    edge_coupling_grads,
    effective_curvature,
    gd_pair_residual,
    kappa_mismatch,
    loss_change_residual,
    step_recurrence_residual,
)
from eoskit.objective import FunctionObjective

F64 = torch.float64
D = 5


def _quadratic(seed=0):
    gen = torch.Generator().manual_seed(seed)
    M = torch.randn(D, D, dtype=F64, generator=gen)
    A = M @ M.T / D + torch.diag(torch.linspace(0.5, 3.0, D, dtype=F64))
    b = torch.randn(D, dtype=F64, generator=gen)
    x = torch.randn(D, dtype=F64, generator=gen)
    obj = FunctionObjective(lambda z: 0.5 * z @ A @ z + b @ z, dim=D)
    return obj, A, b, x


def _loss(A, b, z):
    return float(0.5 * z @ A @ z + b @ z)


# ---------------------------------------------------------------- helpers
def test_rel_is_a_ratio_of_magnitudes():
    assert _rel(-3.0, 4.0) == 0.75
    assert _rel(3.0, -4.0) == 0.75
    assert _rel(6.0, 2.0) == 3.0  # not 1/3: numerator over denominator


def test_rel_of_an_exact_identity_and_of_a_zero_denominator():
    assert _rel(0.0, 0.0) == 0.0
    assert _rel(1e-300, 0.0) == math.inf
    assert _rel(0.0, 2.0) == 0.0


@pytest.mark.parametrize("num,den", [(math.nan, 1.0), (1.0, math.nan), (1.0, math.inf),
                                     (math.inf, 1.0), (math.nan, 0.0)])
def test_rel_is_nan_unless_both_are_finite(num, den):
    assert math.isnan(_rel(num, den))


def test_eps_is_the_machine_epsilon():
    assert _eps(torch.float64) == 2.0 ** -52
    assert _eps(torch.float32) == 2.0 ** -23


def test_float_of_a_tensor_with_a_graph_and_of_a_number():
    t = torch.tensor(2.5, dtype=F64, requires_grad=True) * 2
    assert _float(t) == 5.0 and type(_float(t)) is float
    assert _float(3) == 3.0 and type(_float(3)) is float


# ---------------------------------------------------------------- §1 edge coupling
@pytest.mark.parametrize("lr", [0.3, 2.0])
def test_edge_coupling_closed_form(lr):
    obj, A, b, x = _quadratic()
    y = x + torch.linspace(-1.0, 2.0, D, dtype=F64)
    expected = _loss(A, b, x) + _loss(A, b, y) - float(((x - y) ** 2).sum()) / (2 * lr)
    assert edge_coupling(obj, x, y, lr) == pytest.approx(expected, rel=1e-14)


def test_edge_coupling_grads_are_the_partial_derivatives():
    obj, A, b, x = _quadratic()
    y = x - torch.arange(D, dtype=F64) / 3
    lr = 0.7
    gx, gy = edge_coupling_grads(obj, x, y, lr)
    # ∇_x A = g(x) − (x − y)/η, ∇_y A = g(y) + (x − y)/η with g(z) = Az + b
    assert torch.allclose(gx, A @ x + b - (x - y) / lr, rtol=1e-13, atol=1e-13)
    assert torch.allclose(gy, A @ y + b + (x - y) / lr, rtol=1e-13, atol=1e-13)


def test_gd_pair_residual_measures_the_distance_from_a_gd_step():
    obj, A, b, x = _quadratic()
    g = A @ x + b
    lr = 0.4
    assert gd_pair_residual(obj, x, x - lr * g, lr) <= 1e-14
    assert gd_pair_residual(obj, x, x, lr) == pytest.approx(1.0, rel=1e-14)  # ‖g‖/‖g‖
    assert gd_pair_residual(obj, x, x + lr * g, lr) == pytest.approx(2.0, rel=1e-14)
    assert gd_pair_residual(obj, x, x - 3 * lr * g, lr) == pytest.approx(2.0, rel=1e-14)


# ---------------------------------------------------------------- §3 effective curvature
@pytest.mark.parametrize("lr", [0.1, 0.45])
def test_effective_curvature_of_a_gd_step_on_a_quadratic_is_the_rayleigh_quotient(lr):
    # ΔL = gᵀs + ½ sᵀAs and s = −ηg give κ = 2/η + 2ΔL/|s|² = sᵀAs/|s|²
    obj, A, b, x = _quadratic()
    s = -lr * (A @ x + b)
    ss = float(s @ s)
    kappa = effective_curvature(_loss(A, b, x), _loss(A, b, x + s), ss, lr)
    assert kappa == pytest.approx(float(s @ A @ s) / ss, rel=1e-10)


def test_effective_curvature_of_no_step_is_nan():
    assert math.isnan(effective_curvature(1.0, 1.0, 0.0, 0.1))
    assert math.isnan(effective_curvature(1.0, 0.5, -1.0, 0.1))
    assert effective_curvature(2.0, 1.0, 1e-3, 0.5) == pytest.approx(4.0 - 2000.0)


# ---------------------------------------------------------------- exact-identity residuals
def test_step_recurrence_is_exact_on_a_quadratic_and_measures_a_defect():
    obj, A, b, x0 = _quadratic()
    lr = 0.2
    x1 = x0 - lr * (A @ x0 + b)
    x2 = x1 - lr * (A @ x1 + b)
    s_t, s_next = x1 - x0, x2 - x1
    hbar_s = A @ s_t  # H̄ = A on a quadratic
    assert step_recurrence_residual(s_t, s_next, hbar_s, lr) <= 1e-13
    delta = torch.linspace(1.0, 2.0, D, dtype=F64)
    expected = float((lr * delta).norm() / s_next.norm())
    got = step_recurrence_residual(s_t, s_next, hbar_s + delta, lr)
    assert got == pytest.approx(expected, rel=1e-10)


def test_loss_change_residual_zero_for_the_loss_kappa_and_linear_in_a_defect():
    loss_t, loss_next, ss, lr = 3.0, 2.2, 0.4, 0.25
    kappa = effective_curvature(loss_t, loss_next, ss, lr)
    assert loss_change_residual(loss_t, loss_next, ss, kappa, lr) <= 1e-15
    # ΔL − ½|s|²(κ + δ − 2/η) = −½|s|²δ, relative to |ΔL| = 0.8
    got = loss_change_residual(loss_t, loss_next, ss, kappa + 1.0, lr)
    assert got == pytest.approx(0.5 * ss * 1.0 / 0.8, rel=1e-12)


def test_kappa_mismatch_is_relative_to_the_larger_magnitude():
    assert kappa_mismatch(3.0, 4.0) == pytest.approx(0.25)
    assert kappa_mismatch(-4.0, 3.0) == pytest.approx(7.0 / 4.0)
    assert kappa_mismatch(2.0, -8.0) == pytest.approx(10.0 / 8.0)
    assert kappa_mismatch(0.0, 0.0) == 0.0


# ---------------------------------------------------------------- forcing identity
def _gd_run(lr=0.15, steps=6):
    obj, A, b, x = _quadratic(seed=3)
    tr = ForcingTracker(lr=lr)
    losses, sq, kappas = [_loss(A, b, x)], [], []
    for _ in range(steps):
        s = -lr * (A @ x + b)
        x_next = x + s
        kappa = float(s @ A @ s) / float(s @ s)  # exact κ on a quadratic
        tr.update(losses[-1], _loss(A, b, x_next), kappa, float(s @ s))
        losses.append(_loss(A, b, x_next))
        sq.append(float(s @ s))
        kappas.append(kappa)
        x = x_next
    return tr, losses, sq, kappas


def test_forcing_identity_telescopes_over_a_quadratic_gd_run():
    lr = 0.15
    tr, losses, sq, kappas = _gd_run(lr)
    S = sum(sq)
    assert tr.loss_0 == losses[0] and tr.loss_T == losses[-1]
    assert tr.total_sq == pytest.approx(S, rel=1e-14)
    assert tr.rhs == pytest.approx(2 * (losses[0] - losses[-1]) / S, rel=1e-12)
    expected_lhs = sum(w * (2 / lr - k) for w, k in zip(sq, kappas, strict=True)) / S
    assert tr.lhs == pytest.approx(expected_lhs, rel=1e-12)
    assert tr.lhs == pytest.approx(tr.rhs, rel=1e-10)  # the identity itself
    mean_kappa = sum(w * k for w, k in zip(sq, kappas, strict=True)) / S
    assert tr.weighted_mean_kappa == pytest.approx(mean_kappa, rel=1e-12)
    assert tr.weighted_mean_kappa == pytest.approx(2 / lr - tr.lhs, rel=1e-10)


def test_forcing_tracker_skips_undefined_steps_but_keeps_the_losses():
    tr = ForcingTracker(lr=0.5)
    assert math.isnan(tr.lhs) and math.isnan(tr.rhs) and math.isnan(tr.weighted_mean_kappa)
    tr.update(loss_t=5.0, loss_next=4.0, kappa=math.nan, step_norm_sq=1.0)
    tr.update(loss_t=4.0, loss_next=3.5, kappa=1.0, step_norm_sq=0.0)
    assert (tr.loss_0, tr.loss_T, tr.total_sq) == (5.0, 3.5, 0.0)
    assert math.isnan(tr.rhs) and math.isnan(tr.lhs)
    tr.update(loss_t=3.5, loss_next=3.0, kappa=2.0, step_norm_sq=0.5)
    assert tr.loss_0 == 5.0  # the first loss is kept, not overwritten
    assert tr.rhs == pytest.approx(2 * (5.0 - 3.0) / 0.5)
    assert tr.lhs == pytest.approx(2 / 0.5 - 2.0)
    assert tr.weighted_mean_kappa == pytest.approx(2.0)
    tr.update(loss_t=3.0, loss_next=2.9, kappa=math.inf, step_norm_sq=0.5)
    assert tr.total_sq == 0.5 and tr.loss_T == 2.9


def test_forcing_tracker_state_round_trips():
    tr, *_ = _gd_run()
    copy = ForcingTracker(lr=tr.lr, **tr.state())
    assert copy == tr
    assert set(tr.state()) == {"loss_0", "loss_T", "total_sq", "weighted_gap", "weighted_kappa"}
