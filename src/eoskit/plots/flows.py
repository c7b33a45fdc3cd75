"""Figures of a flows run: GD beside gradient flow and the central flow.

``plots/flows_loss.png`` (GD's loss, its centred moving average, each flow's
loss and the central flow's predicted loss), ``plots/flows_sharpness.png``
(sharpness against 2/η) and ``plots/flows_distance.png`` (‖x_flow − x_GD‖).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from eoskit import store  # noqa: E402

_STYLE = {"gd": dict(color="0.35", lw=0.8), "gradient": dict(color="tab:blue", lw=1.4),
          "central": dict(color="tab:orange", lw=1.4)}


def _series(rows: list[dict], flow: str, name: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[name]) for r in rows if r["flow"] == flow and r.get(name) is not None]
    pts = [(t, float(v)) for t, v in pts if math.isfinite(float(v))]
    return [t for t, _ in pts], [v for _, v in pts]


def plot_flows(out_dir: str | Path) -> list[Path]:
    """Write the three figures of ``out_dir`` (a ``eoskit flow`` output folder)."""
    out_dir = Path(out_dir)
    rows = store.read_rows(out_dir / "flows.csv")
    cfg = store.read_json(out_dir / "flow_config.json")
    lr = cfg["settings"]["lr"]
    window = cfg["settings"]["window"]
    onset = store.read_json(out_dir / "summary.json").get("eos_onset_step")
    flows = [f for f in ("gd", "gradient", "central") if any(r["flow"] == f for r in rows)]
    title = f"η = {lr:g}, {cfg['n_params']} parameters"
    folder = out_dir / "plots"
    folder.mkdir(exist_ok=True)
    return [_save(_loss_figure(rows, flows, title, window, onset), folder / "flows_loss.png"),
            _save(_sharpness_figure(rows, flows, title, lr, onset),
                  folder / "flows_sharpness.png"),
            _save(_distance_figure(rows, flows, title, onset), folder / "flows_distance.png")]


def _loss_figure(rows, flows, title, window, onset):
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for f in flows:
        ax.plot(*_series(rows, f, "loss"), label=f"{f} loss", **_STYLE[f])
    ax.plot(*_series(rows, "gd", "predicted_loss"), color="k", lw=1.4, ls="--",
            label=f"gd loss, centred mean over {window} steps")
    if "central" in flows:
        ax.plot(*_series(rows, "central", "predicted_loss"), color="tab:red", lw=1.4,
                label="central prediction L + ½⟨H, Σ⟩")
    _onset(ax, onset)
    ax.set(xlabel="step (flow time)", ylabel="loss", title=title, yscale="log")
    ax.legend(fontsize=8)
    return fig


def _sharpness_figure(rows, flows, title, lr, onset):
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for f in flows:
        ax.plot(*_series(rows, f, "sharpness"), label=f, **_STYLE[f])
    ax.axhline(2.0 / lr, color="k", ls="--", lw=1, label="2/η")
    _onset(ax, onset)
    ax.set(xlabel="step (flow time)", ylabel="top Hessian eigenvalue", title=title)
    ax.legend(fontsize=8)
    return fig


def _distance_figure(rows, flows, title, onset):
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for f in flows:
        if f != "gd":
            ax.plot(*_series(rows, f, "dist_to_gd"), label=f"‖x_{f} − x_gd‖", **_STYLE[f])
    _onset(ax, onset)
    ax.set(xlabel="step (flow time)", ylabel="distance to GD", title=title)
    ax.legend(fontsize=8)
    return fig


def _onset(ax, onset) -> None:
    if onset is not None:
        ax.axvline(onset, color="0.6", ls=":", lw=1)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
