"""Figures of a sweep: sharpness curves with their thresholds, plateau against threshold."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from eoskit import store  # noqa: E402

_THRESHOLD_NAMES = {"gd": "2/η", "sgd": "2/η"}


def plot_sweep(sweep_dir: str | Path, indexed: list[tuple[dict, Path]]) -> list[Path]:
    """``plots/sharpness.png`` (curves, each with its threshold in the same colour) and
    ``plots/plateau.png`` (median sharpness after onset against the threshold, y = x).

    ``indexed``: the sweep's ``runs.csv`` rows, each with its run directory
    (:func:`eoskit.sweep.index.indexed_runs`); figures read runs, not a sweep's index."""
    sweep_dir = Path(sweep_dir)
    runs = _runs_with_data(indexed)
    folder = sweep_dir / "plots"
    folder.mkdir(exist_ok=True)
    colour = _lr_colours(runs)
    opt = runs[0]["optimizer"] if runs else "gd"
    tname = _THRESHOLD_NAMES.get(opt, "threshold")
    return [_save(_sharpness_figure(runs, colour, tname), folder / "sharpness.png"),
            _save(_plateau_figure(runs, colour, tname), folder / "plateau.png")]


def _lr_colours(runs: list[dict]):
    """One colour per learning rate: tab10 for a few, viridis for many."""
    lrs = sorted({r["lr"] for r in runs})
    many = len(lrs) > 10
    cmap = plt.get_cmap("viridis" if many else "tab10")

    def colour(lr):
        i = lrs.index(lr)
        return cmap(i / max(len(lrs) - 1, 1)) if many else cmap(i % 10)

    return colour


def _sharpness_figure(runs: list[dict], colour, tname: str):
    fig, ax = plt.subplots(figsize=(7.5, 4.5), constrained_layout=True)
    labelled = set()
    for r in runs:
        if not r["steps"]:
            continue
        c = colour(r["lr"])
        first = r["lr"] not in labelled
        ax.plot(r["steps"], r["sharpness"], color=c, lw=1.1, alpha=0.9 if first else 0.5,
                label=f"η={r['lr']:g}" if first else None)
        if first:
            ax.axhline(r["threshold"], color=c, ls="--", lw=1)
            labelled.add(r["lr"])
    finite = [v for r in runs for v in r["sharpness"]]
    if finite and runs:
        top = 3.0 * max(r["threshold"] for r in runs)
        if max(finite) > top:  # a diverged run's spike would flatten every other curve
            ax.set_ylim(min(0.0, min(finite)), top)
    ax.set(xlabel="step", ylabel="sharpness λ_max",
           title=f"sharpness per learning rate (dashed: {tname}, same colour)")
    if labelled:
        ax.legend(fontsize=8, ncol=2 if len(labelled) > 6 else 1)
    return fig


def _plateau_figure(runs: list[dict], colour, tname: str):
    fig, ax = plt.subplots(figsize=(5.5, 5), constrained_layout=True)
    pts = [r for r in runs if r["plateau"] is not None and r["status"] == "completed"]
    diverged = sum(r["status"] == "diverged" for r in runs)
    missing = len(runs) - len(pts) - diverged
    notes = ([f"{missing} without EoS onset"] if missing else []) + (
        [f"{diverged} diverged"] if diverged else [])
    for r in pts:
        ax.plot(r["threshold"], r["plateau"], "o", color=colour(r["lr"]), ms=6)
        if r["plateau_max"] is not None:
            ax.plot(r["threshold"], r["plateau_max"], "_", color=colour(r["lr"]), ms=10)
    xs = [r["threshold"] for r in pts] or [r["threshold"] for r in runs] or [1.0]
    lo, hi = min(xs) * 0.8, max(xs) * 1.2
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.set(xlabel=f"{tname}" + (" (threshold)" if tname == "2/η" else ""),
           ylabel="median sharpness after EoS onset",
           title="plateau sharpness vs threshold"
           + (f"\n(not shown: {', '.join(notes)})" if notes else ""))
    if len(xs) > 1 and hi / lo > 5:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.plot([], [], "o", color="gray", label="median after onset")
    ax.plot([], [], "_", color="gray", ms=10, label="max after onset")
    ax.legend(fontsize=8)
    return fig


def _runs_with_data(indexed: list[tuple[dict, Path]]) -> list[dict]:
    """Each indexed run: its config, sharpness curve and plateau."""
    out = []
    for row, run_dir in indexed:
        conf = store.read_json(run_dir / "config.json")
        metrics = run_dir / "metrics.csv"
        rows = store.read_rows(metrics) if metrics.exists() else []
        pts = [(m["step"], float(m["sharpness"])) for m in rows
               if m.get("sharpness") is not None and math.isfinite(m["sharpness"])]
        summary = {}
        if (run_dir / "summary.json").exists():
            summary = store.read_json(run_dir / "summary.json")
        out.append({
            "lr": conf["config"]["lr"], "optimizer": conf["config"]["optimizer"],
            "status": summary.get("status", row.get("status")),
            "threshold": conf["threshold"], "steps": [t for t, _ in pts],
            "sharpness": [v for _, v in pts],
            "plateau": summary.get("sharpness_after_onset_median"),
            "plateau_max": summary.get("sharpness_after_onset_max"),
        })
    return out


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
