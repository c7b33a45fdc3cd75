"""Stability and exactness of a period-two pair (docs/theory.md §5).

* :func:`floquet_multipliers`: the top eigenvalues of the two-step map
  ``M = (I − ηH(y))(I − ηH(x))`` (dense for ``d ≤ dense_max``, ARPACK ``eigs``
  on a LinearOperator otherwise: ``M`` is not symmetric).
* :func:`multiplier_stability`: the verdict on them. Exact continuous
  symmetries (a linear network's GL(3), flat valleys) give multipliers of
  modulus exactly 1, so ``stable`` means no multiplier exceeds ``1 +
  neutral_tol`` and ``n_neutral`` counts those within ``neutral_tol`` of the
  unit circle: "stable with n_neutral > 0" is stability modulo the flat
  directions.
* :func:`orbit_checks`: residuals of the exact identities ``H̄ s = (2/η) s``
  (``H̄ = ∫₀¹ H(x + τ s) dτ``, Gauss–Legendre quadrature of HVPs) and
  ``κ_x + κ_y = 4/η`` (``κ`` by quadrature with weight ``2(1 − τ)``).

Example (a quadratic: ``M = (1 − ηλ)²`` along each eigenvector):
    >>> import torch
    >>> from eoskit.objective import FunctionObjective
    >>> obj = FunctionObjective(lambda x: x[0] ** 2 + 0.25 * x[1] ** 2, 2)
    >>> z = torch.zeros(2, dtype=torch.float64)
    >>> mu = floquet_multipliers(obj, z, z, 1.5)
    >>> [round(float(m.real), 6) for m in mu]
    [4.0, 0.0625]
    >>> multiplier_stability(mu, 1e-8), multiplier_stability(mu[1:], 1e-8)
    ((False, 0, 4.0), (True, 0, 0.0625))
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse.linalg as sla
from torch import Tensor

from eoskit._threads import limit_blas_threads
from eoskit.diagnostics import effective_curvature, segment_quadrature
from eoskit.objective import Objective, PointObjective
from eoskit.objective.failures import ObjectiveError
from eoskit.orbits._numeric import dense_hessian, to_numpy, to_torch

__all__ = ["floquet_multipliers", "multiplier_stability", "orbit_checks", "empty_checks"]


def empty_checks(nodes: int) -> dict:
    """The :func:`orbit_checks` record when there is nothing to check (a fixed point)."""
    return dict(averaged_hessian=None, kappa_sum=None, kappa_loss_form=None,
                kappa_x=None, kappa_y=None, nodes=nodes)


def orbit_checks(objective: Objective, x: Tensor, y: Tensor, lr: float,
                 nodes: int = 20) -> dict:
    """Residuals of the exact period-two identities at the pair ``(x, y)``.

    ``averaged_hessian``: ``|H̄ s − (2/η) s| / |(2/η) s|`` with ``s = y − x``;
    ``kappa_sum``: ``|κ_x + κ_y − 4/η| / (4/η)``, both ``κ`` by quadrature;
    ``kappa_loss_form``: the larger of ``|κ − κ_loss|/(2/η)`` at x and at y,
    ``κ_loss = 2/η + 2 ΔL/|s|²`` (:func:`eoskit.diagnostics.effective_curvature`),
    which is exact iff each step is the GD step. ``None`` for a fixed point.
    """
    s = (y - x).detach()
    ss = float(s @ s)
    out = empty_checks(nodes)
    if ss == 0.0 or not math.isfinite(ss):
        return out
    quad = segment_quadrature(objective, x, s, nodes)
    kx = quad.kappa  # from x along s: weight 2(1 − τ)
    # from y along −s the same points carry weight 2τ, so κ_x + κ_y = 2 q̄
    ky = 2.0 * quad.q_bar - kx
    target = (2.0 / lr) * s
    lx, ly = float(objective.value(x)), float(objective.value(y))
    kx_loss = effective_curvature(lx, ly, ss, lr)
    ky_loss = effective_curvature(ly, lx, ss, lr)
    out.update(
        averaged_hessian=float((quad.hbar_s - target).norm() / target.norm()),
        kappa_sum=abs(kx + ky - 4.0 / lr) / (4.0 / lr),
        kappa_loss_form=max(abs(kx - kx_loss), abs(ky - ky_loss)) / (2.0 / lr),
        kappa_x=kx,
        kappa_y=ky,
    )
    return out


def _dense_multipliers(px: PointObjective, py: PointObjective, x: Tensor,
                       lr: float) -> np.ndarray:
    """All eigenvalues of the (d, d) matrix M."""
    eye = np.eye(x.numel())
    M = (eye - lr * dense_hessian(py, x)) @ (eye - lr * dense_hessian(px, x))
    if not np.isfinite(M).all():
        raise ObjectiveError("its Hessian is not finite at the pair (x, y)")
    return np.linalg.eigvals(M)


def _arpack_multipliers(px: PointObjective, py: PointObjective, x: Tensor, lr: float,
                        k: int, tol: float) -> np.ndarray:
    """The top ``k`` (at most ``d − 2``) eigenvalues of M by modulus, two HVPs per product."""
    d = x.numel()

    def matvec(v):
        vt = to_torch(np.asarray(v).reshape(-1).real, x)
        w = vt - lr * px.hvp(vt)
        return to_numpy(w - lr * py.hvp(w))

    op = sla.LinearOperator((d, d), matvec=matvec, dtype=np.float64)
    return sla.eigs(op, k=min(k, d - 2), which="LM", tol=tol, return_eigenvectors=False,
                    maxiter=max(1000, 20 * d))


def floquet_multipliers(objective: Objective, x: Tensor, y: Tensor, lr: float, k: int = 6,
                        dense_max: int = 600, tol: float = 1e-10,
                        all_dense: bool = False) -> np.ndarray:
    """Top-``k`` (by modulus) eigenvalues of ``M = (I − ηH(y))(I − ηH(x))``, complex, descending.

    Dense for ``d ≤ dense_max`` (all eigenvalues of M computed, top ``k``
    returned, or all of them with ``all_dense``); otherwise ARPACK
    ``eigs(which='LM')`` on a LinearOperator of two HVPs per product.
    """
    limit_blas_threads()
    d = x.numel()
    dense = d <= dense_max or d < 4
    with objective.at(x) as px, objective.at(y) as py:
        mu = (_dense_multipliers(px, py, x, lr) if dense
              else _arpack_multipliers(px, py, x, lr, k, tol))
    mu = np.asarray(mu, dtype=np.complex128)
    if not np.isfinite(mu).all():
        raise ObjectiveError("its Hessian is not finite at the pair (x, y)")
    order = np.lexsort((-mu.real, -np.abs(mu)))
    return mu[order] if all_dense and d <= dense_max else mu[order][:k]


def multiplier_stability(mu: np.ndarray, neutral_tol: float) -> tuple[bool, int, float]:
    """``(stable, n_neutral, max_non_neutral)`` for the multipliers ``mu``.

    ``stable``: every ``|μ| ≤ 1 + neutral_tol``; ``n_neutral``: how many lie
    within ``neutral_tol`` of the unit circle; ``max_non_neutral``: the largest
    ``|μ|`` among the others (NaN when all are neutral).
    """
    mods = np.abs(mu)
    stable = bool(np.all(mods <= 1 + neutral_tol))
    neutral = np.abs(mods - 1) <= neutral_tol
    max_non_neutral = float(mods[~neutral].max()) if np.any(~neutral) else math.nan
    return stable, int(np.sum(neutral)), max_non_neutral
