"""Numeric plumbing shared by the orbit modules: tensor/array conversion, MINRES, dense H.

SciPy's solvers work on float64 NumPy vectors while the objective works on
tensors of its own dtype and device; these helpers cross that boundary.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse.linalg as sla
import torch
from torch import Tensor

from eoskit.objective import PointObjective


def to_numpy(t: Tensor) -> np.ndarray:
    """A float64 NumPy copy of ``t`` (detached, on the CPU)."""
    return t.detach().cpu().to(torch.float64).numpy()


def to_torch(a: np.ndarray, like: Tensor) -> Tensor:
    """``a`` as a tensor with the dtype and device of ``like``."""
    return torch.as_tensor(np.ascontiguousarray(a), dtype=like.dtype, device=like.device)


def finite_or_none(v: float | None) -> float | None:
    """``v`` as a float, or None when it is None, NaN or infinite (JSON has no NaN)."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def hessian_operator(point: PointObjective, like: Tensor) -> sla.LinearOperator:
    """``H(x)`` at ``point`` as a SciPy operator on float64 vectors of length ``d``."""
    d = like.numel()

    def matvec(v):
        return to_numpy(point.hvp(to_torch(np.asarray(v).reshape(-1), like)))

    return sla.LinearOperator((d, d), matvec=matvec, dtype=np.float64)


def dense_hessian(point: PointObjective, like: Tensor) -> np.ndarray:
    """The (d, d) Hessian at ``point`` from one block HVP with the identity, symmetrised."""
    eye = torch.eye(like.numel(), dtype=like.dtype, device=like.device)
    H = to_numpy(point.hvp(eye))  # (d, d)
    return (H + H.T) / 2


def minres(op, b: np.ndarray, rtol: float, maxiter: int, tries: int = 6) -> np.ndarray:
    """MINRES to a *true* relative residual ``‖Ax − b‖ ≤ rtol ‖b‖`` (restarted as needed).

    SciPy's MINRES stops on ``‖r‖ ≤ rtol (‖A‖‖x‖ + ‖b‖)`` (or a least-squares
    test), which is far looser than ``rtol ‖b‖`` when ``A`` is ill-conditioned;
    so the true residual is checked and the solve restarted from its last
    iterate with a proportionally tighter tolerance. A singular, inconsistent
    system keeps the least-squares answer of the last try.

    >>> A = np.diag([1.0, 1e-6])
    >>> x = minres(sla.aslinearoperator(A), np.ones(2), 1e-12, 50)
    >>> bool(np.linalg.norm(A @ x - 1.0) <= 1e-12 * np.sqrt(2))
    True
    """
    bn = float(np.linalg.norm(b))
    if bn == 0.0:
        return np.zeros_like(b)
    x = None
    inner = rtol
    best, best_r = None, math.inf
    for _ in range(tries):
        x, _ = sla.minres(op, b, x0=x, rtol=inner, maxiter=maxiter)
        r = float(np.linalg.norm(op.matvec(x) - b)) / bn
        if r < best_r:
            best, best_r = x, r
        if r <= rtol or inner <= 1e-16:
            break
        inner = max(1e-16, inner * 0.5 * rtol / r)
    return best
