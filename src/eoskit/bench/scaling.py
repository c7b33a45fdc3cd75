"""Section ``scaling``: seconds per gradient, HVP and tracked step as the problem grows.

The training set doubles (Fashion-MNIST 1k-8k; the synthetic teacher-student
set where Fashion-MNIST is not installed) and the width doubles (50-800).

>>> rows = [{"axis": "n", "method": "m", "value": n, "seconds": 2e-3 * n} for n in (1, 2, 4)]
>>> round(loglog_slope(rows, "n", "m"), 6)
1.0
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from torch import Tensor

from eoskit.bench.bench_problem import BenchProblem, build
from eoskit.bench.rows import median_time, row
from eoskit.bench.setting import TRACK_TOL, Setting
from eoskit.eigs import LanczosTracker

WARM_STEPS = 5  # the first GD steps from init turn the eigenvectors fast: not timed


def _scaling_dataset(setting: Setting, log) -> str:
    dataset = setting.scaling_dataset
    try:
        build(setting, "float32", n_train=max(setting.scaling_n), dataset=dataset)
    except Exception as e:  # e.g. Debian's dataset-fashion-mnist is not installed
        log(f"  scaling: {dataset} unavailable ({e}); using the synthetic teacher-student set")
        dataset = "synthetic"
    return dataset


def _tracked_step(prob: BenchProblem, x: Tensor, steps: int) -> tuple[float, float]:
    """Median seconds and mean HVPs of a GD step with the sharpness tracked (tol 1e-4)."""
    obj, d = prob.obj, prob.dim
    tr = LanczosTracker(1, TRACK_TOL, 0, criterion="eigenvalue")
    with obj.at(x) as point:  # one cold solve first
        tr.measure(point.hvp, d, prob.dtype, x.device)
    times, hvps = [], []
    for i in range(steps + WARM_STEPS):
        before = obj.hvp_count
        t0 = time.perf_counter()
        with obj.at(x) as point:
            tr.measure(point.hvp, d, prob.dtype, x.device)
            x = (x - prob.setting.lr * point.grad).detach()
        if i >= WARM_STEPS:
            times.append(time.perf_counter() - t0)
            hvps.append(obj.hvp_count - before)
    return statistics.median(times), float(np.mean(hvps))


def _scaling_point(setting: Setting, axis: str, value: int, kw: dict, log) -> list[dict]:
    prob, x = build(setting, "float32", **kw)
    obj, d = prob.obj, prob.dim
    label = (f"{kw.get('dataset', setting.dataset)} n={kw.get('n_train', setting.n_train)} "
             f"width={kw.get('width', setting.width)} float32 init")
    v = torch.randn(d, generator=torch.Generator().manual_seed(0), dtype=torch.float64).float()
    t_grad, _ = median_time(lambda: obj.value_and_grad(x), setting.cost_repeats)
    with obj.at(x) as point:
        t_hvp, _ = median_time(lambda: point.hvp(v), setting.cost_repeats)
    t_step, hvps = _tracked_step(prob, x, setting.scaling_track_steps)
    where = dict(axis=axis, value=value, params=d)
    if log:
        log(f"  scaling {axis}={value}: grad {t_grad * 1e3:.1f} ms, HVP {t_hvp * 1e3:.1f} ms, "
            f"tracked step {t_step * 1e3:.1f} ms ({hvps:.1f} HVPs)")
    return [
        row("scaling", "eoskit HVP retained graph", label, 1, t_hvp, None, **where,
            per_gradient=t_hvp / t_grad),
        row("scaling", "gradient", label, 0, t_grad, None, **where),
        row("scaling", "eoskit tracked step (tol 1e-4)", label, hvps, t_step, None, **where,
            per_gradient=t_step / t_grad),
    ]


def bench_scaling(setting: Setting, peers: bool, log=print) -> list[dict]:
    dataset = _scaling_dataset(setting, log)
    grid = [("n", n, dict(n_train=n, dataset=dataset)) for n in setting.scaling_n]
    grid += [("width", w, dict(width=w)) for w in setting.scaling_widths]
    rows = []
    for axis, value, kw in grid:
        rows += _scaling_point(setting, axis, value, kw, log)
    return rows


def loglog_slope(rows: list[dict], axis: str, method: str, x: str = "value") -> float | None:
    """The fitted slope of log seconds against log ``x`` along ``axis`` (1: linear)."""
    pts = [(r[x], r["seconds"]) for r in rows
           if r.get("axis") == axis and r["method"] == method and r["seconds"]]
    if len(pts) < 2:
        return None
    a = np.log([p[0] for p in pts])
    b = np.log([p[1] for p in pts])
    return float(np.polyfit(a, b, 1)[0])
