"""Sections ``track`` and ``stream``: the sharpness at every step of one GD trajectory.

``track``: 100 consecutive GD steps from the EoS point, sharpness every step
at 1e-4 relative accuracy: HVPs and seconds per step against a plain GD step,
with the error against a per-step float64 reference. ``stream``: eoskit's
streaming mode (~one HVP per step) through the EoS phase (from step 500, where
sharpness first reaches 2/η, for 350 steps).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from eoskit.bench.bench_problem import BenchProblem, Cache, param_hash
from eoskit.bench.cold import counted_matvec, numpy_dtype
from eoskit.bench.rows import row
from eoskit.bench.setting import STREAM_TOL, TRACK_TOL
from eoskit.eigs import EigResult, lanczos, make_tracker, subspace_eigs

TRACK_NAME = "eoskit-track (warm block Rayleigh-Ritz, eigenvalue tol 1e-4)"
STREAM_NAME = "eoskit-stream (~1 HVP/step, tol 1e-2)"
RESTART = 50  # RunConfig.eig_restart_every's default


class Trajectory:
    """Plain float32-or-64 GD from ``x0``; per-step float64 references (cached by hash)."""

    def __init__(self, prob: BenchProblem, prob64: BenchProblem, x0: Tensor, cache: Cache,
                 tag: str):
        self.prob64, self.cache, self.tag = prob64, cache, tag
        self.x0 = x0.to(prob.dtype)
        self.refs = cache.get(f"traj:{tag}", {})
        self._ref_vecs = None  # the previous step's top Ritz vectors, to warm-start the next

    def reference(self, t: int, x: Tensor) -> float:
        h = param_hash(x)
        hit = self.refs.get(str(t))
        if hit is not None and hit[0] == h:
            return hit[1]
        d = self.prob64.dim
        with self.prob64.obj.at(x.to(torch.float64)) as point:
            res = None
            if self._ref_vecs is not None:
                res = subspace_eigs(point.hvp, d, 2, tol=1e-9, criterion="residual",
                                    v0=self._ref_vecs, max_iter=120, dtype=torch.float64, keep=3)
            if res is None or not res.converged:
                res = lanczos(point.hvp, d, 3, tol=1e-9, max_iter=600, dtype=torch.float64)
                self._ref_vecs = res.eigenvectors
            else:
                self._ref_vecs = res.ritz_vectors
        value = float(res.eigenvalues[0])
        self.refs[str(t)] = [h, value]
        return value

    def save(self) -> None:
        self.cache.put(f"traj:{self.tag}", self.refs)


def track_methods(k: int = 1) -> dict[str, Callable[[], object]]:
    """Tracker factories: name -> callable returning an object with ``measure``.

    The goal rows run without periodic cold restarts; the ``+ cold restart``
    rows use ``eoskit run``'s default (every 50 solves) to show what it adds.
    """
    return {
        TRACK_NAME:
            lambda: make_tracker("lanczos", k, TRACK_TOL, 0, criterion="eigenvalue"),
        TRACK_NAME + f" + cold restart every {RESTART}":
            lambda: make_tracker("lanczos", k, TRACK_TOL, RESTART, criterion="eigenvalue"),
        STREAM_NAME:
            lambda: make_tracker("streaming", k, STREAM_TOL, 0),
        STREAM_NAME + f" + cold restart every {RESTART}":
            lambda: make_tracker("streaming", k, STREAM_TOL, RESTART),
        "warm Lanczos (residual tol 1e-4, previous vector)":
            lambda: WarmLanczos(TRACK_TOL),
        "warm eigsh LA (tol 1e-4, v0 = previous vector)":
            lambda: WarmEigsh(TRACK_TOL),
    }


class WarmLanczos:
    """A plain warm-started Lanczos tracker: the pre-benchmark baseline."""

    def __init__(self, tol):
        self.tol, self.warm = tol, None

    def measure(self, hvp, dim, dtype, device):
        res = lanczos(hvp, dim, 1, tol=self.tol, v0=self.warm, dtype=dtype, device=device)
        self.warm = res.eigenvectors
        return res


class WarmEigsh:
    """SciPy's ``eigsh(which='LA')`` started from the previous step's vector."""

    def __init__(self, tol):
        self.tol, self.warm = tol, None

    def measure(self, hvp, dim, dtype, device):
        import scipy.sparse.linalg as sla

        mv, count = counted_matvec(hvp, dtype)
        np_dtype = numpy_dtype(dtype)
        op = sla.LinearOperator((dim, dim), matvec=mv, dtype=np_dtype)
        v0 = None if self.warm is None else self.warm.numpy().astype(np_dtype)
        vals, vecs = sla.eigsh(op, k=1, which="LA", tol=self.tol, v0=v0)
        self.warm = torch.from_numpy(vecs[:, 0].copy())
        return EigResult(vals.astype(float), self.warm[:, None], np.array([np.nan]), count[0], True)


class _Record:
    """Per-tracker series along the trajectory: seconds, HVPs and signed relative error."""

    def __init__(self, names):
        self.seconds = {n: [] for n in names}
        self.hvps = {n: [] for n in names}
        self.err = {n: [] for n in names}


def _measure_all(prob: BenchProblem, trackers: dict, x: Tensor, ref: float,
                 rec: _Record) -> None:
    """Each tracker's measurement at ``x``, timed with the gradient step a run would take."""
    obj, lr = prob.obj, prob.setting.lr
    for name, tr in trackers.items():
        before = obj.hvp_count
        t0 = time.perf_counter()
        with obj.at(x) as point:
            res = tr.measure(point.hvp, prob.dim, prob.dtype, x.device)
            _ = (x - lr * point.grad).detach()
        rec.seconds[name].append(time.perf_counter() - t0)
        rec.hvps[name].append(obj.hvp_count - before)
        rec.err[name].append((ref - float(res.eigenvalues[0])) / abs(ref))


