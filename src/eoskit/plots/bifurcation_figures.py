"""The bifurcation diagram of a period-two branch (:func:`eoskit.orbits.bifurcation_sweep`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from eoskit.orbits.continuation import BifurcationSweep

__all__ = ["plot_bifurcation"]


def _eta_grid(sweep: BifurcationSweep, eta_c: float, n: int = 400) -> np.ndarray:
    """(n,) learning rates spanning the sweep and, when finite, ``η_c``."""
    lrs = np.array([r.lr for r in sweep.rows])
    lo, hi = float(lrs.min()), float(lrs.max())
    if math.isfinite(eta_c):  # keep η_c in view
        pad = 0.05 * (max(hi, eta_c) - min(lo, eta_c))
        lo, hi = min(lo, eta_c - pad), max(hi, eta_c + pad)
    return np.linspace(lo, hi, n)


def _plot_fixed_point(ax, sweep: BifurcationSweep, grid: np.ndarray) -> None:
    """The amplitude-0 branch: solid where x* is GD-stable, dashed where not."""
    fp_stable = np.array([sweep.reduction.fixed_point_stable(v) for v in grid])
    zero = np.zeros_like(grid)
    ax.plot(np.where(fp_stable, grid, np.nan), zero, "-", color="k", lw=2,
            label="fixed point (stable)")
    ax.plot(np.where(~fp_stable, grid, np.nan), zero, "--", color="k", lw=1.2,
            label="fixed point (unstable)")


def _plot_measured(ax, sweep: BifurcationSweep) -> None:
    """Converged orbits: filled circles when stable, open when not."""
    meas = sweep.measured()
    st = [r for r in meas if r.stable]
    un = [r for r in meas if not r.stable]
    if st:
        ax.plot([r.lr for r in st], [r.measured_half_amplitude for r in st], "o",
                color="tab:red", label="orbit (stable)")
    if un:
        ax.plot([r.lr for r in un], [r.measured_half_amplitude for r in un], "o",
                mfc="none", color="tab:red", label="orbit (unstable)")


def plot_bifurcation(sweep: BifurcationSweep, path: str | Path, title: str | None = None) -> Path:
    """Bifurcation diagram: half-amplitude vs η (measured points, predicted curve, η_c).

    Stable orbits are filled circles, unstable ones open circles; the fixed
    point's branch (amplitude 0) is solid where GD-stable and dashed where not.
    """
    path = Path(path)
    dr = sweep.reduction.directions[sweep.direction]
    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    grid = _eta_grid(sweep, dr.eta_c)
    pred = np.array([dr.predicted_half_amplitude(v) for v in grid])
    ax.plot(grid, pred, "-", color="tab:blue", lw=1.2, label="predicted  √((2/η−λ)/(2Q))")
    _plot_fixed_point(ax, sweep, grid)
    _plot_measured(ax, sweep)
    ax.axvline(dr.eta_c, color="tab:gray", ls=":", label=f"η_c = {dr.eta_c:.5g}")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("half-amplitude a = |x − y|/2")
    ax.set_title(title or f"period-two branch, λ = {dr.eigenvalue:.5g}, Q = {dr.Q:.4g} "
                          f"({dr.side})", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
