"""``eoskit bench monitor``: what a :class:`~eoskit.monitor.Monitor` costs a Transformer loop.

For one setting (:mod:`eoskit.bench.monitor_settings`), optimiser and ``every``:

1. **memory**: a plain loop runs two steps with the peak resident memory
   counter reset (``/proc/self/clear_refs``), then the Monitor is attached and
   the loop runs to its first measurement, then on to the second: the peaks
   above the plain loop's (MB, and in model-sized vectors), first and warm (the
   plain twin of step 2, alive for the warm one, has its parameters, gradients and
   optimiser state taken off);
2. **time**: a copy of the model and its optimiser (same state) then trains on
   the same batches *alternately* with the monitored one, step by step, so
   both loops see the same machine load; the ratio of their summed step times
   is the Monitor's overhead, and the steady state's (measurements after the
   first) is also given from the cost columns (``measure_steps / every``);
3. **accuracy**: after each measurement, outside the timers, a reference solve
   at the same parameters (Lanczos, eigenvalue criterion, tol 1e-5, started
   from the Monitor's vector plus an equal random part) for the raw and the
   preconditioned sharpness; the relative error of each reported value, and whether
   it lies within the error estimate the row states (``eig_error_estimate``).

``raw=False`` measures the preconditioned sharpness alone (``Monitor(raw_sharpness=False)``,
AdamW only); ``max_warm_products`` caps each warm measurement and ``criterion`` is the
eigensolver's stopping test (the Monitor's options).

Rows: one per (setting, optimiser, every) with the products per measurement
(first, steady median), errors, times and memory.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import numpy as np
import torch

from eoskit.bench.monitor_settings import (
    SETTINGS,
    batches,
    build_model,
    make_optimizer,
    next_token_loss,
)
from eoskit.eigs import lanczos, preconditioned_matvec
from eoskit.metrics.columns import PRECOND_ERROR
from eoskit.monitor import Monitor

REF_TOL = 1e-5


def peak_mb(device: str = "cpu") -> float | None:
    """Peak memory since the last :func:`reset_peak`, MB: the GPU's allocated memory on CUDA,
    else the resident set (Linux)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak(device: str = "cpu") -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def train_step(model, opt, ids) -> float:
    opt.zero_grad(set_to_none=True)
    loss = next_token_loss(model(ids), ids)
    loss.backward()
    opt.step()
    return float(loss.detach())  # a GPU loop synchronises here too


def bench_start(setting: str, optimizer: str, seed: int = 0, device: str = "cpu"):
    """The bench's model, optimiser, batch stream and measurement set (``(ids, ids)``'s
    ``ids``) for a setting and seed, so a script can stand at the bench's own points."""
    s = SETTINGS[setting]
    model = build_model(s, seed).to(device)
    opt = make_optimizer(optimizer, model, s.lr[optimizer])
    stream = (b.to(device) for b in batches(s, model.vocab, seed + 1))
    probe = torch.randint(0, model.vocab, (s.batch, s.seq),
                          generator=torch.Generator().manual_seed(seed + 2)).to(device)
    return model, opt, stream, probe


def bench_after(setting: str, optimizer: str, steps: int, seed: int = 0):
    """:func:`bench_start` on 2 torch threads, trained ``steps`` steps: a script's model at a
    point of the bench's own trajectory."""
    torch.set_num_threads(2)
    model, opt, stream, probe = bench_start(setting, optimizer, seed)
    for _ in range(steps):
        train_step(model, opt, next(stream))
    return model, opt, stream, probe


def bench_operator(setting: str, optimizer: str, seed: int = 0, device: str = "cpu"):
    """:func:`bench_start`'s model, optimiser and batches, with a Monitor that only supplies
    the objective on the measurement set and the optimiser's ``P`` (it never measures;
    its products are exact, by double backward), for scripts that study the operators."""
    model, opt, stream, probe = bench_start(setting, optimizer, seed, device)
    mon = Monitor(model, next_token_loss, (probe, probe), every=10**9, optimizer=opt,
                  curvature=False, hvp_method="retained")
    return model, opt, stream, mon


def _reference(mon: Monitor, eig_vec, target: str, p) -> float:
    """A tight solve at the Monitor's current parameters (outside the timers)."""
    obj = mon.objective
    x = obj.x0()
    with torch.enable_grad(), obj.at(x) as point:
        mv = point.hvp if target == "raw" else preconditioned_matvec(point.hvp, p)
        res = lanczos(mv, obj.dim, 1, tol=REF_TOL, criterion="eigenvalue", dtype=x.dtype,
                      device=x.device,
                      v0=eig_vec, warm_noise=1.0, max_iter=40, seed=17)
    return float(res.eigenvalues[0])


