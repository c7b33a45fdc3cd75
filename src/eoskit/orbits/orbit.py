"""Fixed points and period-two orbits of GD at one learning rate (docs/theory.md §5).

A pair ``{x, y}`` with ``∇A_η = 0``, ``A_η(x, y) = L(x) + L(y) − |x − y|²/(2η)``,
is a fixed point (``x = y``, ``∇L = 0``) or a period-two orbit of GD at
learning rate ``η``. :func:`find_orbit` solves it by globalised Newton–MINRES
(:mod:`eoskit.orbits.newton`). Starts: a pair (``x0``, ``y0``); a point
(``y0 = x0 − η ∇L(x0)``); :func:`gd_iterates` (the last two GD iterates,
:func:`find_orbit_from_gd`); or :meth:`~eoskit.orbits.reduction.Reduction.predicted_orbit`.

The result (:class:`OrbitResult`) carries the top Floquet multipliers, the
stability verdict and the exact orbit checks of :mod:`eoskit.orbits.floquet`.

Example (``L = x² + x³ + x⁴/2``: GD at ``η = 1.02`` settles on a stable orbit):
    >>> import torch
    >>> from eoskit.objective import FunctionObjective
    >>> obj = FunctionObjective(lambda x: x[0] ** 2 + x[0] ** 3 + x[0] ** 4 / 2, 1)
    >>> orb = find_orbit_from_gd(obj, 1.02, torch.tensor([0.01], dtype=torch.float64), 500)
    >>> orb.kind, orb.converged, orb.stable
    ('period_two', True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from eoskit._threads import limit_blas_threads
from eoskit.objective import Objective
from eoskit.objective.failures import ObjectiveError, at_step
from eoskit.orbits._numeric import finite_or_none, to_numpy
from eoskit.orbits.floquet import (
    empty_checks,
    floquet_multipliers,
    multiplier_stability,
    orbit_checks,
)
from eoskit.orbits.newton import solve_coupling

__all__ = ["OrbitResult", "find_orbit", "find_orbit_from_gd", "gd_iterates"]


@dataclass
class OrbitResult:
    """A solution (or the best iterate) of ``∇A_η = 0``."""

    x: Tensor
    y: Tensor
    lr: float
    kind: str  # "fixed_point" or "period_two"
    half_amplitude: float  # |x − y|/2
    residual: float  # ‖∇A_η(x, y)‖
    converged: bool
    iterations: int
    floquet: np.ndarray  # top multipliers of M (complex, by modulus)
    stable: bool
    n_neutral: int  # multipliers within neutral_tol of the unit circle (among those computed)
    max_non_neutral: float  # largest |μ| among the others
    orbit_checks: dict
    n_hvps: int = 0
    history: list[float] = field(default_factory=list)

    @property
    def max_multiplier(self) -> float:
        return float(np.max(np.abs(self.floquet))) if len(self.floquet) else math.nan

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "x": to_numpy(self.x).tolist(),
            "y": to_numpy(self.y).tolist(),
            "half_amplitude": self.half_amplitude,
            "residual": self.residual,
            "floquet": [{"re": float(m.real), "im": float(m.imag), "abs": float(abs(m))}
                        for m in self.floquet],
            "stable": bool(self.stable),
            "orbit_checks": {k: finite_or_none(v) if isinstance(v, float) else v
                             for k, v in self.orbit_checks.items()},
            "lr": self.lr,
            "converged": bool(self.converged),
            "iterations": self.iterations,
            "n_neutral": self.n_neutral,
            "max_non_neutral_multiplier": finite_or_none(self.max_non_neutral),
            "max_multiplier": finite_or_none(self.max_multiplier),
            "n_hvps": self.n_hvps,
        }


def gd_iterates(objective: Objective, x0: Tensor, lr: float, steps: int) -> tuple[Tensor, Tensor]:
    """Run ``steps`` GD steps from ``x0``; return the last two iterates ``(x_{T−1}, x_T)``."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    x = x0.detach().clone()
    prev = x
    for t in range(steps):
        step = f"GD step {t} of {steps}"
        try:
            g = objective.grad(x)
        except ObjectiveError as err:
            raise err.where(step=step) from None
        if not torch.isfinite(g).all():
            # x_t is finite (checked below): the objective, not GD, produced the NaN/inf
            raise ObjectiveError("its gradient is not finite at a finite point", step=step)
        prev, x = x, x - lr * g
        if not torch.isfinite(x).all():
            raise ValueError(f"GD diverged at lr={lr:g} at step {t} of {steps} (the iterate "
                             "overflowed)")
    return prev, x


