"""The lean tracker and its thick-restart Lanczos: rows only, residuals from the relation.

References: dense float64 ``eigvalsh`` of ``H`` and of ``P^{-1/2} H P^{-1/2}``; residuals,
projected matrices and power steps formed from the dense ``H`` and the stacked rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eoskit.eigs import LeanTracker, SharedTracker
from eoskit.eigs.thick_lanczos import ThickLanczos
from eoskit.eigs.warm_stopping import CRITERIA, carried_next


def _operator(d: int = 120, seed: int = 0):
    """A symmetric H with a clustered top (10, 9.5, 9) over a bulk in [-1, 4], and a P."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64, generator=g))
    ev = torch.cat([torch.tensor([10.0, 9.5, 9.0], dtype=torch.float64),
                    torch.rand(d - 3, dtype=torch.float64, generator=g) * 5 - 1])
    p = torch.rand(d, dtype=torch.float64, generator=g) + 0.5
    return Q @ torch.diag(ev) @ Q.T, p


def _top(H, p=None) -> float:
    A = H if p is None else H / torch.outer(p.sqrt(), p.sqrt())
    return float(torch.linalg.eigvalsh(A)[-1])


def _check_relation(b: ThickLanczos, H, p):
    """T = WᵀHW, rows P-orthonormal, and each Ritz residual's P-norm is |bᵀs|."""
    W = torch.stack(b.rows, 1)
    P = torch.ones_like(p) if b.p is None else p
    eye = torch.eye(len(b), dtype=torch.float64)
    torch.testing.assert_close(W.T @ (P[:, None] * W), eye, atol=1e-10, rtol=0)
    torch.testing.assert_close(b.T, W.T @ H @ W, atol=1e-10, rtol=0)
    th, S, resid = b.ritz()
    for i in range(len(th)):
        z = W @ S[:, i]
        r = (H @ z) / P - th[i] * z
        assert abs(float(r @ (P * r)) ** 0.5 - resid[i]) <= 1e-9 * th[0]


@pytest.mark.parametrize("preconditioned", [False, True])
def test_residual_norms_from_the_relation_are_the_explicit_ones_before_and_after_a_restart(
        preconditioned):
    H, p = _operator()
    b = ThickLanczos(lambda v: H @ v, p if preconditioned else None)
    b.begin(torch.randn(len(p), dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    for _ in range(5):
        assert b.expand()
    _check_relation(b, H, p)
    b.compress(b.ritz()[1][:, :2])  # a thick restart keeps two Ritz vectors
    _check_relation(b, H, p)
    for _ in range(3):
        assert b.expand()
    _check_relation(b, H, p)
    assert b.products == 8


@pytest.mark.parametrize("preconditioned", [False, True])
def test_the_next_start_is_the_ritz_vectors_power_step_in_its_own_space(preconditioned):
    H, p = _operator()
    P = p if preconditioned else torch.ones_like(p)
    b = ThickLanczos(lambda v: H @ v, p if preconditioned else None)
    b.begin(torch.ones(len(p), dtype=torch.float64))
    for _ in range(4):
        b.expand()
    th, S, _ = b.ritz()
    z = torch.stack(b.rows, 1) @ S[:, 0]
    ritz, (start,) = b.take_top(1, vectors=True)
    own_z = P.sqrt() * z  # A's vector for the row z
    step = (H @ z) / P.sqrt()  # A·(P^{1/2} z) = P^{-1/2} H z
    torch.testing.assert_close(ritz[0], own_z / own_z.norm(), atol=1e-12, rtol=0)
    torch.testing.assert_close(start, step / step.norm(), atol=1e-10, rtol=0)
    assert b.rows == [] and b.f is None


@pytest.mark.parametrize("criterion", CRITERIA)
def test_lean_measurements_follow_a_drifting_operator(criterion):
    """Raw and preconditioned top values along a drifting H and P, against dense ones; the
    ``change`` test promises no bound, and is held to 10·tol (the residual test at 1e-6
    would take a 3-row search past its product limit on this cluster)."""
    tol = 1e-4 if criterion == "residual" else 1e-6
    H, p = _operator(seed=1)
    g = torch.Generator().manual_seed(2)
    tr = LeanTracker(1, tol, criterion=criterion, eigenvectors=False)
    for m in range(5):
        out = tr.measure(lambda v, H=H: H @ v, len(p), torch.float64, "cpu", p)
        allowed = tol * (10 if criterion == "change" else 1)
        for target, ref in (("raw", _top(H)), ("pre", _top(H, p))):
            res = out[target]
            assert abs(res.eigenvalues[0] / ref - 1) <= allowed, (m, target)
            assert res.converged and res.eigenvectors is None
            if criterion == "residual":
                assert res.residuals[0] <= tol * res.eigenvalues[0]
        assert tr.last_info["warm"] == (m > 0)
        E = torch.randn(len(p), len(p), dtype=torch.float64, generator=g) * 0.01
        H = H + E + E.T
        p = p * (1 + 0.01 * torch.rand(len(p), dtype=torch.float64, generator=g))


def test_a_start_that_spans_an_invariant_subspace_is_caught_by_the_cold_probe():
    """The carried vector is an eigenvector of the new H, no longer the top one: the Krylov
    space of a warm search stays on it; the probe every measurement finds the top."""
    d = 60
    base = torch.diag(torch.linspace(0.0, 5.0, d, dtype=torch.float64))
    jump = base.clone()
    jump[0, 0] = 20.0  # e_0 was the bottom direction; now it is the top
    got = {}
    for every in (0, 1):
        tr = LeanTracker(1, 1e-8, restart_every=every, quantities=1)
        tr.measure(lambda v: base @ v, d, torch.float64, "cpu")
        got[every] = float(tr.measure(lambda v: jump @ v, d, torch.float64,
                                      "cpu")["raw"].eigenvalues[0])
        if every:
            assert tr.last_info["probe"] == "adopted"
    assert got[0] == pytest.approx(5.0, rel=1e-8) and got[1] == pytest.approx(20.0, rel=1e-8)


def test_a_warm_search_cut_short_is_replaced_by_a_cold_one():
    """d = 6 and room for 6 rows: a cold search spans the whole space within its 2·3
    products; a warm one from the last top vector of a rotated H does not reach 1e-10 in 3."""
    g = torch.Generator().manual_seed(4)
    D = torch.diag(torch.arange(1.0, 7.0, dtype=torch.float64))
    Q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=g))
    H2 = Q @ D @ Q.T
    tr = LeanTracker(1, 1e-10, max_matvecs=3, max_vectors=20, quantities=1, restart_every=0)
    tr.measure(lambda v: D @ v, 6, torch.float64, "cpu")
    out = tr.measure(lambda v: H2 @ v, 6, torch.float64, "cpu")
    assert tr.last_info["cold_after_warm"] and tr.last_info["products"] > 3
    assert out["raw"].eigenvalues[0] == pytest.approx(6.0, rel=1e-10)