ESTIMATE_COLUMNS = {"raw": "eig_error_estimate", "pre": PRECOND_ERROR}


def _check(mon: Monitor, row: dict) -> dict:
    """Per target: the row value's relative error against a reference solve, and the
    relative error estimate the row states."""
    out = {}
    p = mon.preconditioner()
    for target, col in (("raw", "sharpness"), ("pre", "precond_sharpness")):
        if row.get(col) is None or (target == "pre" and p is None):
            continue
        carried = getattr(mon.meter.tracker, "carried", None)
        vec = carried[target][:, 0] if isinstance(carried, dict) else None  # its own space
        ref = _reference(mon, vec, target, p)
        out[target] = (abs(row[col] / ref - 1.0), row.get(ESTIMATE_COLUMNS[target]))
    return out


def bench_monitor(setting: str, optimizer: str, every: int, steps: int, *, seed: int = 0,
                  references: bool = True, device: str = "cpu", raw: bool = True,
                  max_warm_products: int | None = None, criterion: str = "eigenvalue",
                  image_dtype: torch.dtype | None = None, tol: float = 1e-3,
                  mode: str = "auto", hvp_method: str | None = None, log=print) -> dict:
    """One row: products, errors, time ratio and memory of a Monitor in this loop
    (``hvp_method``: the Monitor's product engine; None: its default)."""
    s = SETTINGS[setting]
    model, opt, stream, probe = bench_start(setting, optimizer, seed, device)
    d = sum(p.numel() for p in model.parameters())
    reset_peak(device)
    for _ in range(2):
        train_step(model, opt, next(stream))
    plain_peak = peak_mb(device)
    mon = Monitor(model, next_token_loss, (probe, probe), every=every, optimizer=opt,
                  raw_sharpness=raw, max_warm_products=max_warm_products, criterion=criterion,
                  image_dtype=image_dtype, tol=tol, mode=mode, hvp_method=hvp_method)
    mon.steps = 2
    peaks, errors, t_mon, plain_steps = [], [], 0.0, []
    twin = twin_opt = None
    step = 2
    while step < steps:
        ids = next(stream)
        if twin is not None:  # the plain loop's step, on the same batch
            t0 = time.perf_counter()
            train_step(twin, twin_opt, ids)
            plain_steps.append(time.perf_counter() - t0)
        if len(mon.rows) < 2:
            reset_peak(device)
        t0 = time.perf_counter()
        train_step(model, opt, ids)
        row = mon.step()
        dt = time.perf_counter() - t0
        step += 1
        if twin is not None:
            t_mon += dt
        if row is None:
            continue
        if len(mon.rows) <= 2:
            # the plain twin exists from the first measurement on: its own memory is not
            # the Monitor's
            peak = peak_mb(device)
            peaks.append(None if peak is None else
                         peak - (0.0 if twin is None else _state_mb(twin, twin_opt)))
        # once the twin steps between two mon.step() calls, the Monitor's own clock counts
        # its step as the loop's: the cost is then in the twin's median plain step
        cost = (f"{row['measure_seconds'] / float(np.median(plain_steps)):.1f} plain steps"
                if plain_steps else f"{row['measure_steps'] or 0:.1f} steps")
        log(f"  step {step}: sharpness {row['sharpness']} "
            f"precond {row.get('precond_sharpness')} hvps {row['hvps']} "
            f"({row['measure_seconds']:.1f} s = {cost})")
        if references:
            errors.append(_check(mon, row))
        if twin is None:  # the plain twin starts from the monitored loop's state here
            twin, twin_opt = plain_twin(model, opt, optimizer, s.lr[optimizer])
    out = _summary(s, optimizer, every, steps, d, mon, plain_peak, peaks, errors, t_mon,
                   plain_steps, tol)
    return {**out, "tol": tol, "device": device, "raw": raw, "max_warm_products": max_warm_products,
            "criterion": criterion, "mode": mon.meter.mode,  # as "auto" resolved it
            "hvp_method": mon.objective.hvp_method,
            "image_dtype": None if image_dtype is None else str(image_dtype).removeprefix("torch.")}


def plain_twin(model, opt, optimizer: str, lr: float):
    """A copy of the model and its optimiser, state included, sharing no tensor with them.

    ``Optimizer.load_state_dict`` keeps the given state tensors where dtype and device
    match, so a twin loaded from ``opt.state_dict()`` would update the monitored loop's
    Adam moments and step in place, and hold none of its own memory (before the ninth
    session's fix the AdamW rows' warm peaks were 2 vectors low for that reason).
    """
    twin = copy.deepcopy(model)
    twin_opt = make_optimizer(optimizer, twin, lr)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    return twin, twin_opt


