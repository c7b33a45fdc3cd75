"""Segment quadrature against closed forms (docs/theory.md §2-3).

Written to kill the mutants tests/diagnostics/test_identities.py lets survive in
eoskit.diagnostics.quadrature (benchmarks/results/mutation.md). On L = Σ xᵢ⁴/12,
H(z) = diag(z²), so along x + τs every quantity is a polynomial in τ:
H(x+τs)s = (x+τs)²s, ∫₀¹ (x+τs)² dτ = x² + xs + s²/3 and
∫₀¹ 2(1−τ)(x+τs)² dτ = x² + (2/3)xs + s²/6.
"""

import math

import numpy as np
import pytest
import torch

from eoskit.diagnostics.quadrature import (
    DEFAULT_NODES,
    averaged_curvatures,
    averaged_hessian_step,
    gauss_legendre_01,
    segment_curvature,
    segment_quadrature,
)
from eoskit.objective import FunctionObjective

F64 = torch.float64
X = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64)
S = torch.tensor([0.5, 1.0, -1.5, -0.25], dtype=F64)


def _quartic(hvp_method="retained"):
    return FunctionObjective(lambda z: (z ** 4).sum() / 12, dim=4, hvp_method=hvp_method)


def _phi(tau):
    return float(((X + tau * S) ** 2 * S ** 2).sum() / (S @ S))


HBAR = (X ** 2 + X * S + S ** 2 / 3) * S
HTILDE = (X ** 2 + 2 * X * S / 3 + S ** 2 / 6) * S


@pytest.mark.parametrize("nodes", [1, 2, 3, 7])
def test_gauss_legendre_weights_sum_to_one_and_integrate_polynomials(nodes):
    taus, w = gauss_legendre_01(nodes)
    assert len(taus) == len(w) == nodes
    assert np.all((taus > 0) & (taus < 1)) and np.all(w > 0)
    assert np.all(np.diff(taus) > 0)
    for p in range(2 * nodes):  # exact up to degree 2n − 1: ∫₀¹ τ^p = 1/(p+1)
        assert float(w @ taus ** p) == pytest.approx(1.0 / (p + 1), rel=1e-13)
    assert abs(float(w @ taus ** (2 * nodes)) - 1.0 / (2 * nodes + 1)) > 1e-10


def test_one_node_is_the_midpoint_rule():
    taus, w = gauss_legendre_01(1)
    assert taus.tolist() == [0.5] and w.tolist() == [1.0]


@pytest.mark.parametrize("bad", [0, -1])
def test_gauss_legendre_needs_a_positive_node_count(bad):
    with pytest.raises(ValueError, match="positive"):
        gauss_legendre_01(bad)


@pytest.mark.parametrize("hvp_method", ["retained", "rev-rev"])
def test_segment_quadrature_is_exact_on_a_quartic(hvp_method):
    quad = segment_quadrature(_quartic(hvp_method), X, S, nodes=3)
    ss = float(S @ S)
    assert quad.step_norm_sq == pytest.approx(ss, rel=1e-15)
    assert np.allclose(quad.phi, [_phi(t) for t in quad.taus], rtol=1e-13, atol=0)
    assert torch.allclose(quad.hbar_s, HBAR, rtol=1e-13, atol=1e-13)
    assert torch.allclose(quad.htilde_s, HTILDE, rtol=1e-13, atol=1e-13)
    assert quad.q_bar == pytest.approx(float(S @ HBAR) / ss, rel=1e-13)
    assert quad.kappa == pytest.approx(float(S @ HTILDE) / ss, rel=1e-13)
    assert np.allclose(quad.taus, gauss_legendre_01(3)[0]) and len(quad.weights) == 3


def test_averaged_hessian_step_is_the_gradient_difference():
    obj = _quartic()
    expected = obj.grad(X + S) - obj.grad(X)  # H̄s = g(x + s) − g(x)
    assert torch.allclose(averaged_hessian_step(obj, X, S), expected, rtol=1e-13, atol=1e-13)
    assert torch.allclose(averaged_hessian_step(obj, X, S, nodes=2), expected, rtol=1e-13,
                          atol=1e-13)


def test_node_count_is_passed_through():
    # φ is quadratic in τ: one node (the midpoint) is inexact, two are exact
    obj = _quartic()
    q1, k1 = averaged_curvatures(obj, X, S, nodes=1)
    assert q1 == pytest.approx(_phi(0.5), rel=1e-13)
    assert k1 == pytest.approx(_phi(0.5), rel=1e-13)  # weight 2(1 − ½) = 1
    q_exact = float(S @ HBAR) / float(S @ S)
    assert abs(q1 - q_exact) > 1e-3
    assert not torch.allclose(averaged_hessian_step(obj, X, S, nodes=1), HBAR, rtol=1e-6)
    assert len(segment_quadrature(obj, X, S).taus) == DEFAULT_NODES


def test_segment_curvature_is_the_rayleigh_quotient_at_tau():
    obj = _quartic()
    for tau in (0.0, 0.3, 1.0):
        assert segment_curvature(obj, X, S, tau) == pytest.approx(_phi(tau), rel=1e-13)


def test_zero_step_gives_nan_curvature():
    obj = _quartic()
    zero = torch.zeros(4, dtype=F64)
    assert math.isnan(segment_curvature(obj, X, zero, 0.5))
    quad = segment_quadrature(obj, X, zero, nodes=2)
    assert np.all(np.isnan(quad.phi)) and math.isnan(quad.kappa)
    assert quad.step_norm_sq == 0.0 and torch.count_nonzero(quad.hbar_s) == 0


def test_inputs_with_a_graph_are_detached():
    obj = _quartic()
    x = X.clone().requires_grad_(True)
    s = S.clone().requires_grad_(True)
    quad = segment_quadrature(obj, x * 1.0, s * 1.0, nodes=2)
    assert not quad.hbar_s.requires_grad and not quad.htilde_s.requires_grad
    assert segment_curvature(obj, x * 1.0, s * 1.0, 0.5) == pytest.approx(_phi(0.5), rel=1e-13)
