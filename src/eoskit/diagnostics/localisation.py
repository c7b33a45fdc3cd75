"""Mean-value localisation (docs/theory.md §4): the points τ̄, τ̃ where φ meets q̄ and κ.

φ(τ) = uᵀH(x+τs)u is continuous on [0, 1] for a smooth loss, and q̄, κ are weighted means
of it, so φ(τ̄) = q̄ and φ(τ̃) = κ have roots in [0, 1]; :func:`localisation_points` finds
them by bracketing on the quadrature nodes and refining with Brent's method.

Example (φ(τ) = (1 + τ)² from L = x⁴/12 at x = s = 1: τ̄ = √(7/3) − 1):
    >>> import math, torch
    >>> from eoskit.objective import FunctionObjective
    >>> obj = FunctionObjective(lambda x: (x ** 4).sum() / 12, dim=1)
    >>> one = torch.ones(1, dtype=torch.float64)
    >>> loc = localisation_points(obj, one, one)
    >>> abs(loc.tau_bar - (math.sqrt(7 / 3) - 1)) < 1e-12, loc.exact_bar
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from eoskit.diagnostics.quadrature import (
    DEFAULT_NODES,
    SegmentQuadrature,
    segment_curvature,
    segment_quadrature,
)
from eoskit.objective import Objective


@dataclass
class Localisation:
    """τ̄, τ̃ ∈ [0, 1] with φ(τ̄) = q̄ and φ(τ̃) = κ; unpacks as ``(tau_bar, tau_tilde)``.

    ``exact_bar`` / ``exact_tilde`` are True when the root was bracketed and refined by
    Brent's method; False when φ − target has no sign change that could be found (φ
    constant to rounding: the midpoint is reported; otherwise the τ of smallest
    |φ − target| that was evaluated).
    """

    tau_bar: float
    tau_tilde: float
    phi_tau_bar: float
    phi_tau_tilde: float
    exact_bar: bool
    exact_tilde: bool
    n_evals: int

    def __iter__(self):
        return iter((self.tau_bar, self.tau_tilde))


def _localise(phi, target: float, taus: np.ndarray, vals: np.ndarray, xtol: float):
    """A root of φ(τ) − target on [0, 1]: bracket on known values, refine by brentq."""
    import scipy.optimize

    known = dict(zip(taus.tolist(), vals.tolist(), strict=True))

    def f(t):
        if t not in known:
            known[t] = phi(t)
        return known[t] - target

    scale = max(abs(target), float(np.max(np.abs(vals))) if len(vals) else 0.0, 1e-300)

    def bracket():
        ts = sorted(known)
        fs = [known[t] - target for t in ts]
        for a, b, fa, fb in zip(ts, ts[1:], fs, fs[1:], strict=False):
            if fa == 0.0:
                return a, a
            if fa * fb < 0:
                return a, b
        if fs and fs[-1] == 0.0:
            return ts[-1], ts[-1]
        return None

    tiny = 64 * np.finfo(float).eps * scale
    if len(vals) and np.all(np.isfinite(vals)) and np.max(np.abs(vals - target)) <= tiny:
        return 0.5, f(0.5) + target, False  # φ constant to rounding: every τ would do
    grids = [np.array([0.0, 1.0]), np.linspace(0.0, 1.0, 4 * len(taus) + 1)[1:-1]]
    br = bracket()
    for grid in grids:
        if br is not None:
            break
        for t in grid.tolist():
            f(t)
        br = bracket()
    if br is not None:
        a, b = br
        if a == b:
            return a, known[a], True
        root = scipy.optimize.brentq(f, a, b, xtol=xtol, rtol=4 * np.finfo(float).eps)
        return root, f(root) + target, True
    ts = np.array(sorted(known))
    fs = np.array([known[t] - target for t in ts])
    if np.max(np.abs(fs)) <= tiny:  # φ constant to rounding
        return 0.5, f(0.5) + target, False
    i = int(np.argmin(np.abs(fs)))
    return float(ts[i]), float(fs[i] + target), False


def localisation_points(
    objective: Objective,
    x: Tensor,
    s: Tensor,
    *,
    nodes: int = DEFAULT_NODES,
    quad: SegmentQuadrature | None = None,
    xtol: float = 1e-13,
) -> Localisation:
    """Mean-value points τ̄, τ̃ of φ for q̄ and κ (docs/theory.md §4), by brentq on
    HVP-evaluated φ.

    The quadrature nodes' φ values (reused from ``quad`` when given) bracket the roots:
    q̄ and κ are positively weighted means of those values, so φ − target changes sign
    between two nodes unless φ is constant to rounding. Otherwise the endpoints, then a
    grid four times finer, are searched. When several roots exist, the first bracket from
    τ = 0 is refined.
    """
    quad = quad or segment_quadrature(objective, x, s, nodes)
    evals = 0

    def phi(t: float) -> float:
        nonlocal evals
        evals += 1
        return segment_curvature(objective, x, s, t)

    tb, pb, eb = _localise(phi, quad.q_bar, quad.taus, quad.phi, xtol)
    tt, pt, et = _localise(phi, quad.kappa, quad.taus, quad.phi, xtol)
    return Localisation(float(tb), float(tt), float(pb), float(pt), eb, et, evals)