def _start(objective: Objective, lr: float, x0: Tensor, y0: Tensor | None) -> tuple[Tensor, Tensor]:
    """The validated start pair in the objective's dtype (``y0`` defaults to a GD step)."""
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"learning rate must be positive and finite, got {lr}")
    d = objective.dim
    x0 = x0.detach().to(objective.dtype)
    if x0.numel() != d:
        raise ValueError(f"x0 has length {x0.numel()} but the objective has dimension {d}")
    if y0 is None:
        with at_step("the start y0 = x0 − η∇L(x0)"):
            y0 = x0 - lr * objective.grad(x0)
    y0 = y0.detach().to(objective.dtype)
    if y0.numel() != d:
        raise ValueError(f"y0 has length {y0.numel()} but the objective has dimension {d}")
    return x0, y0


def find_orbit(
    objective: Objective,
    lr: float,
    x0: Tensor,
    y0: Tensor | None = None,
    *,
    tol: float = 1e-10,
    max_iter: int = 60,
    minres_maxiter: int | None = None,
    deflate: bool = False,
    n_floquet: int = 6,
    dense_max: int = 600,
    fixed_tol: float = 1e-7,
    neutral_tol: float = 1e-8,
    quad_nodes: int = 20,
    checks: bool = True,
) -> OrbitResult:
    """Solve ``∇A_η(x, y) = 0`` by globalised Newton–MINRES from ``(x0, y0)``.

    ``y0=None`` starts from the point ``x0`` with ``y0 = x0 − η ∇L(x0)``.
    Converged when ``‖∇A‖ ≤ tol``; otherwise the best iterate is returned with
    ``converged=False``. ``kind`` is ``fixed_point`` when ``|x − y| ≤
    fixed_tol·(1 + |x|)``.
    """
    x0, y0 = _start(objective, lr, x0, y0)
    limit_blas_threads()
    hv0 = objective.hvp_count
    mr_max = minres_maxiter or min(20 * 2 * objective.dim, 5000)
    sol = solve_coupling(objective, lr, x0, y0, tol=tol, max_iter=max_iter, mr_max=mr_max,
                         deflate=deflate)
    x, y = sol.x, sol.y
    kind = "fixed_point" if float((x - y).norm()) <= fixed_tol * (1 + float(x.norm())) else (
        "period_two")
    if kind == "fixed_point":
        mid = (x + y) / 2
        x, y = mid, mid.clone()
    with at_step(f"the Floquet multipliers of the {kind.replace('_', '-')} found"):
        mu_all = floquet_multipliers(objective, x, y, lr, k=n_floquet, dense_max=dense_max,
                                     all_dense=True)
    stable, n_neutral, max_non_neutral = multiplier_stability(mu_all, neutral_tol)
    with at_step("the orbit checks"):
        chk = (orbit_checks(objective, x, y, lr, quad_nodes) if checks and kind == "period_two"
               else empty_checks(quad_nodes))
    return OrbitResult(
        x=x, y=y, lr=float(lr), kind=kind, half_amplitude=float((x - y).norm()) / 2,
        residual=sol.residual, converged=sol.converged, iterations=sol.iterations,
        floquet=mu_all[:n_floquet], stable=stable, n_neutral=n_neutral,
        max_non_neutral=max_non_neutral, orbit_checks=chk,
        n_hvps=objective.hvp_count - hv0, history=sol.history,
    )


def find_orbit_from_gd(objective: Objective, lr: float, x0: Tensor, steps: int,
                       **kwargs) -> OrbitResult:
    """Run GD for ``steps`` steps, then refine its last two iterates with :func:`find_orbit`."""
    xa, xb = gd_iterates(objective, x0, lr, steps)
    return find_orbit(objective, lr, xa, xb, **kwargs)
