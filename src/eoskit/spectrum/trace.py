"""The Hessian's trace from products: Hutchinson's estimator and Hutch++.

Hutchinson: ``tr(H) ≈ mean vᵀHv`` over Rademacher ``v``, unbiased, with variance
``2(‖H‖_F² − Σ H_ii²)`` per product. Hutch++ (Meyer, Musco, Musco & Woodruff,
2021) spends a third of the products on a sketch ``Q = orth(H S)`` of the top
of the spectrum, a third on its exact part ``tr(QᵀHQ)`` and the rest on
Hutchinson for the deflated ``(I − QQᵀ)H(I − QQᵀ)``, whose Frobenius norm is
small when the spectrum decays, as a trained network's does (a few outliers
above a bulk near zero). Both are unbiased; the standard error is that of the
Hutchinson part (the sketch part is exact given ``Q``).

Memory: Hutchinson two d-vectors; Hutch++ the sketch, ``products/3`` d-vectors in
the model's dtype.

Example:
    >>> import torch
    >>> A = torch.diag(torch.tensor([5.0, 1.0, 0.5, 0.1], dtype=torch.float64))
    >>> est = hutchinson(lambda v: A @ v, 4, products=5)  # vᵀAv = tr(A) for diagonal A
    >>> round(est.estimate, 10), est.stderr
    (6.6, 0.0)
    >>> round(hutch_plus_plus(lambda v: A @ v, 4, products=12).estimate, 10)  # sketch spans ℝ⁴
    6.6
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from eoskit.eigs import MatVec
from eoskit.spectrum.operand import Loss, as_objective, rademacher_stream

TRACE_METHODS = ("hutch++", "hutchinson")


@dataclass
class TraceEstimate:
    """A trace estimate, its standard error, the products it cost and the method."""

    estimate: float
    stderr: float
    products: int
    method: str


def _mean_and_stderr(samples: list[float]) -> tuple[float, float]:
    s = np.asarray(samples, dtype=float)
    err = float(s.std(ddof=1) / np.sqrt(len(s))) if len(s) > 1 else float("inf")
    return float(s.mean()), err


def hutchinson(matvec: MatVec, dim: int, products: int = 100, seed: int = 0,
               dtype: torch.dtype = torch.float64,
               device: str | torch.device = "cpu") -> TraceEstimate:
    """``mean vᵀHv`` over ``products`` Rademacher probes."""
    stream = rademacher_stream(dim, seed, dtype, device)
    samples = []
    for _ in range(products):
        v = next(stream)
        samples.append(float(v @ matvec(v)))
    return TraceEstimate(*_mean_and_stderr(samples), products, "hutchinson")


def hutch_plus_plus(matvec: MatVec, dim: int, products: int = 100, seed: int = 0,
                    dtype: torch.dtype = torch.float64,
                    device: str | torch.device = "cpu") -> TraceEstimate:
    """Hutch++: ``k = products // 3`` for the sketch, ``k`` for its trace, the rest Hutchinson."""
    if products < 3:
        raise ValueError(f"hutch++ needs at least 3 products, got {products}")
    k = min(products // 3, dim)  # a sketch of all of ℝᵈ is exact; more would not be orthonormal
    stream = rademacher_stream(dim, seed, dtype, device)
    sketch = torch.stack([matvec(next(stream)) for _ in range(k)], 1)  # (d, k) = H S
    Q = torch.linalg.qr(sketch).Q  # (d, k)
    exact = sum(float(Q[:, i] @ matvec(Q[:, i])) for i in range(k))
    samples = []
    for _ in range(products - 2 * k):
        g = next(stream)
        g = g - Q @ (Q.T @ g)
        samples.append(float(g @ matvec(g)))
    rest, err = _mean_and_stderr(samples)
    return TraceEstimate(exact + rest, err, products, "hutch++")


_ESTIMATORS = {"hutch++": hutch_plus_plus, "hutchinson": hutchinson}


def hessian_trace(f: Loss, x: Tensor, products: int = 100, method: str = "hutch++",
                  seed: int = 0) -> TraceEstimate:
    """tr ∇²f(x) from ``products`` Hessian-vector products (``method``: TRACE_METHODS).

    Example:
        >>> import torch
        >>> x = torch.zeros(3, dtype=torch.float64)
        >>> est = hessian_trace(lambda x: x[0] ** 2 + 2 * x[1] ** 2 - x[2] ** 2, x, products=9)
        >>> round(est.estimate, 10), est.method
        (4.0, 'hutch++')
    """
    if method not in _ESTIMATORS:
        raise ValueError(f"method must be one of {TRACE_METHODS}, got {method!r}")
    if products < 2:
        raise ValueError(f"products must be at least 2 (a standard error needs two), "
                         f"got {products}")
    x = x.detach()
    with as_objective(f, x).at(x) as point:
        return _ESTIMATORS[method](point.hvp, x.numel(), products, seed, x.dtype, x.device)