def test_the_bound_must_hold_a_search_and_the_measured_quantities():
    assert LeanTracker(1, 1e-3, eigenvectors=False).max_vectors == 5
    assert LeanTracker(2, 1e-3, eigenvectors=True).max_vectors == 4 + 4 + 1
    with pytest.raises(ValueError, match="at least 5"):
        LeanTracker(1, 1e-3, max_vectors=4, eigenvectors=False)
    tr = LeanTracker(1, 1e-3, quantities=1)
    H, p = _operator()
    with pytest.raises(ValueError, match="sized for 1 quantity"):
        tr.measure(lambda v: H @ v, len(p), torch.float64, "cpu", p)
    assert np.isfinite(tr.max_vectors)


def test_a_float32_search_carries_its_starts_in_bfloat16_at_no_cost_in_products(monkeypatch):
    """The carried starts are bfloat16 below float64 (half the vectors kept between and
    beside searches); along a drifting float32 operator the warm values stay within tol and
    take the products float32 starts take, give or take one."""
    import eoskit.eigs.lean_tracker as lean

    def run():
        H, p = _operator(seed=3)
        g = torch.Generator().manual_seed(4)
        tr = LeanTracker(1, 1e-4, criterion="residual", eigenvectors=False, restart_every=0)
        products = []
        for _ in range(5):
            H32 = H.float()
            out = tr.measure(lambda v, H32=H32: H32 @ v, len(p), torch.float32, "cpu", p)
            for target, ref in (("raw", _top(H)), ("pre", _top(H, p))):
                assert abs(out[target].eigenvalues[0] / ref - 1) <= 1e-4
            products.append(out["raw"].n_matvecs)
            dtypes = {c.dtype for c in tr.carried.values()}
            E = torch.randn(len(p), len(p), dtype=torch.float64, generator=g) * 0.01
            H = H + E + E.T
        return products, dtypes

    bf16, bf16_dtypes = run()
    monkeypatch.setattr(lean, "carry_dtype", lambda work: work)
    f32, f32_dtypes = run()
    assert bf16_dtypes == {torch.bfloat16} and f32_dtypes == {torch.float32}
    assert all(abs(a - b) <= 1 for a, b in zip(bf16[1:], f32[1:], strict=True)), (bf16, f32)
    assert lean.carry_dtype(torch.float64) == torch.float64


def _counted(H_of):
    """A product ``v ↦ H v`` of the operator ``H_of()`` returns now, counting calls."""
    count = [0]

    def hvp(v):
        count[0] += 1
        return H_of() @ v

    return hvp, count


