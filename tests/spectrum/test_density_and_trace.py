"""SLQ density and trace estimators against dense float64 references (tests/references.py)."""

import functools

import numpy as np
import pytest
import torch

from eoskit import hessian_trace, slq
from eoskit.objective import FunctionObjective
from eoskit.spectrum import hutch_plus_plus, hutchinson, rademacher
from tests.references import F64, dense_hessian, mlp_tanh


@functools.cache
def _net(loss="mse"):
    """A tanh network's loss, a point, its dense Hessian and that Hessian's eigenvalues."""
    prob = mlp_tanh(loss)
    H = dense_hessian(prob.f, prob.x0)
    H = (H + H.T) / 2
    return prob, H, torch.linalg.eigvalsh(H).numpy()


def _decaying(d=100, seed=0):
    """A quadratic whose Hessian has eigenvalues 1/i² in a random basis: few large, many tiny."""
    gen = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(d, d, dtype=F64, generator=gen)).Q
    A = U @ torch.diag(1.0 / torch.arange(1, d + 1, dtype=F64) ** 2) @ U.T
    return A, FunctionObjective(lambda x: 0.5 * x @ A @ x, d)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_slq_reproduces_each_probes_first_moments(loss):
    prob, H, eig = _net(loss)
    d, probes, steps = prob.dim, 3, 10
    sd = slq(prob.f, prob.x0, probes=probes, steps=steps, seed=4)
    assert sd.nodes.shape == sd.weights.shape == (probes, steps)
    np.testing.assert_allclose(sd.weights.sum(1), 1.0, atol=1e-13)
    rho = float(np.abs(eig).max())
    for p, v in enumerate(rademacher(d, probes, seed=4)):
        Hjv = v.clone()
        for j in range(2 * steps):  # Gauss quadrature is exact to degree 2·steps − 1
            exact = float(v @ Hjv) / float(v @ v)
            quad = float(np.sum(sd.weights[p] * sd.nodes[p] ** j))
            assert abs(quad - exact) <= 1e-10 * rho ** j, (p, j, quad, exact)
            Hjv = H @ Hjv
    assert sd.moment(1) == pytest.approx(np.mean([float(v @ H @ v) / d for v in
                                                  rademacher(d, probes, seed=4)]), rel=1e-10)


def _dense_density(eig, grid, sigma):
    z = (grid[:, None] - eig[None, :]) / sigma
    return np.exp(-0.5 * z * z).mean(1) / (sigma * np.sqrt(2 * np.pi))


def test_smoothed_density_integrates_to_one_and_converges_to_the_dense_one():
    prob, H, eig = _net()
    sigma = 0.05 * (eig.max() - eig.min())
    grid = np.linspace(eig.min() - 8 * sigma, eig.max() + 8 * sigma, 2001)
    ref = _dense_density(eig, grid, sigma)
    errors = {}
    for probes in (2, 32, 128):
        sd = slq(prob.f, prob.x0, probes=probes, steps=15, seed=1)
        rho = sd.density(grid, sigma)
        assert np.trapezoid(rho, grid) == pytest.approx(1.0, abs=1e-9)
        errors[probes] = np.trapezoid(np.abs(rho - ref), grid)  # L1 distance of densities
    # Monte Carlo: the error falls like 1/√probes (×1/8 from 2 to 128 probes; measured
    # 0.099, 0.029, 0.012); 15 steps leave no visible quadrature bias at this σ
    assert errors[128] < 0.25 * errors[2] and errors[128] < 0.6 * errors[32], errors
    assert errors[128] < 0.03, errors


def test_slq_is_exact_when_steps_reach_the_dimension():
    # 1/i²: the top converges in a few steps, after which a Lanczos basis without full
    # reorthogonalisation loses orthogonality and repeats it (ghost nodes)
    A, obj = _decaying(d=60)
    sd = slq(obj, torch.zeros(60, dtype=F64), probes=2, steps=100)
    assert sd.nodes.shape == (2, 60)  # steps capped at the dimension
    exact = np.sort(torch.linalg.eigvalsh(A).numpy())
    for p in range(2):
        np.testing.assert_allclose(np.sort(sd.nodes[p]), exact, rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose(sd.weights[p].sum(), 1.0, atol=1e-13)


def test_count_above_is_exact_for_a_diagonal_hessian_at_full_steps():
    # Rademacher probes have (e_i·v)² = 1: each probe's measure is exactly uniform
    lam = torch.linspace(-1.0, 4.0, 20, dtype=F64)
    f = FunctionObjective(lambda x: 0.5 * (lam * x * x).sum(), 20)
    sd = slq(f, torch.zeros(20, dtype=F64), probes=2, steps=20)
    for t in (-2.0, 0.0, 1.5, 3.9, 5.0):
        assert sd.count_above(t) == pytest.approx(int((lam > t).sum()), abs=1e-9), t


def test_float32_slq_keeps_float32_accuracy():
    prob, H, eig = _net()
    f32 = FunctionObjective(lambda x: prob.f(x.double()).float(), prob.dim, dtype=torch.float32)
    sd32 = slq(f32, prob.x0.float(), probes=2, steps=8, seed=2)
    sd64 = slq(prob.f, prob.x0, probes=2, steps=8, seed=2)
    rho = float(np.abs(eig).max())
    for j in range(1, 6):
        assert abs(sd32.moment(j) - sd64.moment(j)) <= 1e-5 * rho ** j, j


@pytest.mark.parametrize("method,products", [("hutchinson", 10), ("hutch++", 12)])
def test_trace_estimators_are_unbiased_with_honest_standard_errors(method, products):
    prob, H, eig = _net()
    truth = float(torch.trace(H))
    runs = [hessian_trace(prob.f, prob.x0, products, method, seed=s) for s in range(200)]
    est = np.array([r.estimate for r in runs])
    spread = est.std(ddof=1)
    assert abs(est.mean() - truth) < 4 * spread / np.sqrt(len(est)), (est.mean(), truth)
    # each run's own standard error describes the scatter between runs
    assert np.mean([r.stderr for r in runs]) == pytest.approx(spread, rel=0.25)
    assert {r.products for r in runs} == {products}


def test_hutch_plus_plus_beats_hutchinson_on_a_decaying_spectrum():
    A, obj = _decaying()
    truth, products = float(torch.trace(A)), 30
    var = {}
    for name, est in (("hutchinson", hutchinson), ("hutch++", hutch_plus_plus)):
        vals = np.array([est(lambda v: A @ v, 100, products, seed=s).estimate
                         for s in range(200)])
        assert abs(vals.mean() - truth) < 4 * vals.std(ddof=1) / np.sqrt(len(vals))
        var[name] = vals.var(ddof=1)
    # the sketch of the top 10 directions leaves Σ_{i>10} i⁻⁴ of ‖A‖_F² ≈ 1.08
    assert var["hutch++"] < 0.01 * var["hutchinson"], var


def test_bad_requests_are_one_clear_error():
    prob, _, _ = _net()
    with pytest.raises(ValueError, match="probes and steps"):
        slq(prob.f, prob.x0, probes=0)
    with pytest.raises(ValueError, match="method must be one of"):
        hessian_trace(prob.f, prob.x0, method="xtrace")
    with pytest.raises(ValueError, match="sigma must be positive"):
        slq(prob.f, prob.x0, steps=3).density([0.0], 0.0)
