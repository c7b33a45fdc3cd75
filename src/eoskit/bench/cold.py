"""Section ``cold``: the top eigenvalue from nothing, at init and at the EoS point.

eoskit (retained graph + Lanczos, eigenvalue criterion, tol 1e-6); SciPy
``eigsh(which='LA')`` on eoskit's product; curvlinops ``HessianLinearOperator``
+ ``eigsh(which='LA')``; PyHessian ``hessian(...).eigenvalues()`` at three
tolerances; Cohen et al.'s protocol (``eigsh`` default ``which='LM'``, default
tolerance, no start vector, double backward rebuilt per product over chunks of
1,000), rebuilt from that description. Reference: float64, tol 1e-10.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse.linalg as sla
import torch
from torch import Tensor

from eoskit.bench.bench_problem import BenchProblem, set_params
from eoskit.bench.peers import (
    PyHessianCounter,
    cohen_hvp_fn,
    curvlinops_operator,
    default_dtype,
    have,
    pyhessian_setup,
)
from eoskit.bench.rows import median_time, rel_error, row
from eoskit.bench.setting import REL_ACCURACY_COLD
from eoskit.eigs import lanczos

# (name, solve() -> (eigenvalue, HVPs), is a peer, timing repeats)
Method = tuple[str, Callable[[], tuple[float, int]], bool, int]


def numpy_dtype(dtype: torch.dtype):
    return np.float32 if dtype == torch.float32 else np.float64


def counted_matvec(hvp: Callable[[Tensor], Tensor], dtype: torch.dtype):
    """A NumPy matvec over ``hvp`` for SciPy, and the list holding its call count."""
    count = [0]

    def mv(v):
        count[0] += 1
        return hvp(torch.from_numpy(np.ascontiguousarray(v).reshape(-1)).to(dtype)).detach().numpy()

    return mv, count


def eigsh_top(matvec_np, d: int, np_dtype, which: str = "LA", tol: float = 0.0) -> float:
    op = sla.LinearOperator((d, d), matvec=matvec_np, dtype=np_dtype)
    vals = sla.eigsh(op, k=1, which=which, tol=tol, return_eigenvectors=False)
    return float(np.max(vals))


def _eoskit_methods(prob: BenchProblem, x: Tensor, repeats: int, seed: int) -> list[Method]:
    obj, d, dt = prob.obj, prob.dim, prob.dtype
    runs = {"i": 0}

    def eoskit_cold():
        runs["i"] += 1  # a fresh random start per repeat
        with obj.at(x) as point:
            res = lanczos(point.hvp, d, 1, tol=REL_ACCURACY_COLD, criterion="eigenvalue",
                          dtype=dt, seed=seed + runs["i"])
        return float(res.eigenvalues[0]), res.n_matvecs

    def eigsh_retained():
        with obj.at(x) as point:
            mv, count = counted_matvec(point.hvp, dt)
            val = eigsh_top(mv, d, numpy_dtype(dt), "LA")
        return val, count[0]

    return [("eoskit-cold", eoskit_cold, False, repeats),
            ("scipy-eigsh-LA (eoskit HVP)", eigsh_retained, False, repeats)]


def _cohen_method(prob: BenchProblem, x: Tensor, repeats: int) -> Method:
    d, dt, chunk = prob.dim, prob.dtype, prob.setting.cohen_chunk

    def cohen():
        set_params(prob.model, x)
        mv, count = counted_matvec(cohen_hvp_fn(prob, chunk), dt)
        op = sla.LinearOperator((d, d), matvec=mv, dtype=numpy_dtype(dt))
        vals = sla.eigsh(op, 1)  # Cohen et al.: which='LM', default tol, no v0
        return float(vals[0][::-1][0]), count[0]

    return (f"cohen (eigsh LM, rev-rev, chunks {chunk})", cohen, True, repeats)


def _curvlinops_method(prob: BenchProblem, x: Tensor, repeats: int) -> Method:
    def curv():
        set_params(prob.model, x)
        Hs = curvlinops_operator(prob).to_scipy()
        count = [0]

        def mv(v):
            count[0] += 1
            return Hs @ v

        return eigsh_top(mv, prob.dim, Hs.dtype, "LA"), count[0]

    return ("curvlinops + eigsh LA", curv, True, repeats)


def _pyhessian_methods(prob: BenchProblem, x: Tensor, repeats: int, seed: int) -> list[Method]:
    methods = []
    # the default tolerance, and tighter ones (power iteration: slow where λ₂/λ₁ ≈ 1)
    for tol, max_iter, reps in ((1e-3, 100, repeats), (1e-6, 1000, repeats), (1e-8, 3000, 1)):
        def pyh(tol=tol, max_iter=max_iter):
            set_params(prob.model, x)
            torch.manual_seed(seed)
            with PyHessianCounter() as c, default_dtype(prob.dtype):
                h = pyhessian_setup(prob)
                vals, _ = h.eigenvalues(maxIter=max_iter, tol=tol, top_n=1)
            for p in prob.model.parameters():
                p.grad = None
            return float(vals[0]), c.count

        methods.append((f"pyhessian (power, tol={tol:g})", pyh, True, reps))
    return methods


def bench_cold(prob: BenchProblem, x: Tensor, label: str, ref: float, peers: bool, repeats: int,
               seed: int = 0) -> list[dict]:
    methods = _eoskit_methods(prob, x, repeats, seed) + [_cohen_method(prob, x, repeats)]
    if peers and have("curvlinops"):
        methods.append(_curvlinops_method(prob, x, repeats))
    if peers and have("pyhessian"):
        methods += _pyhessian_methods(prob, x, repeats, seed)
    rows = []
    for name, fn, is_peer, reps in methods:
        seconds, (value, hvps) = median_time(fn, reps, warmup=0)
        rows.append(row("cold", name, label, hvps, seconds, rel_error(value, ref),
                        eigenvalue=value, reference=ref, peer=is_peer))
    return rows
