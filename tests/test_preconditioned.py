"""Preconditioned sharpness λ(P^{-1/2} H P^{-1/2}) along adaptive runs, and the frozen P."""

from __future__ import annotations

import pytest
import torch

from eoskit import store
from eoskit.config import RunConfig
from eoskit.eigs.preconditioned import preconditioned_matvec
from eoskit.optim import UpdateRule, rule_for
from eoskit.problem import build_problem
from eoskit.train import train

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
    rule = UpdateRule(name, 0.01, freeze_preconditioner_at=freeze, **hyper)
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
    rule = UpdateRule("adam", 0.05, freeze_preconditioner_at=5)
    h = torch.tensor([3.0, 0.5], dtype=F64)
    x, ps = torch.tensor([1.0, 1.0], dtype=F64), []
    for _ in range(12):
        ps.append(rule.preconditioner(h * x, x))
        x = x + rule.step(h * x, x)
    assert not torch.equal(ps[4], ps[5])  # P_5 still sees g_5
    assert all(torch.equal(q, ps[5]) for q in ps[5:])
    back = UpdateRule("adam", 0.05, freeze_preconditioner_at=5)
    back.load_state_dict(rule.state_dict())
    assert torch.equal(back.preconditioner(h * x, x), ps[5])