@pytest.mark.parametrize("raw", [True, False], ids=["both", "precond-only"])
def test_capped_warm_measurements_stop_at_the_cap_and_state_their_error(raw):
    """``max_warm_products``: a warm measurement takes the cap, split between the searches,
    and no cold search after it; each value is a Ritz value (below the dense top), is not
    converged at a tol out of its reach, and its error estimate holds the true error here
    (exact products, a slow drift, a gap the carried λ₂ estimate gets right)."""
    tol, cap = 1e-8, 3
    H, p = _operator(seed=1)
    g = torch.Generator().manual_seed(2)
    state = {"H": H}
    hvp, count = _counted(lambda: state["H"])
    tr = LeanTracker(1, tol, restart_every=0, max_warm_products=cap, eigenvectors=False)
    for m in range(6):
        count[0] = 0
        out = tr.measure(hvp, len(p), torch.float64, "cpu", p, raw=raw)
        if m:
            assert count[0] == cap and "cold_after_warm" not in tr.last_info, m
            assert tr.last_info["by_quantity"] == ({"raw": 1, "pre": 2} if raw else
                                                     {"pre": 3})
        for target, ref in (("raw", _top(state["H"])), ("pre", _top(state["H"], p))):
            if target not in out:
                continue
            got = out[target]
            err, bound = ref - got.eigenvalues[0], got.error_estimates[0]
            assert -1e-12 <= err <= bound, (m, target, err, bound)
            if m:
                assert not got.converged and bound > tol * abs(got.eigenvalues[0]), (m, target)
        E = torch.randn(len(p), len(p), dtype=torch.float64, generator=g) * 0.002
        state["H"] = state["H"] + E + E.T


def test_what_one_capped_search_leaves_goes_to_the_next():
    """H fixed: the raw search starts on its top vector and settles in one product of its
    two; the preconditioned one, whose P moved, takes the other three of the cap."""
    H, p = _operator(seed=3)
    hvp, count = _counted(lambda: H)
    tr = LeanTracker(1, 1e-8, restart_every=0, max_warm_products=4, eigenvectors=False)
    tr.measure(hvp, len(p), torch.float64, "cpu", p)
    out = tr.measure(hvp, len(p), torch.float64, "cpu", 3 * p * torch.linspace(
        0.2, 1.0, len(p), dtype=torch.float64))
    assert tr.last_info["by_quantity"] == {"raw": 1, "pre": 3}
    assert out["raw"].converged and not out["pre"].converged
    assert out["raw"].eigenvalues[0] == pytest.approx(_top(H), rel=1e-8)


def test_a_cap_below_one_product_per_search_is_refused():
    with pytest.raises(ValueError, match="at least 2 for 2 quantities"):
        LeanTracker(1, 1e-3, max_warm_products=1)
    assert LeanTracker(1, 1e-3, max_warm_products=1, quantities=1).max_warm_products == 1
    with pytest.raises(ValueError, match="at least 1, got 0"):
        LeanTracker(1, 1e-3, max_warm_products=0, quantities=1)


@pytest.mark.parametrize("tracker", [LeanTracker, SharedTracker])
def test_capped_estimates_hold_while_the_whole_spectrum_shrinks(tracker):
    """A spectrum that shrinks tenfold (top 1, 0.9, 0.85 times a falling scale, as the raw
    sharpness fell under AdamW on the issue-22 GPT-2) while its eigenvectors turn: each
    capped warm value stays within its stated error estimate (dense eigvalsh). Carrying
    λ₂ down by the top value's absolute fall kept the first gap, and the estimates fell
    below the errors from the 26th measurement on."""
    d = 60
    g = torch.Generator().manual_seed(0)
    ev = torch.cat([torch.tensor([1.0, 0.9, 0.85], dtype=torch.float64),
                    torch.rand(d - 3, dtype=torch.float64, generator=g) * 0.6])
    Q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64, generator=g))
    G = torch.randn(d, d, dtype=torch.float64, generator=g)
    turn = torch.linalg.matrix_exp(0.01 * (G - G.T))
    tr = tracker(1, 1e-3, quantities=1, max_warm_products=2, restart_every=0,
                 eigenvectors=False)
    for t in range(30):
        H = 3.0 * 0.93 ** t * Q @ torch.diag(ev) @ Q.T
        got = tr.measure(lambda v, H=H: H @ v, d, torch.float64, "cpu")["raw"]
        err = _top(H) - float(got.eigenvalues[0])
        assert -1e-12 <= err <= float(got.error_estimates[0]) * (1 + 1e-9), (t, err)
        Q = turn @ Q


def test_the_carried_next_value_rises_by_the_top_values_rise_and_falls_in_proportion():
    """After a warm solve λ₂'s estimate follows the top value: up 1 → 2 by the same amount
    (0.9 → 1.9), down 2 → 1 in proportion (1.8 → 0.9, not 0.8), never below the solve's own
    θ₂ (a lower bound); a cold solve's own θ₂ raised by its error estimate replaces it."""
    def after(top, last_top, last_next, own=-5.0, cold=False):
        return carried_next(np.array([top, own]), np.array([0.0, 0.01]), 1, cold,
                            np.array([last_top]), last_next)

    assert after(2.0, 1.0, 0.9) == pytest.approx(1.9)
    assert after(1.0, 2.0, 1.8) == pytest.approx(0.9)
    assert after(1.0, 2.0, 1.8, own=0.95) == pytest.approx(0.95)
    assert after(1.0, 2.0, 1.8, own=0.5, cold=True) == pytest.approx(0.51)
    assert after(1.0, 2.0, -0.5) == pytest.approx(-1.5)  # no proportion below zero
