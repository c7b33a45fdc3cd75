"""Figures of a flows run: GD beside gradient flow and the central flow.

``plots/flows_loss.png`` (GD's loss at every step from ``gd_steps.csv``, its
centred moving average, each flow's loss and the central flow's predicted loss),
``plots/flows_sharpness.png`` (sharpness against 2/η),
``plots/flows_distance.png`` (‖x_flow − x_GD‖) and, with the central flow,
``plots/flows_sigma.png`` (its X against GD's measured oscillation).
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
    """Write the figures of ``out_dir`` (a ``eoskit flow`` output folder)."""
    out_dir = Path(out_dir)
    rows = store.read_rows(out_dir / "flows.csv")
    steps_file = out_dir / "gd_steps.csv"  # absent in folders written before it existed
    gd_steps = store.read_rows(steps_file) if steps_file.is_file() else []
    cfg = store.read_json(out_dir / "flow_config.json")
    lr = cfg["settings"]["lr"]
    window = cfg["settings"]["window"]
    onset = store.read_json(out_dir / "summary.json").get("eos_onset_step")
    flows = [f for f in ("gd", "gradient", "central") if any(r["flow"] == f for r in rows)]
    title = f"η = {lr:g}, {cfg['n_params']} parameters"
    folder = out_dir / "plots"
    folder.mkdir(exist_ok=True)
    paths = [_save(_loss_figure(rows, gd_steps, flows, title, window, onset),
                   folder / "flows_loss.png"),
             _save(_sharpness_figure(rows, flows, title, lr, onset),
                   folder / "flows_sharpness.png"),
             _save(_distance_figure(rows, flows, title, onset), folder / "flows_distance.png")]
    if "central" in flows:
        paths.append(_save(_sigma_figure(rows, title, onset), folder / "flows_sigma.png"))
    return paths


def _loss_figure(rows, gd_steps, flows, title, window, onset):
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for f in flows:
        if f == "gd" and gd_steps:  # every step: recorded rows alone alias the 2-cycle
            ax.plot(*_series([{**r, "flow": "gd"} for r in gd_steps], "gd", "loss"),
                    label="gd loss (every step)", **_STYLE["gd"])
            continue
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


def _sigma_figure(rows, title, onset):
    """X's top eigenvalue and trace against GD's (uᵀ(x_{t+1} − x_t))²/4, on a log axis."""
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for flow, name, label, style in (
            ("gd", "half_amplitude_sq", "gd: (u₁ᵀΔx)²/4", dict(color="0.55", lw=0.7)),
            ("gd", "trace_half_amplitude_sq", "gd: Σᵢ (uᵢᵀΔx)²/4, top k",
             dict(color="0.2", lw=0.7)),
            ("central", "sigma_top", "central: top eigenvalue of X",
             dict(color="tab:orange", lw=1.4)),
            ("central", "trace_sigma", "central: trace X", dict(color="tab:red", lw=1.2,
                                                                  ls="--"))):
        t, v = _series(rows, flow, name)
        # a log axis: zeros are "no X yet" (central) or no measurable step (gd)
        keep = [(a, b) for a, b in zip(t, v, strict=True) if b > 0]
        if keep:
            ax.plot(*zip(*keep, strict=True), label=label, **style)
    _onset(ax, onset)
    ax.set(xlabel="step (flow time)", ylabel="squared half-amplitude", title=title,
           yscale="log")
    ax.legend(fontsize=8)
    return fig


def _onset(ax, onset) -> None:
    if onset is not None:
        ax.axvline(onset, color="0.6", ls=":", lw=1)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