def _state_mb(model, opt) -> float:
    """MB held by a model's parameters, gradients and optimiser state."""
    params = list(model.parameters())
    tensors = params + [p.grad for p in params if p.grad is not None]
    tensors += [t for st in opt.state.values() for t in st.values() if torch.is_tensor(t)]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def _summary(s, optimizer, every, steps, d, mon, plain_peak, peaks, errors, t_mon, plain,
             tol):
    """The row; a measurement's cost in steps is read against the *plain* twin's steps (the
    Monitor's own column would count the twin and the reference solves as loop time)."""
    hvps = [r["hvps"] for r in mon.rows]
    step_s = float(np.median(plain)) if plain else None
    cost = [r["measure_seconds"] / step_s for r in mon.rows] if step_s else []
    errs = [e for row in errors for e, _ in row.values()]
    estimates = [b for row in errors for _, b in row.values()]
    vec_mb = d * 4 / 2**20
    above = [None if p is None or plain_peak is None else p - plain_peak for p in peaks]
    return {
        "setting": s.name, "optimizer": optimizer, "every": every, "steps": steps, "d": d,
        "measurements": len(mon.rows), "hvps_first": hvps[0] if hvps else None,
        "hvps_steady_median": float(np.median(hvps[1:])) if len(hvps) > 1 else None,
        "hvps_all": hvps,
        "measure_steps_first": cost[0] if cost else None,
        "measure_steps_steady": float(np.median(cost[1:])) if len(cost) > 1 else None,
        "steady_overhead": float(np.median(cost[1:])) / every if len(cost) > 1 else None,
        "time_ratio": (t_mon / sum(plain)) if plain else None,
        "plain_step_seconds": step_s,
        "rel_errors": errs, "within_tol": float(np.mean([e <= tol for e in errs])) if errs
        else None, "max_rel_error": max(errs) if errs else None,
        "stated_estimates": estimates,
        # a reported error is the distance to the reference, itself good to REF_TOL
        "within_estimate": float(np.mean([b is not None and e <= b + REF_TOL
                                              for e, b in zip(errs, estimates, strict=True)]))
        if errs else None,
        "peak_above_plain_mb": above, "vector_mb": vec_mb,
        "peak_above_plain_vectors": [None if a is None else a / vec_mb for a in above],
        "load_average": list(os.getloadavg()),
    }


def markdown(rows: list[dict]) -> str:
    head = ("| setting | optimiser | quantities | every | steps | products first / steady "
            "median | measurement cost (steps) first / steady | loop ratio (whole run) | "
            "steady overhead | max rel. error (within the row's tol; within its estimate) | "
            "peak above plain, MB (vectors) first / warm |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        mem = " / ".join("–" if a is None else f"{a:.0f} ({v:.1f})" for a, v in
                         zip(r["peak_above_plain_mb"], r["peak_above_plain_vectors"],
                             strict=True))
        err = ("–" if r["max_rel_error"] is None else
               f"{r['max_rel_error']:.1e} ({r['within_tol']:.0%}; "
               f"{r['within_estimate']:.0%})")
        what = "raw + pre" if r.get("raw", True) and r["optimizer"] == "adamw" else (
            "raw" if r.get("raw", True) else "pre")
        if r.get("max_warm_products"):
            what += f", ≤{r['max_warm_products']} warm"
        if r.get("mode", "shared") != "shared":
            what += f", {r['mode']} tracker"
        if r.get("criterion", "eigenvalue") != "eigenvalue":
            what += f", {r['criterion']}"
        if r.get("image_dtype"):
            what += f", {r['image_dtype']} images"
        if r.get("tol", 1e-3) != 1e-3:
            what += f", tol {r['tol']:g}"
        if r.get("hvp_method", "fd") != "fd":
            what += f", {r['hvp_method']} products"
        lines.append(
            f"| {r['setting']} | {r['optimizer']} | {what} | {r['every']} | {r['steps']} | "
            f"{r['hvps_first']} / {_f(r['hvps_steady_median'], '.1f')} | "
            f"{_f(r['measure_steps_first'], '.1f')} / {_f(r['measure_steps_steady'], '.1f')} | "
            f"{_f(r['time_ratio'], '.2f')}× | {_f(r['steady_overhead'], '.1%')} | {err} | "
            f"{mem} |")
    return "\n".join(lines)


def _f(v, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)