def _tracking_rows(section: str, label: str, steps: int, t_gd: list[float], refs: list[float],
                   rec: _Record) -> list[dict]:
    gd = statistics.median(t_gd)
    rows = [row(section, "plain GD step", label, 0, gd, None, per_gd_step=1.0, steps=steps,
                mean_seconds=float(np.mean(t_gd)))]
    for name, secs in rec.seconds.items():
        e = np.abs(rec.err[name])
        rows.append(row(
            section, name, label, float(np.mean(rec.hvps[name])), statistics.median(secs),
            float(e.max()), per_gd_step=statistics.median(secs) / gd,
            mean_seconds=float(np.mean(secs)),
            mean_per_gd_step=float(np.mean(secs)) / float(np.mean(t_gd)),
            median_rel_error=float(np.median(e)),
            frac_over_1e_4=float(np.mean(e > 1e-4)), frac_over_1e_2=float(np.mean(e > 1e-2)),
            max_hvps=int(np.max(rec.hvps[name])), steps=steps,
            sharpness_range=[float(min(refs)), float(max(refs))]))
    return rows


def bench_tracking(prob: BenchProblem, prob64: BenchProblem, x0: Tensor, steps: int, label: str,
                   cache: Cache, tag: str, methods: dict[str, Callable], section: str,
                   log=print) -> list[dict]:
    """Every method follows the same GD trajectory (the plain GD step's), step by step."""
    obj, lr = prob.obj, prob.setting.lr
    traj = Trajectory(prob, prob64, x0, cache, tag)
    trackers = {name: make() for name, make in methods.items()}
    # start every tracker from a converged solve at x0, as a tracking run would have
    with obj.at(traj.x0) as point:
        for tr in trackers.values():
            tr.measure(point.hvp, prob.dim, prob.dtype, x0.device)
    rec, t_gd, refs = _Record(trackers), [], []
    x = traj.x0
    for t in range(steps):
        t0 = time.perf_counter()
        _, g = obj.value_and_grad(x)
        x_next = (x - lr * g).detach()
        t_gd.append(time.perf_counter() - t0)
        refs.append(traj.reference(t, x))
        _measure_all(prob, trackers, x, refs[-1], rec)
        x = x_next
        if log and (t % 25 == 0 or t == steps - 1):
            log(f"  {section} step {t}: sharpness {refs[-1]:.4f} "
                + " ".join(f"[{n.split(' ')[0]} {rec.hvps[n][-1]} hvp {rec.err[n][-1]:+.1e}]"
                           for n in trackers))
    traj.save()
    return _tracking_rows(section, label, steps, t_gd, refs, rec)
