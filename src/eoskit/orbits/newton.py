"""Globalised Newton–MINRES on ``∇A_η(x, y) = 0`` (docs/theory.md §5).

``A_η(x, y) = L(x) + L(y) − |x − y|²/(2η)``. The Jacobian of ``∇A_η`` is the
symmetric block Hessian ``[[H(x) − I/η, I/η], [I/η, H(y) − I/η]]``, applied
with two HVPs and solved by MINRES (inexact Newton, forcing term
``min(1e-3, √‖∇A‖)``). Globalisation: a backtracking (Armijo) line search on
the merit ``½ m² ‖∇A‖²``; if the Newton direction gives no decrease, a damped
steepest-descent step on the merit (its gradient is ``J ∇A``; the step length
minimises the merit's Gauss–Newton model along it, then backtracks).

Deflation (``deflate=True``) multiplies ``∇A`` by ``m = 1/|x − y|² + 1``,
deflating the whole fixed-point set ``x = y`` (Farrell et al. 2015), so that
a rough start is steered to an orbit rather than collapsing onto a fixed point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse.linalg as sla
import torch
from torch import Tensor

from eoskit.objective import Objective, PointObjective
from eoskit.objective.failures import ObjectiveError, at_step
from eoskit.orbits._numeric import minres, to_numpy, to_torch

__all__ = ["NewtonOutcome", "solve_coupling"]


def _deflation(x: Tensor, y: Tensor) -> tuple[float, Tensor]:
    """m = 1/|x − y|² + 1 and its (2d,) gradient in (x, y)."""
    diff = x - y
    r2 = float(diff @ diff)
    if r2 == 0.0:
        return math.inf, torch.cat([diff, -diff])
    gx = -2.0 * diff / r2**2
    return 1.0 / r2 + 1.0, torch.cat([gx, -gx])


@dataclass
class _Iterate:
    """One pair ``(x, y)`` with its points, ``∇A_η`` and the deflation factor."""

    x: Tensor
    y: Tensor
    px: PointObjective
    py: PointObjective
    F: Tensor  # (2d,) ∇A_η = (g(x) − (x − y)/η, g(y) + (x − y)/η)
    m: float  # deflation factor (1 without deflation)
    dm: Tensor | None  # (2d,) its gradient

    @property
    def merit(self) -> float:
        return 0.5 * self.m * self.m * float(self.F @ self.F)

    def release(self) -> None:
        self.px.release()
        self.py.release()


def _evaluate(objective: Objective, x: Tensor, y: Tensor, lr: float, deflate: bool) -> _Iterate:
    px, py = objective.at(x), objective.at(y)
    diff = (x - y) / lr
    F = torch.cat([px.grad - diff, py.grad + diff])
    m, dm = _deflation(x, y) if deflate else (1.0, None)
    return _Iterate(x, y, px, py, F, m, dm)


def _jacobian(it: _Iterate, lr: float):
    """NumPy matvec of the (2d, 2d) block Hessian of ``A_η`` at ``it``."""
    d = it.x.numel()

    def jac(z: np.ndarray) -> np.ndarray:
        zt = to_torch(np.asarray(z).reshape(-1), it.x)
        p, q = zt[:d], zt[d:]
        diff = (p - q) / lr
        return to_numpy(torch.cat([it.px.hvp(p) - diff, it.py.hvp(q) + diff]))

    return jac


def _newton_step(it: _Iterate, jac, mr_max: int) -> Tensor:
    """The inexact Newton step for ``∇A = 0`` (or its deflated form ``m ∇A = 0``)."""
    d2 = 2 * it.x.numel()
    op = sla.LinearOperator((d2, d2), matvec=jac, dtype=np.float64)
    rtol = max(1e-14, min(1e-3, math.sqrt(float(it.F.norm()))))
    step = to_torch(minres(op, -to_numpy(it.F), rtol, mr_max), it.x)
    if it.dm is not None:
        # Newton step of G = m F from that of F (Sherman–Morrison): δ = p / (1 − ∇m·p / m)
        denom = 1.0 - float(it.dm @ step) / it.m
        if abs(denom) > 1e-12:
            step = step / denom
    return step


def _backtrack(objective, it: _Iterate, step: Tensor, lr: float, deflate: bool, alpha: float,
               tries: int, armijo: bool) -> _Iterate | None:
    """The first ``it + α step`` (α halving) that lowers the merit, or None."""
    d = it.x.numel()
    for _ in range(tries):
        if alpha == 0.0:
            return None
        cand = _evaluate(objective, it.x + alpha * step[:d], it.y + alpha * step[d:], lr, deflate)
        phi = cand.merit
        bound = (1 - 1e-4 * alpha) * it.merit if armijo else it.merit
        if math.isfinite(phi) and (phi <= bound if armijo else phi < bound):
            return cand
        cand.release()
        alpha /= 2
    return None


def _descent_step(objective, it: _Iterate, jac, lr: float, deflate: bool) -> _Iterate | None:
    """Damped steepest descent on ``½‖F‖²``: gradient ``J F``, Gauss–Newton step length."""
    gF = to_torch(jac(to_numpy(it.F)), it.x)
    JgF = to_torch(jac(to_numpy(gF)), it.x)
    denom = float(JgF @ JgF)
    alpha = float(gF @ gF) / denom if denom > 0 else 0.0
    return _backtrack(objective, it, -gF, lr, deflate, alpha, tries=30, armijo=False)


def _next_iterate(objective, it: _Iterate, lr: float, deflate: bool,
                  mr_max: int) -> _Iterate | None:
    """The Newton step with backtracking, else the descent step; None when neither helps."""
    jac = _jacobian(it, lr)
    step = _newton_step(it, jac, mr_max)
    nxt = _backtrack(objective, it, step, lr, deflate, 1.0, tries=12, armijo=True)
    return nxt if nxt is not None else _descent_step(objective, it, jac, lr, deflate)


@dataclass
class NewtonOutcome:
    """The last accepted pair of :func:`solve_coupling` and how it got there."""

    x: Tensor
    y: Tensor
    residual: float  # ‖∇A_η(x, y)‖
    converged: bool
    iterations: int
    history: list[float] = field(default_factory=list)  # ‖∇A‖ after each accepted step


def solve_coupling(objective: Objective, lr: float, x0: Tensor, y0: Tensor, *, tol: float,
                   max_iter: int, mr_max: int, deflate: bool) -> NewtonOutcome:
    """Newton–MINRES iterations on ``∇A_η = 0`` from ``(x0, y0)`` until ``‖∇A‖ ≤ tol``.

    Stops early (not converged) when neither the Newton step nor the descent
    step lowers the merit.
    """
    with at_step("the start pair of the Newton solve"):
        it = _evaluate(objective, x0.clone(), y0.clone(), lr, deflate)
        if not bool(torch.isfinite(it.F).all()):
            it.release()
            # before any Hessian product: they would fail far from the cause
            raise ObjectiveError("its gradient is not finite at the start pair (x, y)")
    history = [float(it.F.norm())]
    n = 0
    converged = history[0] <= tol
    while not converged and n < max_iter:
        n += 1
        with at_step(f"Newton iteration {n} (of at most {max_iter})"):
            nxt = _next_iterate(objective, it, lr, deflate, mr_max)
        if nxt is None:
            break  # stagnation: no decrease along either direction
        it.release()
        it = nxt
        history.append(float(it.F.norm()))
        converged = history[-1] <= tol
    it.release()
    return NewtonOutcome(it.x, it.y, float(it.F.norm()), converged, n, history)
