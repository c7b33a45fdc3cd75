"""diagnostics.csv of adaptive runs (eoskit.diagnostics.adaptive, docs/theory.md §6).

With P frozen (``freeze_preconditioner_at``) every identity holds along a float64
network run; with plain Adam the fixed-P recurrence does not, and ``precond_drift``
accounts for the difference. References: the step recurrence is checked against the
rule's actual next step (not rebuilt from the same formula), κ^P against the loss
difference, the sharpness against a dense ``eigvalsh(P^{-1/2} H P^{-1/2})``.
"""

from __future__ import annotations

import math

import pytest
import torch

from eoskit import store
from eoskit.diagnostics import ADAPTIVE_DIAGNOSTIC_COLUMNS, diagnose_adaptive_step
from eoskit.objective import FunctionObjective
from eoskit.optim import make_rule
from eoskit.training.config import RunConfig
from eoskit.training.loop import train

TINY = dict(dataset="digits", n_train=48, n_test=0, model="fc-tanh", width=6, depth=1,
            dtype="float64", steps=16, sharpness_every=0, eval_every=0, checkpoint_every=0,
            diagnose_every=3, lr=0.01)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _rows(tmp_path, **kw):
    cfg = RunConfig(**TINY, **kw)
    summary = train(cfg, tmp_path, progress=False)
    assert summary["status"] == "completed"
    rows = store.read_rows(tmp_path / "diagnostics.csv")
    assert list(rows[0]) == ADAPTIVE_DIAGNOSTIC_COLUMNS
    return rows


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_frozen_p_identities_hold_along_a_float64_network_run(tmp_path, optimizer):
    rows = _rows(tmp_path, optimizer=optimizer, freeze_preconditioner_at=2)
    frozen = [r for r in rows if r["step"] >= 3]
    assert len(frozen) >= 4
    for r in frozen:
        assert r["p_frozen"] is True and r["precond_drift"] == 0.0
        assert r["kappa_mismatch"] <= 1e-8 and r["loss_change_residual"] <= 1e-8
        assert r["bound_holds"] is True and r["smooth_flag"] is True
        if not _missing(r["recurrence_residual"]):  # the last step has no s_{t+1}
            assert r["recurrence_residual"] <= 1e-8
    assert any(not _missing(r["recurrence_residual"]) for r in frozen)


def test_plain_adam_reports_the_drift_instead_of_pretending(tmp_path):
    rows = [r for r in _rows(tmp_path, optimizer="adam")
            if not _missing(r["recurrence_residual"])]
    for r in rows:
        assert r["p_frozen"] is False
        # the one-step identities hold for any P (it is the step's metric) ...
        assert r["kappa_mismatch"] <= 1e-8 and r["bound_holds"] is True
        # ... the recurrence does not; the drift column is that failure, up to quadrature
        assert r["recurrence_residual"] > 1e-6 and r["precond_drift"] > 1e-6
        assert r["recurrence_residual_fixed_p"] <= 1e-8
        assert abs(r["recurrence_residual"] - r["precond_drift"]) <= 1e-8


def test_one_step_against_independent_references():
    gen = torch.Generator().manual_seed(3)
    A = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    obj = FunctionObjective(lambda x: (x @ A @ x) ** 2 / 8 + (torch.tanh(x) ** 2).sum(), 4)
    rule = make_rule("adam", 0.05, beta1=0.5)
    x = torch.randn(4, generator=gen, dtype=torch.float64)
    for _ in range(3):  # a few steps so P and m are not trivial
        x = x + rule.step(obj.grad(x), x)
    g = obj.grad(x)
    p_t = rule.preconditioner(g, x)  # before the step: P_t of the step from x
    s = rule.step(g, x)
    row = diagnose_adaptive_step(obj, rule, x, s, x + s, eig_tol=1e-12)
    H = obj.hessian(x)
    r = p_t.rsqrt()
    dense = float(torch.linalg.eigvalsh(r[:, None] * H * r[None, :])[-1])
    assert row["precond_sharpness"] == pytest.approx(dense, rel=1e-9)
    dl = float(obj.value(x + s) - obj.value(x))
    assert row["kappa_p_loss"] == pytest.approx(2 * (dl - float(g @ s)) / float(s @ (p_t * s)),
                                                rel=1e-12)
    assert row["kappa_mismatch"] < 1e-10
    # the true next step from a copy of the rule: the drift is the whole P_{t+1} vs P_t part
    import copy

    g1 = obj.grad(x + s)
    s_next = copy.deepcopy(rule).step(g1, x + s)
    p_next = copy.deepcopy(rule).preconditioner(g1, x + s)
    drift = float(((p_next / p_t - 1) * s_next).norm() / s_next.norm())
    assert row["precond_drift"] == pytest.approx(drift, rel=1e-8)
