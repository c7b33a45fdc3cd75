"""Run summaries and the per-step columns they are built from, against independent
recomputations (never against the columns they are computed from)."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from eoskit import store
from eoskit.diagnostics import ForcingTracker
from eoskit.metrics.summary import forcing_gap_curve, forcing_gap_slope, forcing_summary, summarize
from eoskit.optim import make_rule
from eoskit.training.config import RunConfig
from eoskit.training.loop import train
from eoskit.training.run_problem import build_problem

TINY = dict(dataset="digits", n_train=48, n_test=0, width=6, depth=1, dtype="float64",
            steps=12, lr=0.5, checkpoint_every=0, sharpness_every=0)


# ---------------------------------------------------------------- onset and plateau
def test_plateau_is_the_median_from_the_onset_on():
    sharp = [1.0, 5.0, None, 9.4, 9.6, 10.2, None, 9.9, 19.0]
    rows = [{"step": t, "loss": 1.0, "sharpness": v} for t, v in enumerate(sharp)]
    s = summarize(rows, 10.0, "completed")
    assert s["eos_onset_step"] == 4  # the first measured value ≥ 0.95 × 10
    after = [9.6, 10.2, 9.9, 19.0]  # from the onset on, unmeasured steps skipped
    # median 10.05 ≠ mean 12.175 ≠ median including the step before the onset (9.9)
    assert s["sharpness_after_onset_median"] == statistics.median(after) == 10.05
    assert s["sharpness_after_onset_max"] == 19.0
    assert s["sharpness_after_onset_median_over_threshold"] == pytest.approx(1.005, rel=1e-15)
    assert s["initial_sharpness"] == 1.0 and s["final_sharpness"] == 19.0
    assert summarize(rows[:4], 10.0, "running")["eos_onset_step"] is None


def test_kappa_after_onset_is_weighted_by_the_squared_steps():
    rows = [{"step": t, "loss": 1.0, "sharpness": v, "eff_curvature": k, "step_norm": n}
            for t, (v, k, n) in enumerate([(1.0, 100.0, 1.0), (9.6, 2.0, 1.0),
                                           (9.7, 5.0, 2.0), (9.8, None, 3.0)])]
    s = summarize(rows, 10.0, "completed")
    assert s["eff_curvature_weighted_mean_after_onset"] == pytest.approx((2 + 4 * 5) / 5)


# ---------------------------------------------------------------- the columns, rerun by hand
def _plain_gd(cfg: RunConfig):
    """x_t, L(x_t), g(x_t) for t = 0..T by x_{t+1} = x_t − η g(x_t), outside the trainer."""
    obj = build_problem(cfg).train
    x = build_problem(cfg).x0.clone()
    xs, losses, grads = [], [], []
    for _ in range(cfg.steps + 1):
        loss, g = obj.value_and_grad(x)
        xs.append(x), losses.append(float(loss)), grads.append(g)
        x = x - cfg.lr * g
    return xs, losses, grads


def test_gd_rows_match_an_independent_rerun(tmp_path):
    cfg = RunConfig(**TINY)
    summary = train(cfg, tmp_path, progress=False)
    rows = store.read_rows(tmp_path / "metrics.csv")
    xs, losses, grads = _plain_gd(cfg)
    eta = cfg.lr
    for t, r in enumerate(rows):
        s = xs[t + 1] - xs[t]
        assert r["loss"] == pytest.approx(losses[t], rel=1e-12)
        # |s_t| = ‖x_{t+1} − x_t‖ = η|g_t|: the step, not the gradient
        assert r["step_norm"] == pytest.approx(float(s.norm()), rel=1e-12)
        assert r["step_norm"] == pytest.approx(eta * float(grads[t].norm()), rel=1e-12)
        kappa = 2 / eta + 2 * (losses[t + 1] - losses[t]) / float(s @ s)
        assert r["eff_curvature"] == pytest.approx(kappa, rel=1e-9)
    final = torch.load(tmp_path / "params_final.pt")
    assert torch.allclose(final, xs[-1], rtol=1e-12, atol=1e-14)
    sq = [float((b - a) @ (b - a)) for a, b in zip(xs, xs[1:], strict=False)]
    ratio = 2 * (losses[0] - losses[-1]) / sum(sq)
    assert summary["forcing_loss_drop_ratio"] == pytest.approx(ratio, rel=1e-10)
    kappas = [2 / eta + 2 * (b - a) / q for a, b, q in zip(losses, losses[1:], sq, strict=False)]
    assert summary["eff_curvature_weighted_mean"] == pytest.approx(
        sum(q * k for q, k in zip(sq, kappas, strict=True)) / sum(sq), rel=1e-10)


@pytest.mark.parametrize("name", ["polyak", "nesterov"])
def test_momentum_kappa_is_the_rayleigh_quotient_on_a_quadratic(name):
    # on L = ½ xᵀAx the second-order form is exact: κ_t = s_tᵀ A s_t / |s_t|²
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64, generator=gen))
    A = q @ torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.5, 0.1], dtype=torch.float64)) @ q.T
    rule = make_rule(name, 0.2, 0.6)
    x = torch.randn(5, dtype=torch.float64, generator=gen)
    for _ in range(15):
        g = A @ x
        s = rule.step(g)
        loss, loss_next = float(0.5 * x @ A @ x), float(0.5 * (x + s) @ A @ (x + s))
        kappa = rule.effective_curvature(loss, loss_next, float(s @ s), rule.curvature_terms(g, s))
        assert kappa == pytest.approx(float(s @ A @ s) / float(s @ s), rel=1e-9, abs=1e-12)
        assert 0.1 - 1e-9 <= kappa <= 3.0 + 1e-9
        x = x + s


def test_polyak_rows_match_an_independent_rerun(tmp_path):
    cfg = RunConfig(**{**TINY, "optimizer": "polyak", "beta": 0.5, "lr": 0.2})
    train(cfg, tmp_path, progress=False)
    rows = store.read_rows(tmp_path / "metrics.csv")
    obj = build_problem(cfg).train
    x, b = build_problem(cfg).x0.clone(), None
    loss, g = obj.value_and_grad(x)
    for r in rows:
        b = g.clone() if b is None else cfg.beta * b + g  # heavy ball, PyTorch's form
        s = -cfg.lr * b
        loss_next, g_next = obj.value_and_grad(x + s)
        assert r["step_norm"] == pytest.approx(float(s.norm()), rel=1e-12)
        kappa = 2 * (float(loss_next) - float(loss) - float(g @ s)) / float(s @ s)
        assert r["eff_curvature"] == pytest.approx(kappa, rel=1e-9)
        x, loss, g = x + s, loss_next, g_next


def test_float64_run_diagnostics_hold_to_1e_10(tmp_path):
    cfg = RunConfig(**{**TINY, "steps": 9, "diagnose_every": 4})
    summary = train(cfg, tmp_path, progress=False)
    rows = store.read_rows(tmp_path / "diagnostics.csv")
    assert [r["step"] for r in rows] == [0, 4, 8]
    for r in rows:
        for key in ("recurrence_residual", "loss_change_residual", "kappa_mismatch"):
            assert r[key] <= 1e-10, (key, r[key])
        assert r["smooth_flag"] is True and r["bound_holds"] is True
    assert summary["diagnostics"]["max_kappa_mismatch"] <= 1e-10


# ---------------------------------------------------------------- the forcing summary
def test_forcing_summary_names():
    tr = ForcingTracker(lr=0.1)
    tr.update(loss_t=2.0, loss_next=0.72, kappa=4.0, step_norm_sq=0.16)
    out = forcing_summary(tr)
    assert out["forcing_weighted_gap"] == pytest.approx(16.0)
    assert out["forcing_loss_drop_ratio"] == pytest.approx(16.0)
    assert out["forcing_bookkeeping_error"] <= 1e-15 and out["forcing_gap_slope"] is None
    assert not {"forcing_lhs", "forcing_rhs", "forcing_relative_error"} & set(out)  # removed


def _rows(losses, step=1.0):
    return [{"step": t, "loss": v, "step_norm": step} for t, v in enumerate(losses)]


def test_forcing_gap_slope_tells_bounded_from_unbounded_loss():
    # bounded below: L_T → 0.5, so 2(L_0 − L_T)/S_T ~ 1/S_T
    bounded = _rows([0.5 + math.exp(-0.2 * t) for t in range(200)])
    assert forcing_gap_slope(*forcing_gap_curve(bounded)) == pytest.approx(-1.0, abs=1e-3)
    # a loss falling for ever at a constant rate: the gap stays put, slope 0
    falling = _rows([10.0 - 0.01 * t for t in range(200)])
    assert forcing_gap_slope(*forcing_gap_curve(falling)) == pytest.approx(0.0, abs=1e-9)
    # the curve itself: S_T and the gap at T, from loss and step_norm only
    sq, gap = forcing_gap_curve(_rows([3.0, 2.0, 2.5, 1.0], step=2.0))
    assert sq == [4.0, 8.0, 12.0] and gap == [0.5, 0.125, 2 * 2.0 / 12]
    # a diverged tail ends the curve; too few points give no slope
    assert forcing_gap_curve(_rows([1.0, 0.5, math.nan, 0.1])) == ([1.0], [1.0])
    assert forcing_gap_slope(*forcing_gap_curve(_rows([1.0, 0.5, 0.4]))) is None


def test_forcing_gap_slope_of_a_run_is_in_its_summary(tmp_path):
    summary = train(RunConfig(**{**TINY, "steps": 40}), tmp_path, progress=False)
    rows = store.read_rows(tmp_path / "metrics.csv")
    slope = forcing_gap_slope(*forcing_gap_curve(rows))
    # (its value says whether S_T still grows: here GD converges below the edge, S_T levels
    # off with L_T and the slope is no −1; at the edge S_T grows and the slope tends to −1)
    assert slope is not None and math.isfinite(slope)
    # written by the trainer once it passes the rows (see forcing_summary)
    assert summary.get("forcing_gap_slope") in (None, pytest.approx(slope, rel=1e-12))
    assert (tmp_path / "plots" / "forcing_gap.png").read_bytes()[:4] == b"\x89PNG"
