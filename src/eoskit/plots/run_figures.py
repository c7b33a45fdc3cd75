"""Figures of a run: loss, sharpness against its threshold, effective curvature, and the
forcing gap 2(L_0 − L_T)/S_T against S_T (docs/theory.md §3)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from eoskit import store  # noqa: E402
from eoskit.metrics.summary import (  # noqa: E402
    forcing_gap_curve,
    forcing_gap_fit_range,
    forcing_gap_slope,
)
from eoskit.optim import rule_class  # noqa: E402


def _series(rows, name):
    pts = [(int(r["step"]), float(r[name])) for r in rows if r.get(name) is not None]
    pts = [(t, v) for t, v in pts if math.isfinite(v)]
    return [t for t, _ in pts], [v for _, v in pts]


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write ``plots/loss.png``, ``plots/sharpness.png``, ``plots/eff_curvature.png`` and
    ``plots/forcing_gap.png``."""
    run_dir = Path(run_dir)
    rows = store.read_rows(run_dir / "metrics.csv")
    cfg = store.read_json(run_dir / "config.json")
    c = cfg["config"]
    threshold = cfg["threshold"]
    title = f"{c['dataset']} · {c['model']} · {c['loss']} · {c['optimizer']} η={c['lr']:g}"
    folder = run_dir / "plots"
    folder.mkdir(exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    ax.plot(*_series(rows, "loss"), label="train loss", lw=1.2)
    t, v = _series(rows, "test_loss")
    if t:
        ax.plot(t, v, label="test loss", lw=1.2)
    ax.set(xlabel="step", ylabel="loss", title=title, yscale="log")
    ax.legend()
    written.append(_save(fig, folder / "loss.png"))

    written.append(_save(sharpness_figure(rows, c, threshold, title), folder / "sharpness.png"))

    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    t, v = _series(rows, "eff_curvature")
    ax.plot(t, v, lw=0.6, alpha=0.6, label="κ_t (from loss change)")
    ax.plot(*_series(rows, "eff_curvature_mean"), lw=1.5, label="step-weighted mean of κ")
    ax.plot(*_series(rows, "sharpness"), lw=1.0, label="sharpness")
    ax.axhline(2.0 / c["lr"], color="k", ls="--", lw=1, label="2/η")
    if v:
        lo, hi = sorted(v)[len(v) // 100], sorted(v)[-1 - len(v) // 100]
        span = max(hi, 2.0 / c["lr"]) - min(lo, 0)
        ax.set_ylim(min(lo, 0) - 0.05 * span, max(hi, 2.0 / c["lr"]) + 0.1 * span)
    ax.set(xlabel="step", ylabel="curvature", title=title)
    ax.legend(fontsize=8)
    written.append(_save(fig, folder / "eff_curvature.png"))
    written.append(_save(forcing_gap_figure(rows, title), folder / "forcing_gap.png"))
    return written


def sharpness_figure(rows: list[dict], c: dict, threshold: float, title: str):
    """The sharpness against its threshold; for an adaptive rule the threshold is on the
    preconditioned sharpness λ₁(P^{-1/2}HP^{-1/2}), drawn with the raw λ_max beside it
    (log axis: the two differ by orders of magnitude)."""
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    rule = rule_class(c["optimizer"])
    pre = _series(rows, "precond_sharpness")
    k = c.get("neigs", 1)
    if k > 1 and not pre[0]:
        for i in range(k):
            ax.plot(*_series(rows, f"eig_{i + 1}"), lw=1.0, label=f"λ_{i + 1}")
    else:
        ax.plot(*_series(rows, "sharpness"), lw=1.2, label="sharpness λ_max(H)")
    label = rule.threshold_formula
    if pre[0]:
        ax.plot(*pre, lw=1.2, label="preconditioned sharpness λ_max(P^{-1/2}HP^{-1/2})")
        label = f"{label} (threshold of the preconditioned sharpness)"
        ax.set_yscale("log")
    ax.axhline(threshold, color="k", ls="--", lw=1, label=label)
    ax.set(xlabel="step", ylabel="top eigenvalue", title=title)
    ax.legend(fontsize=8)
    return fig


def forcing_gap_figure(rows: list[dict], title: str):
    """2(L_0 − L_T)/S_T against S_T = Σ_{t<T} |s_t|², log–log, with its fitted slope.

    The weighted mean of κ equals 2/η minus this gap by algebra; that the gap
    falls like 1/S_T (slope −1) because L is bounded below is the content.
    """
    sq, gap = forcing_gap_curve(rows)
    pos = [i for i, g in enumerate(gap) if g > 0]
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    ax.loglog([sq[i] for i in pos], [gap[i] for i in pos], ".", ms=3,
              label="2(L₀ − L_T)/S_T" + (" (T with L_T ≥ L₀ omitted)" if len(pos) < len(gap)
                                         else ""))
    slope = forcing_gap_slope(sq, gap)
    if slope is not None:
        fit = forcing_gap_fit_range(sq, gap)
        lx = [math.log(sq[i]) for i in fit]
        ly = [math.log(gap[i]) for i in fit]
        x0, y0 = sum(lx) / len(lx), sum(ly) / len(ly)
        ends = [sq[fit[0]], sq[fit[-1]]]
        ax.loglog(ends, [math.exp(y0 + slope * (math.log(e) - x0)) for e in ends], "-", lw=2,
                  label=f"fit on the later half: slope {slope:.3f}")
        ax.loglog(ends, [math.exp(y0 - (math.log(e) - x0)) for e in ends], "k--", lw=1,
                  label="slope −1 (L bounded below)")
    ax.set(xlabel="S_T = Σ|s_t|²", ylabel="2/η − weighted mean κ", title=title)
    if pos:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no T with L_T < L₀ yet", ha="center", transform=ax.transAxes)
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
