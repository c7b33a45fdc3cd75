"""Figures of the whole spectrum along a run (``spectrum.csv``, ``spectrum_nodes.csv``).

* ``plots/spectrum.png``: the SLQ density through training as a heat map
  (eigenvalue against step, log₁₀ density), the threshold 2/η dashed, the tracked
  λ₁ (``metrics.csv``), the Gauss–Newton part's top and λ_min drawn over it.
* ``plots/layers.png``: each module's block λ₁ against step, beside the full λ₁.

The smoothing is :meth:`eoskit.spectrum.SpectralDensity.density`'s; nothing is
measured here.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from eoskit import store  # noqa: E402
from eoskit.spectrum import SpectralDensity  # noqa: E402

SPECTRUM_PNG, LAYERS_PNG = "spectrum.png", "layers.png"
GRID_POINTS = 300


def _column(rows: list[dict], name: str) -> tuple[list[int], list[float]]:
    pts = [(int(r["step"]), float(r[name])) for r in rows if r.get(name) is not None]
    return [t for t, v in pts if math.isfinite(v)], [v for _, v in pts if math.isfinite(v)]


def densities(nodes: list[dict]) -> tuple[list[int], dict[int, SpectralDensity]]:
    """Each measured step's quadrature (``spectrum_nodes.csv`` rows) as a SpectralDensity."""
    by_step: dict[int, dict[int, list[tuple[float, float]]]] = {}
    for r in nodes:
        by_step.setdefault(int(r["step"]), {}).setdefault(int(r["probe"]), []).append(
            (float(r["node"]), float(r["weight"])))
    out = {}
    for step, probes in by_step.items():
        width = max(len(v) for v in probes.values())
        pad = [v + [(0.0, 0.0)] * (width - len(v)) for v in probes.values()]
        arr = np.array(pad, dtype=float)  # (probes, width, 2)
        out[step] = SpectralDensity(arr[..., 0], arr[..., 1], dim=0, n_matvecs=0)
    return sorted(out), out


def plot_spectrum(run_dir: str | Path) -> list[Path]:
    """Write ``plots/spectrum.png`` and ``plots/layers.png`` of a run with ``spectrum.csv``."""
    run_dir = Path(run_dir)
    rows = store.read_rows(run_dir / "spectrum.csv")
    metrics = store.read_rows(run_dir / "metrics.csv") if (
        run_dir / "metrics.csv").exists() else []
    folder = run_dir / "plots"
    folder.mkdir(exist_ok=True)
    steps, dens = densities(store.read_rows(run_dir / "spectrum_nodes.csv"))
    written = []
    if steps:
        written.append(_save(_heat_map(steps, dens, rows, metrics), folder / SPECTRUM_PNG))
    if rows:
        written.append(_save(_layers(rows, metrics), folder / LAYERS_PNG))
    return written


def _edges(points: list[float]) -> np.ndarray:
    """Cell edges around sorted centres (the outer cells as wide as their neighbours)."""
    c = np.asarray(points, dtype=float)
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def _heat_map(steps, dens, rows, metrics):
    thresholds = _column(rows, "threshold")[1]
    top = max([float(d.nodes.max()) for d in dens.values()] + thresholds[-1:])
    lo = min(float(d.nodes.min()) for d in dens.values())
    span = max(top - lo, 1e-12)
    grid = np.linspace(lo - 0.05 * span, top + 0.1 * span, GRID_POINTS)
    sigma = span / 150  # a few grid cells: the quadrature's nodes show as narrow peaks
    z = np.array([dens[t].density(grid, sigma) for t in steps]).T  # (grid, steps)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), constrained_layout=True)
    mesh = ax.pcolormesh(_edges(steps), _edges(list(grid)), np.log10(z + 1e-12 + z.max() * 1e-8),
                         cmap="viridis", shading="flat")
    fig.colorbar(mesh, ax=ax, label="log₁₀ density")
    ax.plot(*_column(rows, "threshold"), "w--", lw=1.2, label="2/η (threshold)")
    t, v = _column(metrics, "sharpness")
    if t:
        ax.plot(t, v, color="tab:red", lw=1.0, label="λ₁ (tracked)")
    ax.plot(*_column(rows, "gn_top"), "o-", color="tab:orange", ms=3, lw=1,
            label="Gauss–Newton top")
    ax.plot(*_column(rows, "lambda_min"), "s-", color="tab:cyan", ms=3, lw=1, label="λ_min")
    ax.set(xlabel="step", ylabel="eigenvalue", ylim=(grid[0], grid[-1]),
           title="Hessian spectral density (SLQ) through training")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def _layers(rows, metrics):
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for name in [k for k in rows[0] if k.startswith("block_")]:
        ax.plot(*_column(rows, name), "o-", ms=3, lw=1.2,
                label=f"module {name.removeprefix('block_')}")
    t, v = _column(metrics, "sharpness")
    if t:
        ax.plot(t, v, color="k", lw=0.8, alpha=0.6, label="λ₁ (whole Hessian)")
    ax.plot(*_column(rows, "threshold"), "k--", lw=1, label="2/η")
    ax.set(xlabel="step", ylabel="top eigenvalue of the diagonal block",
           title="Per-module sharpness")
    ax.legend(fontsize=8)
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
