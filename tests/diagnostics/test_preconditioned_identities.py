"""Preconditioned sharpness λ(P^{-1/2} H P^{-1/2}) along adaptive runs, and the frozen P."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from eoskit import diagnostics as D
from eoskit import store
from eoskit.diagnostics import preconditioned_identities as P
from eoskit.eigs import preconditioned_matvec
from eoskit.optim import make_rule, rule_for
from eoskit.training.config import RunConfig
from eoskit.training.loop import train
from eoskit.training.run_problem import build_problem
from tests.diagnostics.test_identities import random_polynomial

F64 = torch.float64


def _dense_hessian(obj, x):
    with obj.at(x) as point:
        H = point.hvp(torch.eye(obj.dim, dtype=F64))  # (d, d)
    return 0.5 * (H + H.T)


def _dense_precond_eigs(H, p, k):
    r = p.rsqrt()
    return torch.linalg.eigvalsh(r[:, None] * H * r[None, :]).flip(0)[:k]  # (k,)


def test_preconditioned_matvec_is_the_symmetric_scaling():
    gen = torch.Generator().manual_seed(3)
    A = torch.randn(6, 6, generator=gen, dtype=F64)
    H, p = A + A.T, torch.rand(6, generator=gen, dtype=F64) + 0.1
    mv = preconditioned_matvec(lambda v: H @ v, p)
    M = torch.diag(p.rsqrt()) @ H @ torch.diag(p.rsqrt())
    V = torch.randn(6, 3, generator=gen, dtype=F64)
    assert torch.allclose(mv(V), M @ V, rtol=1e-14, atol=1e-14)
    assert torch.allclose(mv(V[:, 0]), M @ V[:, 0], rtol=1e-14, atol=1e-14)


TINY = dict(dataset="digits", n_train=40, n_test=0, width=3, depth=1, dtype="float64",
            steps=5, checkpoint_every=0, sharpness_every=1, eval_every=0, lr=0.01, neigs=2,
            eig_tol=1e-10, eig_restart_every=0)


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop"])
def test_precond_sharpness_equals_dense_eigvalsh_along_the_run(tmp_path, name):
    cfg = RunConfig(**TINY, optimizer=name)
    summary = train(cfg, tmp_path, progress=False)
    rows = store.read_rows(tmp_path / "metrics.csv")
    assert summary["sharpness_series"] == "precond_sharpness"
    problem = build_problem(cfg)
    obj, x, rule = problem.train, problem.x0, rule_for(cfg)
    worst = 0.0
    for row in rows:
        g = obj.grad(x)
        p = rule.preconditioner(g, x)
        H = _dense_hessian(obj, x)
        dense = _dense_precond_eigs(H, p, 2)
        got = torch.tensor([row["precond_eig_1"], row["precond_eig_2"]], dtype=F64)
        worst = max(worst, float(((got - dense).abs() / dense.abs()).max()))
        assert row["precond_sharpness"] == row["precond_eig_1"]
        raw = float(torch.linalg.eigvalsh(H)[-1])
        assert row["sharpness"] == pytest.approx(raw, rel=1e-8)
        x = x + rule.step(g, x)
    print(f"{name}: max relative |λ_tracked − λ_dense| of P^-1/2 H P^-1/2 = {worst:.1e}")
    assert worst <= 1e-8
    assert rows[-1]["threshold"] == pytest.approx(cfg.threshold)
    assert summary["final_sharpness"] == rows[-1]["precond_sharpness"]


def _frozen_quadratic_run(name, side, steps=1100, freeze=100, **hyper):
    """|x_T| on ½xᵀHx: P frozen at step ``freeze`` (η = 0.01 until then), from there on
    η such that λ₁(P⁻¹H) = side × threshold(η).

    The rate changes only once P is fixed (P depends on the path, so on η, until then);
    by step 100 Adam's bias correction of m is 1 to 3e-5.
    """
    h = torch.tensor([50.0, 7.0, 1.0, 0.2], dtype=F64)
    x = torch.tensor([1.0, -0.5, 2.0, 1.0], dtype=F64)
    rule = make_rule(name, 0.01, freeze_preconditioner_at=freeze, **hyper)
    ps = []
    for t in range(steps):
        if t == freeze + 1:
            lam = float((h / ps[-1]).max())  # λ₁(P^{-1/2} H P^{-1/2}): H and P diagonal
            rule.lr = side * rule.threshold_for(1.0, **rule.hyper) / lam  # threshold ∝ 1/η
            scale = float(x.norm())
        ps.append(rule.preconditioner(h * x, x))
        x = x + rule.step(h * x, x)
    assert all(torch.equal(q, ps[freeze]) for q in ps[freeze:])  # P held fixed
    assert lam == pytest.approx(side * rule.threshold, rel=1e-12)
    return float(x.norm()) / scale


@pytest.mark.parametrize("name,hyper", [("adam", {}), ("adam", {"beta1": 0.5}),
                                        ("adamw", {"weight_decay": 0.0}),
                                        ("rmsprop", {})])
def test_frozen_preconditioner_threshold_on_a_quadratic(name, hyper):
    shrink, grow = (_frozen_quadratic_run(name, side, **hyper) for side in (0.98, 1.02))
    print(f"{name} {hyper}: |x_T|/|x_freeze| at 0.98× {shrink:.1e}, at 1.02× {grow:.1e}")
    assert shrink < 1e-3 and grow > 1e3


def test_freeze_at_a_later_step_holds_p_and_moves_x():
    rule = make_rule("adam", 0.05, freeze_preconditioner_at=5)
    h = torch.tensor([3.0, 0.5], dtype=F64)
    x, ps = torch.tensor([1.0, 1.0], dtype=F64), []
    for _ in range(12):
        ps.append(rule.preconditioner(h * x, x))
        x = x + rule.step(h * x, x)
    assert not torch.equal(ps[4], ps[5])  # P_5 still sees g_5
    assert all(torch.equal(q, ps[5]) for q in ps[5:])
    back = make_rule("adam", 0.05, freeze_preconditioner_at=5)
    back.load_state_dict(rule.state_dict())
    assert torch.equal(back.preconditioner(h * x, x), ps[5])


# ---------------------------------------------------------------- docs/theory.md §6 identities
def _random_p(seed, d, dense):
    rng = np.random.default_rng(seed + 11)
    if not dense:
        return torch.tensor(rng.uniform(0.3, 3.0, d), dtype=F64)  # (d,)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return torch.tensor((Q * rng.uniform(0.3, 3.0, d)) @ Q.T, dtype=F64)  # (d, d) SPD


def _p_steps(obj, x, p, step_len, n):
    """x_0..x_n of preconditioned GD with η chosen so that |s_0| = step_len."""
    lr = step_len / float(P.p_solve(p, obj.grad(x)).norm())
    xs = [x]
    for _ in range(n):
        xs.append(P.preconditioned_step(obj, xs[-1], lr, p))
    return lr, xs


RESIDUALS: dict[str, float] = {}


def _check(name, value, bound=1e-12):
    RESIDUALS[name] = max(RESIDUALS.get(name, 0.0), float(value))
    assert value <= bound, (name, value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(2, 5), step_len=st.floats(0.02, 0.4),
       dense=st.booleans())
def test_preconditioned_identities_on_random_polynomials(seed, d, step_len, dense):
    obj, x = random_polynomial(seed, d)
    p = _random_p(seed, d, dense)
    assume(float(obj.grad(x).norm()) > 1e-2)
    lr, xs = _p_steps(obj, x, p, step_len, 4)
    steps = [b - a for a, b in zip(xs, xs[1:], strict=False)]
    losses = [float(obj.value(z)) for z in xs]
    assume(all(float(s.norm()) > 1e-3 * step_len for s in steps))
    # the loss formulas difference two losses: keep their rounding floor well below 1e-12
    dls = [abs(b - a) for a, b in zip(losses, losses[1:], strict=False)]
    scale = max(abs(v) for v in losses)
    assume(min(dls) > 1e-3 * scale)
    # §6.1: the P-step is the critical point of A^P in x
    gx, _ = P.preconditioned_edge_coupling_grads(obj, xs[0], xs[1], lr, p)
    _check("grad_x", float(gx.norm()) / float(obj.grad(xs[0]).norm()))
    _check("pair", P.preconditioned_pair_residual(obj, xs[0], xs[1], lr, p))
    kappas, sq_p = [], []
    for t, s in enumerate(steps):
        quad = D.segment_quadrature(obj, xs[t], s)
        if t + 1 < len(steps):  # §6.2 the recurrence with H̄ by (exact) quadrature
            _check("recurrence",
                   P.preconditioned_recurrence_residual(s, steps[t + 1], quad.hbar_s, lr, p))
        q = P.p_norm_sq(s, p)
        k_quad = P.preconditioned_curvature(quad, q)  # §6.3 sᵀH̃s/|s|²_P ...
        k_loss = P.preconditioned_effective_curvature(losses[t], losses[t + 1], q, lr)
        k_any = P.preconditioned_effective_curvature(losses[t], losses[t + 1], q, lr,
                                                     g_dot_s=float(obj.grad(xs[t]) @ s))
        _check("kappa_quad_vs_loss", abs(k_quad - k_loss) / max(abs(k_loss), 2 / lr))
        _check("kappa_general_form", abs(k_any - k_loss) / max(abs(k_loss), 2 / lr))
        kappas.append(k_quad)
        sq_p.append(q)
    lhs, rhs = P.preconditioned_forcing(losses, sq_p, kappas, lr)  # telescoping
    _check("telescoping", abs(lhs - rhs) / abs(rhs))
    # §6.4 localisation: φ^P(τ̃) = κ^P and κ^P ≤ λ₁(P^{-1/2}H(x+τ̃s)P^{-1/2}) (dense check)
    loc = P.preconditioned_localisation(obj, xs[0], steps[0], p)
    assert 0.0 <= loc.tau_tilde <= 1.0 and loc.bound_holds
    _check("phi_at_tau_tilde", abs(loc.phi_at_tau_tilde - loc.kappa) / max(1.0, abs(loc.kappa)),
           1e-11)
    H = obj.hessian(xs[0] + loc.tau_tilde * steps[0])
    w, Q = torch.linalg.eigh(p) if dense else (p, None)
    R = (Q * w.rsqrt()) @ Q.T if dense else torch.diag(p.rsqrt())
    lam = float(torch.linalg.eigvalsh(R @ H @ R)[-1])
    _check("sharpness_vs_dense", abs(loc.sharpness_at_tau_tilde - lam) / max(1.0, abs(lam)), 1e-8)
    assert loc.kappa <= lam + 1e-10 * max(1.0, abs(lam))


def test_preconditioner_drift_is_the_whole_fixed_p_residual():
    # RMSProp-form steps s_t = −ηP_t⁻¹g_t with P_t changing: the fixed-P_t recurrence misses
    # exactly η(P_t⁻¹ − P_{t+1}⁻¹)g_{t+1}
    obj, x = random_polynomial(5, 4)
    lr, p0, p1 = 0.05, _random_p(1, 4, False), _random_p(2, 4, False)
    s0 = -lr * P.p_solve(p0, obj.grad(x))
    g1 = obj.grad(x + s0)
    s1 = -lr * P.p_solve(p1, g1)
    hbar = D.segment_quadrature(obj, x, s0).hbar_s
    fixed = P.preconditioned_recurrence_residual(s0, s1, hbar, lr, p0)
    drift = P.preconditioner_drift(g1, s1, lr, p0, p1)
    assert fixed > 1e-2 and abs(fixed - drift) <= 1e-12 * fixed
    assert P.preconditioned_recurrence_residual(s0, -lr * P.p_solve(p0, g1), hbar, lr, p0) < 1e-12
