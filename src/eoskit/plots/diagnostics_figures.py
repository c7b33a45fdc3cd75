"""Figures of the edge-coupling diagnostics (``diagnostics.csv``, :mod:`eoskit.diagnostics`).

:func:`plot_diagnostics` writes three PNGs; :func:`diagnostics_figures` builds the same
figures without saving them. Steps with ``smooth_flag = False`` are marked in the curvature
figure (a line with gid ``"non_smooth_steps"``) and in the residual figure (one vertical
band per step, gid ``"non_smooth_step"``); :func:`non_smooth_steps` lists them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from eoskit import store  # noqa: E402

FIGURE_NAMES = ("diag_curvatures", "diag_localisation", "diag_residuals")
MARKER_GID = "non_smooth_steps"  # the ✗ markers on the curvature figure
BAND_GID = "non_smooth_step"  # each vertical band on the residual figure

Rows = str | os.PathLike | Iterable[Mapping]


def _rows(rows_or_csv_path: Rows) -> list[dict]:
    if isinstance(rows_or_csv_path, (str, os.PathLike)):
        return store.read_rows(Path(rows_or_csv_path))
    return [dict(r) for r in rows_or_csv_path]


def _col(rows: list[dict], key: str) -> np.ndarray:
    return np.asarray(store.column(rows, key), dtype=float)  # (n,)


def _is_non_smooth(flag) -> bool:
    """``smooth_flag`` False (typed rows, or the contract's text ``false`` in raw rows);
    a missing or empty cell counts as smooth."""
    if isinstance(flag, (bool, np.bool_)):
        return not flag
    return flag == "false"


def _steps(rows: list[dict]) -> np.ndarray:
    steps = _col(rows, "step")  # (n,)
    return np.arange(len(rows), dtype=float) if np.all(np.isnan(steps)) else steps


def _rough(rows: list[dict]) -> np.ndarray:
    return np.array([_is_non_smooth(r.get("smooth_flag")) for r in rows], dtype=bool)  # (n,)


def non_smooth_steps(rows_or_csv_path: Rows) -> np.ndarray:
    """The steps the figures mark as non-smooth (``smooth_flag = False``), in row order.

    >>> non_smooth_steps([{"step": 0, "smooth_flag": True}, {"step": 1, "smooth_flag": False},
    ...                   {"step": 2, "smooth_flag": None}]).tolist()
    [1.0]
    """
    rows = _rows(rows_or_csv_path)
    return _steps(rows)[_rough(rows)]


def _curvatures_figure(rows: list[dict], steps: np.ndarray, rough: np.ndarray, lr: float):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, label, style in (
        ("sharpness", r"sharpness $\lambda_{\max}(x_t)$", dict(color="k", lw=1.5)),
        ("kappa_quad", r"$\kappa_t$ (quadrature)", dict(color="C0", lw=1.2)),
        ("kappa_loss", r"$\kappa_t$ (from the loss)", dict(color="C2", ls=":", lw=1.5)),
        ("q_bar", r"$\bar q_t$", dict(color="C1", lw=1.2)),
    ):
        ax.plot(steps, _col(rows, key), label=label, marker=".", ms=3, **style)
    ax.axhline(2.0 / lr, color="r", ls="--", lw=1, label=rf"$2/\eta$ = {2.0 / lr:.4g}")
    if rough.any():
        ax.plot(steps[rough], _col(rows, "kappa_quad")[rough], "x", color="m",
                label="non-smooth step", ms=6, gid=MARKER_GID)
    ax.set_xlabel("step t")
    ax.set_ylabel("curvature")
    ax.set_title("Effective curvatures and sharpness")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _localisation_figure(rows: list[dict], steps: np.ndarray):
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw=dict(width_ratios=[2, 1]))
    tb, tt = _col(rows, "tau_bar"), _col(rows, "tau_tilde")
    a1.scatter(steps, tb, s=10, label=r"$\bar\tau$: $\varphi(\bar\tau) = \bar q$", color="C1")
    a1.scatter(steps, tt, s=10, label=r"$\tilde\tau$: $\varphi(\tilde\tau) = \kappa$", color="C0",
               marker="^")
    a1.set_ylim(-0.05, 1.05)
    a1.set_xlabel("step t")
    a1.set_ylabel(r"$\tau$ on the segment $x_t + \tau s_t$")
    a1.set_title("Mean-value localisation points")
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    bins = np.linspace(0, 1, 21)
    a2.hist(tb[np.isfinite(tb)], bins=bins, alpha=0.6, label=r"$\bar\tau$", color="C1")
    a2.hist(tt[np.isfinite(tt)], bins=bins, alpha=0.6, label=r"$\tilde\tau$", color="C0")
    a2.set_xlabel(r"$\tau$")
    a2.set_ylabel("count")
    a2.legend(fontsize=8)
    return fig


def _residuals_figure(rows: list[dict], steps: np.ndarray, rough: np.ndarray):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    tiny = 1e-17  # exact zeros are drawn here
    for key, label in (
        ("grad_x_residual", r"GD pair $\|\nabla_x A\|/\|g\|$"),
        ("recurrence_residual", "step recurrence"),
        ("grad_diff_residual", r"$\bar H s$ vs $g(x+s) - g(x)$"),
        ("loss_change_residual", "loss change"),
        ("kappa_mismatch", r"$\kappa$: quadrature vs loss"),
    ):
        v = _col(rows, key)
        if np.isfinite(v).any():
            ax.semilogy(steps, np.maximum(v, tiny), marker=".", ms=3, lw=0.8, label=label)
    if rough.any():
        for st in steps[rough]:
            ax.axvline(st, color="m", alpha=0.15, lw=2, gid=BAND_GID)
        ax.plot([], [], color="m", alpha=0.4, lw=4, label="smooth_flag = False")
    ax.set_xlabel("step t")
    ax.set_ylabel("relative residual (0 drawn at 1e-17)")
    ax.set_title("Exact-identity residuals")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig


def diagnostics_figures(rows_or_csv_path: Rows, lr: float) -> dict[str, Figure]:
    """The three figures of :func:`plot_diagnostics`, by file stem, unsaved and open
    (close them with ``plt.close``)."""
    rows = _rows(rows_or_csv_path)
    steps, rough = _steps(rows), _rough(rows)
    figs = (_curvatures_figure(rows, steps, rough, lr), _localisation_figure(rows, steps),
            _residuals_figure(rows, steps, rough))
    return dict(zip(FIGURE_NAMES, figs, strict=True))


def plot_diagnostics(
    rows_or_csv_path: Rows, out_dir: str | os.PathLike, lr: float,
) -> list[Path]:
    """Three PNGs from diagnostics rows (or ``diagnostics.csv``): curvatures, τ̄/τ̃, residuals.

    Returns the written paths: ``diag_curvatures.png`` (κ_quad, κ_loss, q̄, sharpness vs step,
    with the 2/η line), ``diag_localisation.png`` (τ̄, τ̃ vs step on [0, 1], and their
    histograms), ``diag_residuals.png`` (identity residuals on a log axis; non-smooth steps
    marked).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in diagnostics_figures(rows_or_csv_path, lr).items():
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
