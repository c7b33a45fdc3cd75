"""Segment averages of the Hessian along a step (docs/theory.md §2-3), by quadrature.

Along the segment ``x + τ s``, τ ∈ [0, 1], with u = s/|s| and φ(τ) = uᵀH(x+τs)u:
:func:`segment_curvature` (φ at one τ), :func:`averaged_curvatures` (q̄ = ∫φ, κ = ∫2(1−τ)φ),
:func:`averaged_hessian_step` (H̄s), all from one Gauss–Legendre quadrature
(:func:`segment_quadrature`) whose node HVPs ``H(x + τ_i s) s`` give H̄s, H̃s and φ(τ_i)
at once.

Nodes. ``DEFAULT_NODES = 12`` Gauss–Legendre nodes on [0, 1]. The rule is exact for
polynomial φ of degree ≤ 23, so on losses of degree ≤ 4 (φ of degree ≤ 2) it is exact;
on smooth (tanh) networks φ is analytic in τ and the error falls geometrically with the
node count. Measured |κ_quad − κ_loss|/|κ| on float64 tanh MLPs under GD at the edge of
stability, worst step (the large first and catapult steps): MNIST-500, d = 26,506
(examples/diagnose_mnist.py): 4 nodes 2.5e-5, 6: 3.7e-8, 8: 1.5e-10, 10: 3.6e-13,
12: 9e-15; the small MLP of tests/diagnostics/test_identities.py: 3 nodes 1.2e-6, 4: 8e-9,
12: 2e-15. Twelve is the smallest count that reached rounding on every step tried, with
a margin for larger steps. Each node costs one gradient with its graph and one
Hessian-vector product, taken through ``objective.at(x)``.

Example (L = Σ x⁴/12 has H = diag(x²): from x = s = 1, φ(τ) = (1 + τ)², integrated exactly):
    >>> import torch
    >>> from eoskit.objective import FunctionObjective
    >>> obj = FunctionObjective(lambda x: (x ** 4).sum() / 12, dim=1)
    >>> x, s = torch.tensor([1.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    >>> q_bar, kappa = averaged_curvatures(obj, x, s)
    >>> round(q_bar, 12), round(kappa, 12)  # 7/3 and 11/6
    (2.333333333333, 1.833333333333)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from eoskit.diagnostics.identities import _float
from eoskit.objective import Objective

DEFAULT_NODES = 12


def _hvp_at(objective: Objective, x: Tensor, v: Tensor) -> Tensor:
    """H(x) v, freeing the point's graph afterwards (one gradient + one product)."""
    with objective.at(x) as point:
        return point.hvp(v).detach()


def gauss_legendre_01(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [0, 1] (weights sum to 1).

    >>> taus, weights = gauss_legendre_01(2)
    >>> [round(float(t), 6) for t in taus], [float(w) for w in weights]
    ([0.211325, 0.788675], [0.5, 0.5])
    """
    if int(nodes) < 1:
        raise ValueError(f"nodes must be a positive integer, got {nodes!r}")
    xi, w = np.polynomial.legendre.leggauss(int(nodes))
    return (xi + 1.0) / 2.0, w / 2.0


@dataclass
class SegmentQuadrature:
    """Everything one quadrature along the segment ``x + τ s``, τ ∈ [0, 1], yields.

    ``phi[i] = uᵀ H(x + taus[i] s) u``; ``hbar_s = Σ w_i H_i s ≈ H̄ s``;
    ``htilde_s = Σ w_i 2(1 − τ_i) H_i s ≈ H̃ s``; ``q_bar = Σ w_i φ_i``;
    ``kappa = Σ w_i 2(1 − τ_i) φ_i``.
    """

    taus: np.ndarray  # (nodes,)
    weights: np.ndarray  # (nodes,)
    phi: np.ndarray  # (nodes,)
    hbar_s: Tensor  # (d,)
    htilde_s: Tensor  # (d,)
    q_bar: float
    kappa: float
    step_norm_sq: float


def segment_quadrature(
    objective: Objective, x: Tensor, s: Tensor, nodes: int = DEFAULT_NODES
) -> SegmentQuadrature:
    """Gauss–Legendre quadrature of H(x + τs) s over τ ∈ [0, 1]: ``nodes`` HVPs in all."""
    taus, weights = gauss_legendre_01(nodes)
    x, s = x.detach(), s.detach()
    ss = _float(s @ s)
    hbar = torch.zeros_like(s)
    htilde = torch.zeros_like(s)
    phi = np.empty(len(taus))
    for i, (tau, w) in enumerate(zip(taus, weights, strict=True)):
        hs = _hvp_at(objective, x + float(tau) * s, s)  # (d,)
        phi[i] = _float(s @ hs) / ss if ss > 0 else math.nan
        hbar = hbar + float(w) * hs
        htilde = htilde + float(w * 2.0 * (1.0 - tau)) * hs
    q_bar = float(np.dot(weights, phi))
    kappa = float(np.dot(weights * 2.0 * (1.0 - taus), phi))
    return SegmentQuadrature(taus, weights, phi, hbar, htilde, q_bar, kappa, ss)


def segment_curvature(objective: Objective, x: Tensor, s: Tensor, tau: float) -> float:
    """φ(τ) = uᵀ H(x + τ s) u with u = s/|s| (one HVP); NaN for a zero step."""
    s = s.detach()
    ss = _float(s @ s)
    if ss <= 0:
        return math.nan
    return _float(s @ _hvp_at(objective, x.detach() + float(tau) * s, s)) / ss


def averaged_curvatures(
    objective: Objective, x: Tensor, s: Tensor, nodes: int = DEFAULT_NODES
) -> tuple[float, float]:
    """(q̄, κ): the mean of φ over [0, 1], plain and under the weight 2(1 − τ)."""
    quad = segment_quadrature(objective, x, s, nodes)
    return quad.q_bar, quad.kappa


def averaged_hessian_step(
    objective: Objective, x: Tensor, s: Tensor, nodes: int = DEFAULT_NODES
) -> Tensor:
    """H̄ s = ∫₀¹ H(x + τ s) s dτ by quadrature (= g(x + s) − g(x) on smooth losses)."""
    return segment_quadrature(objective, x, s, nodes).hbar_s
