"""Continuation of a period-two branch over learning rates: the bifurcation diagram's data.

:func:`bifurcation_sweep` continues the branch of one direction of a
:class:`~eoskit.orbits.reduction.Reduction` over a grid of learning rates,
from the prediction nearest ``η_c`` outward, each solve started from the
previous solution. :meth:`BifurcationSweep.table` gives its rows (``eoskit bifurcation`` writes
them with :class:`eoskit.store.CsvLog`) and
:func:`eoskit.plots.bifurcation_figures.plot_bifurcation` draws the diagram.

Example (``L = x² + x³ + x⁴/2``, supercritical: orbits for ``η > η_c = 1``):
    >>> import torch
    >>> from eoskit.objective import FunctionObjective
    >>> from eoskit.orbits.reduction import reduce_at_fixed_point
    >>> obj = FunctionObjective(lambda x: x[0] ** 2 + x[0] ** 3 + x[0] ** 4 / 2, 1)
    >>> red = reduce_at_fixed_point(obj, torch.zeros(1, dtype=torch.float64))
    >>> sw = bifurcation_sweep(obj, red, [0.99, 1.001, 1.002])
    >>> [r.kind for r in sw.rows]
    ['none', 'period_two', 'period_two']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eoskit.objective import Objective
from eoskit.objective.failures import at_step
from eoskit.orbits._numeric import finite_or_none
from eoskit.orbits.orbit import OrbitResult, find_orbit
from eoskit.orbits.reduction import DirectionReduction, Reduction

__all__ = ["BifurcationRow", "BifurcationSweep", "bifurcation_sweep"]


@dataclass
class BifurcationRow:
    """One learning rate of a sweep: predicted and measured half-amplitude, verdicts."""

    lr: float
    eta_minus_eta_c: float
    predicted_half_amplitude: float
    measured_half_amplitude: float
    kind: str  # "period_two", "fixed_point", "none" (no branch predicted), "failed"
    stable: bool | None
    max_multiplier: float
    residual: float
    converged: bool
    fixed_point_stable: bool  # GD stability of x* at this lr (top eigenvalues only)

    FIELDS = ("lr", "eta_minus_eta_c", "predicted_half_amplitude", "measured_half_amplitude",
              "kind", "stable", "max_multiplier", "residual", "converged", "fixed_point_stable")


@dataclass
class BifurcationSweep:
    """The rows of :func:`bifurcation_sweep` and the orbit found at each (None: not solved)."""

    reduction: Reduction
    direction: int
    rows: list[BifurcationRow]
    orbits: list[OrbitResult | None]

    @property
    def eta_c(self) -> float:
        return self.reduction.directions[self.direction].eta_c

    def measured(self) -> list[BifurcationRow]:
        return [r for r in self.rows if r.kind == "period_two" and r.converged]

    def fit_exponent(self) -> tuple[float, float]:
        """Least-squares slope and intercept of log a vs log |η − η_c| over the measured branch."""
        rows = self.measured()
        if len(rows) < 2:
            return math.nan, math.nan
        xs = np.log([abs(r.eta_minus_eta_c) for r in rows])
        ys = np.log([r.measured_half_amplitude for r in rows])
        slope, icpt = np.polyfit(xs, ys, 1)
        return float(slope), float(icpt)

    def table(self) -> list[dict]:
        """The rows as dicts of the CSV columns (for :func:`eoskit.store.CsvLog`)."""
        return [{f: getattr(r, f) for f in BifurcationRow.FIELDS} for r in self.rows]

    def to_dict(self) -> dict:
        slope, _ = self.fit_exponent()
        return {
            "direction": self.direction,
            "eta_c": self.eta_c,
            "exponent": finite_or_none(slope),
            "rows": [{f: (finite_or_none(getattr(r, f)) if isinstance(getattr(r, f), float)
                          else getattr(r, f)) for f in BifurcationRow.FIELDS} for r in self.rows],
        }




def _is_orbit(res: OrbitResult | None) -> bool:
    return res is not None and res.converged and res.kind == "period_two"


def _orbit_on_branch(objective: Objective, reduction: Reduction, lr: float, direction: int,
                     prev: OrbitResult | None, orbit_kw: dict) -> OrbitResult:
    """The orbit at ``lr`` continued from ``prev``, else from the reduction's prediction."""
    res = find_orbit(objective, lr, prev.x, prev.y, **orbit_kw) if _is_orbit(prev) else None
    if not _is_orbit(res):
        predicted = find_orbit(objective, lr, *reduction.predicted_orbit(lr, direction),
                               **orbit_kw)
        if res is None or _is_orbit(predicted):
            res = predicted
    return res


def _continue_branch(objective: Objective, reduction: Reduction, lrs: list[float],
                     direction: int, **orbit_kw) -> dict[int, OrbitResult]:
    """Orbits at the supported learning rates (by index), nearest ``η_c`` first."""
    dr = reduction.directions[direction]
    supported = [i for i, v in enumerate(lrs) if dr.supports_orbit(v)]
    supported.sort(key=lambda i: abs(lrs[i] - dr.eta_c))
    results: dict[int, OrbitResult] = {}
    prev: OrbitResult | None = None
    for i in supported:
        with at_step(f"the sweep's orbit at lr={lrs[i]:g}"):
            res = _orbit_on_branch(objective, reduction, lrs[i], direction, prev, orbit_kw)
        results[i] = res
        prev = res
    return results


def _row(reduction: Reduction, dr: DirectionReduction, lr: float,
         res: OrbitResult | None) -> BifurcationRow:
    fp_stable = reduction.fixed_point_stable(lr)
    pred = dr.predicted_half_amplitude(lr)
    if res is None:
        return BifurcationRow(lr, lr - dr.eta_c, pred, math.nan, "none", None, math.nan,
                              math.nan, False, fp_stable)
    kind = res.kind if res.converged else "failed"
    return BifurcationRow(lr, lr - dr.eta_c, pred, res.half_amplitude, kind, res.stable,
                          res.max_multiplier, res.residual, res.converged, fp_stable)


def bifurcation_sweep(
    objective: Objective,
    reduction: Reduction,
    lrs: Sequence[float],
    *,
    direction: int = 0,
    tol: float = 1e-10,
    max_iter: int = 60,
    n_floquet: int = 4,
    dense_max: int = 600,
    deflate: bool = True,
    checks: bool = False,
) -> BifurcationSweep:
    """Continue the period-two branch of ``direction`` over ``lrs``.

    Learning rates on the side where the reduction predicts orbits are solved
    in order of distance from ``η_c``: the first from the predicted orbit, each
    next one from the previous solution (falling back to the prediction when
    that solve fails or lands on a fixed point). On the other side no branch
    is predicted; those rows have kind ``none``. Every row also records the
    GD stability of ``x*`` itself (``max_i |1 − η λ_i| < 1`` over the reduced
    eigenvalues and the smallest one).
    """
    dr = reduction.directions[direction]
    lrs = [float(v) for v in lrs]
    if any(not (v > 0 and math.isfinite(v)) for v in lrs):
        raise ValueError("learning rates must be positive and finite")
    results = _continue_branch(objective, reduction, lrs, direction, tol=tol,
                               max_iter=max_iter, n_floquet=n_floquet, dense_max=dense_max,
                               deflate=deflate, checks=checks)
    orbits = [results.get(i) for i in range(len(lrs))]
    rows = [_row(reduction, dr, lr, res) for lr, res in zip(lrs, orbits, strict=True)]
    return BifurcationSweep(reduction, direction, rows, orbits)
