"""Tests for eoskit.orbits and eoskit.testfns: orbits, Floquet, reduction, sweep (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eoskit import store
from eoskit.objective import FunctionObjective
from eoskit.objective.failures import ObjectiveError
from eoskit.orbits import (
    BifurcationRow,
    bifurcation_sweep,
    find_minimum,
    find_orbit,
    find_orbit_from_gd,
    floquet_multipliers,
    gd_iterates,
    half_amplitude_coefficient,
    orbit_checks,
    reduce_at_fixed_point,
)
from eoskit.plots.bifurcation_figures import plot_bifurcation
from eoskit.testfns import (
    builtin,
    linear_net_balanced_minimum,
    load_objective,
    parse_vector,
)

F64 = torch.float64


def t(*v):
    return torch.tensor(v, dtype=F64)


@pytest.fixture(scope="module")
def theory():
    p = builtin("theory-example")
    return p, reduce_at_fixed_point(p.objective, p.x_star, k=2)


# ---------------------------------------------------------------- 1. docs/theory.md §5 worked check
def test_theory_example_Q_and_eta_c(theory):
    p, red = theory
    d0 = red.directions[0]
    assert d0.eigenvalue == pytest.approx(2.0, abs=1e-12)
    assert abs(float(d0.eigenvector[0])) == pytest.approx(1.0, abs=1e-10)
    assert d0.eta_c == pytest.approx(1.0, abs=1e-12)
    assert d0.Q == pytest.approx(3 / 12 - 2.6**2 / (4 * 0.5), abs=1e-12)
    assert d0.Q == pytest.approx(-3.13, abs=1e-12)
    assert d0.side == "supercritical" and not d0.degenerate and not d0.singular
    assert half_amplitude_coefficient(p.objective, p.x_star, t(1.0, 0.0)) == pytest.approx(-3.13)
    assert red.directions[1].eigenvalue == pytest.approx(0.5, abs=1e-12)


def test_theory_example_orbit_at_1_01(theory):
    p, red = theory
    d0 = red.directions[0]
    assert d0.predicted_half_amplitude(1.01) ** 2 == pytest.approx(0.0031633, abs=5e-8)
    orb = find_orbit(p.objective, 1.01, *red.predicted_orbit(1.01))
    assert orb.converged and orb.kind == "period_two"
    assert orb.residual < 1e-10
    assert orb.half_amplitude**2 == pytest.approx(0.0031436, abs=5e-8)
    # exact orbit identities
    assert orb.orbit_checks["averaged_hessian"] < 1e-10
    assert orb.orbit_checks["kappa_sum"] < 1e-10
    assert orb.orbit_checks["kappa_loss_form"] < 1e-10
    # supercritical: the orbit past eta_c is stable
    assert orb.stable and orb.max_multiplier < 1
    # the pair really is a period-two orbit of GD
    f = p.objective
    y1 = orb.x - 1.01 * f.grad(orb.x)
    x2 = y1 - 1.01 * f.grad(y1)
    assert torch.allclose(y1, orb.y, atol=1e-10) and torch.allclose(x2, orb.x, atol=1e-10)


def test_theory_example_gd_settles_on_orbit_at_1_03(theory):
    p, red = theory
    x0 = t(0.01, 0.0)
    xa, xb = gd_iterates(p.objective, x0, 1.03, 3000)
    a2_gd = float((xa - xb).norm() / 2) ** 2
    assert a2_gd == pytest.approx(0.009136, abs=2e-6)
    orb = find_orbit(p.objective, 1.03, xa, xb)
    assert orb.kind == "period_two" and orb.converged and orb.stable
    assert orb.half_amplitude**2 == pytest.approx(0.0091358, abs=1e-7)
    a2_pred = red.directions[0].predicted_half_amplitude(1.03) ** 2
    assert a2_pred == pytest.approx(0.009305, abs=1e-6)


def test_prediction_error_shrinks_like_a4(theory):
    p, red = theory
    d0 = red.directions[0]
    a2_pred, err = [], []
    for delta in np.geomspace(2e-3, 2e-2, 5):
        lr = d0.eta_c * (1 + delta)
        orb = find_orbit(p.objective, lr, *red.predicted_orbit(lr))
        assert orb.converged and orb.kind == "period_two"
        a2p = d0.predicted_half_amplitude(lr) ** 2
        a2_pred.append(a2p)
        err.append(abs(orb.half_amplitude**2 - a2p))
    slope = np.polyfit(np.log(a2_pred), np.log(err), 1)[0]
    # |a²_meas − a²_pred| ∝ (a²)² = a⁴
    assert slope == pytest.approx(2.0, abs=0.15)


def test_rough_point_start_fixed_point_or_deflated_orbit(theory):
    p, _ = theory
    x0 = t(0.01, 0.0)
    plain = find_orbit(p.objective, 1.03, x0)  # y0 = x0 − η∇L(x0)
    assert plain.converged and plain.kind == "fixed_point" and plain.half_amplitude == 0.0
    assert not plain.stable  # past eta_c the minimum is GD-unstable
    assert plain.orbit_checks["averaged_hessian"] is None
    defl = find_orbit(p.objective, 1.03, x0, deflate=True)
    assert defl.converged and defl.kind == "period_two"
    assert defl.half_amplitude**2 == pytest.approx(0.0091358, abs=1e-7)
    short_gd = find_orbit_from_gd(p.objective, 1.03, x0, 300)  # GD still far from settled
    assert short_gd.converged and short_gd.kind == "period_two"
    assert short_gd.half_amplitude == pytest.approx(defl.half_amplitude, rel=1e-9)


def test_fixed_point_stability_below_eta_c(theory):
    p, _ = theory
    res = find_orbit(p.objective, 0.9, t(0.0, 0.0), t(0.0, 0.0))
    assert res.kind == "fixed_point" and res.stable
    assert sorted(abs(m) for m in res.floquet) == pytest.approx([(1 - 0.9 * 0.5) ** 2,
                                                                 (1 - 0.9 * 2) ** 2])


def test_orbit_checks_detect_a_non_orbit(theory):
    p, _ = theory
    chk = orbit_checks(p.objective, t(0.1, 0.0), t(-0.05, 0.02), 1.01)
    assert chk["averaged_hessian"] > 1e-2 and chk["kappa_loss_form"] > 1e-3


# ---------------------------------------------------------------- Floquet, dense vs Krylov
def test_floquet_dense_matches_krylov():
    gen = torch.Generator().manual_seed(3)
    d = 30
    B = torch.randn(d, d, dtype=F64, generator=gen)
    A = B @ B.T / d + torch.eye(d, dtype=F64)

    def f(x):
        return 0.5 * x @ A @ x + (x**4).sum() / 4 + (x[:5] ** 3).sum()

    obj = FunctionObjective(f, d)
    x = 0.3 * torch.randn(d, dtype=F64, generator=gen)
    y = 0.3 * torch.randn(d, dtype=F64, generator=gen)
    dense = floquet_multipliers(obj, x, y, 0.4, k=4)
    kry = floquet_multipliers(obj, x, y, 0.4, k=4, dense_max=0)
    assert np.abs(dense) == pytest.approx(np.abs(kry), rel=1e-8)


# ---------------------------------------------------------------- 2. 1-D flip criterion
@pytest.mark.parametrize("name,side,q", [("supercritical-1d", "supercritical", -3.5),
                                         ("subcritical-1d", "subcritical", 0.5),
                                         ("double-well", "supercritical", -4.0)])
def test_one_d_classical_flip_criterion(name, side, q):
    p = builtin(name)
    f = p.objective.f
    xs = p.x_star
    red = reduce_at_fixed_point(p.objective, xs)
    d0 = red.directions[0]

    def deriv(fn, n):
        for _ in range(n):
            fn = (lambda h: lambda z: torch.func.grad(lambda w: h(w).sum())(z))(fn)
        return float(fn(xs)[0])

    L2, L3, L4 = deriv(f, 2), deriv(f, 3), deriv(f, 4)
    assert d0.Q == pytest.approx(L4 / 12 - L3**2 / (4 * L2), abs=1e-12)
    assert d0.Q == pytest.approx(q, abs=1e-12) and d0.side == side
    # classical flip coefficient of the GD map g(x) = x − η L'(x) at η_c (g' = −1):
    # c = (g''/2)² + g'''/6 > 0 ⇔ supercritical; here c = −4 Q / L''
    eta = d0.eta_c

    def gd_map(z):
        return z - eta * torch.func.grad(lambda w: f(w))(z)

    g1 = float(torch.func.jacfwd(gd_map)(xs)[0, 0])
    g2 = float(torch.func.jacfwd(torch.func.jacfwd(gd_map))(xs).reshape(-1)[0])
    g3 = float(torch.func.jacfwd(torch.func.jacfwd(torch.func.jacfwd(gd_map)))(xs).reshape(-1)[0])
    assert g1 == pytest.approx(-1.0, abs=1e-12)
    c = (g2 / 2) ** 2 + g3 / 6
    assert c == pytest.approx(-4 * d0.Q / L2, rel=1e-10)


@pytest.mark.parametrize("name", ["supercritical-1d", "subcritical-1d"])
def test_one_d_orbit_stability_matches_side(name):
    p = builtin(name)
    red = reduce_at_fixed_point(p.objective, p.x_star)
    d0 = red.directions[0]
    lrs = list(d0.eta_c * np.linspace(0.97, 1.03, 7))
    sw = bifurcation_sweep(p.objective, red, lrs)
    measured = sw.measured()
    assert len(measured) == 3
    for r in sw.rows:
        if d0.side == "supercritical":
            assert (r.kind == "period_two") == (r.lr > d0.eta_c * 1.001)
        else:
            assert (r.kind == "period_two") == (r.lr < d0.eta_c * 0.999)
    for r in measured:
        assert r.stable is (d0.side == "supercritical")
        assert r.measured_half_amplitude == pytest.approx(r.predicted_half_amplitude, rel=0.1)
        # the fixed point is stable exactly on the subcritical orbits' side
        assert r.fixed_point_stable is (d0.side == "subcritical")
    assert sw.fit_exponent()[0] == pytest.approx(0.5, abs=0.05)


@settings(max_examples=15, deadline=None)
@given(a2=st.floats(0.2, 5.0), a3=st.floats(-3.0, 3.0), a4=st.floats(-3.0, 3.0))
def test_one_d_Q_formula_random_quartics(a2, a3, a4):
    obj = FunctionObjective(lambda x: a2 * x[0] ** 2 + a3 * x[0] ** 3 + a4 * x[0] ** 4, 1)
    d0 = reduce_at_fixed_point(obj, t(0.0)).directions[0]
    L2, L3, L4 = 2 * a2, 6 * a3, 24 * a4
    assert d0.Q == pytest.approx(L4 / 12 - L3**2 / (4 * L2), rel=1e-9, abs=1e-9)


# ---------------------------------------------------------------- flat directions
def test_singular_hessian_null_component_flags_degeneracy():
    # H(0) = diag(2, 0); t = T[e1, e1, ·] = (0, 2) lies entirely in the null space
    bad = FunctionObjective(lambda x: x[0] ** 2 + x[0] ** 2 * x[1] + x[1] ** 4, 2)
    d0 = reduce_at_fixed_point(bad, t(0.0, 0.0)).directions[0]
    assert d0.singular and d0.degenerate and "NOT VALID" in d0.note
    assert d0.null_component == pytest.approx(2.0, rel=1e-8)
    assert torch.allclose(d0.h_pinv_t, torch.zeros(2, dtype=F64), atol=1e-10)
    assert d0.to_dict()["valid"] is False
    # t = (6, 0) in the range: singular but the pseudo-inverse expansion holds
    ok = FunctionObjective(lambda x: x[0] ** 2 + x[0] ** 3 + x[1] ** 4, 2)
    d1 = reduce_at_fixed_point(ok, t(0.0, 0.0)).directions[0]
    assert d1.singular and not d1.degenerate
    assert d1.null_component < 1e-10
    assert d1.Q == pytest.approx(0 - 36 / 8, abs=1e-10)


def test_repeated_eigenvalue_flagged():
    obj = FunctionObjective(lambda x: x[0] ** 2 + x[1] ** 2 + x[0] ** 3, 2)
    d0 = reduce_at_fixed_point(obj, t(0.0, 0.0)).directions[0]
    assert d0.repeated and d0.to_dict()["valid"] is False


# ---------------------------------------------------------------- 3. linear network
@pytest.fixture(scope="module")
def linear():
    p = builtin("linear-net")
    m = find_minimum(p.objective, p.x0, lr=0.1, gd_steps=3000)
    return p, m


def test_linear_net_measured_critical_lr_and_degeneracy(linear):
    p, m = linear
    obj = p.objective
    assert m.converged and m.grad_norm <= 1e-10 and m.loss < 1e-18
    sigma1 = float(torch.linalg.svdvals(p.meta["target_map"])[0])
    assert sigma1 == pytest.approx(3.0)
    # balanced minimum: λ_max = 2 σ₁ exactly (whitened inputs), Q = 3/12 − 9/4 = −2
    xb = linear_net_balanced_minimum(p)
    rb = reduce_at_fixed_point(obj, xb, k=1)
    db = rb.directions[0]
    assert db.eigenvalue == pytest.approx(2 * sigma1, rel=1e-12)
    assert db.eta_c == pytest.approx(1 / sigma1, rel=1e-12)
    assert db.Q == pytest.approx(-2.0, rel=1e-9) and db.side == "supercritical"
    assert db.singular and not db.degenerate and db.null_component < 1e-10
    # GD-converged minimum (small init): nearly balanced, λ_max slightly above 2σ₁
    rg = reduce_at_fixed_point(obj, m.x, k=1)
    dg = rg.directions[0]
    W1, W2 = m.x[:30].reshape(3, 10), m.x[30:].reshape(5, 3)
    imbalance = float((W1 @ W1.T - W2.T @ W2).norm())
    assert 0 < imbalance < 0.3
    assert 2 * sigma1 < dg.eigenvalue < 2 * sigma1 * 1.001
    # 9 flat directions from GL(3): W2 A, A⁻¹ W1
    ev = torch.linalg.eigvalsh(obj.hessian(m.x))
    assert int((ev.abs() < 1e-9).sum()) == 9 and float(ev[9]) > 0.5
    assert dg.singular and dg.degenerate and "NOT VALID" in dg.note
    assert 1e-3 < dg.null_component / float(dg.t.norm()) < 0.1
    assert dg.Q == pytest.approx(-2.0, rel=0.01)  # indicative only


def test_linear_net_sweep_exponent(linear):
    p, m = linear
    obj = p.objective
    for x_star, tol_rel in ((linear_net_balanced_minimum(p), 1e-8), (m.x, 0.06)):
        red = reduce_at_fixed_point(obj, x_star, k=1)
        d0 = red.directions[0]
        lrs = list(d0.eta_c * (1 + np.geomspace(1e-3, 3e-2, 4)))
        sw = bifurcation_sweep(obj, red, lrs, n_floquet=12)
        rows = sw.measured()
        assert len(rows) == 4
        for r, orb in zip(rows, sw.orbits, strict=True):
            assert r.stable and orb.max_non_neutral < 1 and orb.n_neutral >= 3
            assert r.measured_half_amplitude == pytest.approx(r.predicted_half_amplitude,
                                                              rel=tol_rel)
        assert sw.fit_exponent()[0] == pytest.approx(0.5, abs=0.02)


# ---------------------------------------------------------------- 4. small MLP on digits
def test_digits_mlp_reduction_and_orbits():
    p = builtin("digits-mlp")
    obj = p.objective
    m = find_minimum(obj, p.x0, gd_steps=300)
    assert m.converged and m.grad_norm <= 1e-10
    red = reduce_at_fixed_point(obj, m.x, k=1)
    d0 = red.directions[0]
    assert red.min_eigenvalue > 0  # a strict local minimum
    assert not d0.singular and not d0.degenerate and not d0.repeated
    assert d0.side == "supercritical"  # what we find for this seed; Q ≈ −1.5e3
    assert d0.eigenvalue == pytest.approx(4.859, abs=2e-3)
    lrs = list(d0.eta_c * (1 + np.geomspace(1e-4, 1e-2, 3)))
    sw = bifurcation_sweep(obj, red, lrs)
    rows = sw.measured()
    assert len(rows) == 3
    rel = [abs(r.measured_half_amplitude / r.predicted_half_amplitude - 1) for r in rows]
    assert rel[0] < 1e-3 and rel[-1] < 3e-2
    assert rel[0] < rel[1] < rel[2]  # shrinking as eta -> eta_c
    assert all(r.stable for r in rows)  # supercritical: stable orbits past eta_c
    assert sw.fit_exponent()[0] == pytest.approx(0.5, abs=0.02)


# ---------------------------------------------------------------- sweep output
def test_sweep_csv_and_plot(tmp_path, theory):
    p, red = theory
    sw = bifurcation_sweep(p.objective, red, list(np.linspace(0.98, 1.04, 7)))
    assert {r.kind for r in sw.rows} == {"none", "period_two"}
    csv_path = tmp_path / "b.csv"
    log = store.CsvLog(csv_path, list(BifurcationRow.FIELDS))  # as `eoskit bifurcation` does
    for row in sw.table():
        log.write(row)
    log.close()
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("lr,eta_minus_eta_c,predicted_half_amplitude") and len(lines) == 8
    png = plot_bifurcation(sw, tmp_path / "b.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- loader
def test_load_objective_variants(tmp_path):
    src = tmp_path / "user_obj.py"
    src.write_text("import torch\n"
                   "def f(x):\n    return (x ** 2).sum() + x[0] ** 3\n"
                   "f.dim = 3\n"
                   "def g(x):\n    return x\n")
    prob = load_objective(f"{src}:f")
    assert prob.objective.dim == 3 and prob.x0.tolist() == [0.0, 0.0, 0.0]
    prob = load_objective(f"{src}:f", "1,2,3")
    assert float(prob.objective.value(prob.x0)) == pytest.approx(15.0)
    with pytest.raises(ObjectiveError, match="length 2"):
        load_objective(f"{src}:f", "1,2")
    with pytest.raises(ObjectiveError, match="scalar"):
        load_objective(f"{src}:g", "1,2")
    with pytest.raises(ObjectiveError, match="no attribute"):
        load_objective(f"{src}:h", "1")
    with pytest.raises(FileNotFoundError):
        load_objective(f"{tmp_path}/missing.py:f", "1")
    prob = load_objective("eoskit.testfns:theory_example", "0.5,0")
    assert prob.objective.dim == 2
    np.save(tmp_path / "x.npy", np.array([0.25, -0.5]))
    assert parse_vector(str(tmp_path / "x.npy")).tolist() == [0.25, -0.5]
    with pytest.raises(ObjectiveError, match="unknown objective"):
        load_objective("no-such-thing")
    with pytest.raises(ObjectiveError):
        parse_vector("1,,x")
    # a complex start would lose its imaginary part to the float64 cast: refused
    np.save(tmp_path / "z.npy", np.array([0.25 + 1j, -0.5]))
    with pytest.raises(ObjectiveError, match="x0: .*z.npy does not hold real numbers"):
        parse_vector(str(tmp_path / "z.npy"))
    assert math.isclose(float(builtin("theory-example").objective.value(t(1.0, 0.0))), 1.125)
