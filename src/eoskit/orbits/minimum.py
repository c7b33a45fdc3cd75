"""A local minimum to reduce at: GD, then trust-region Newton, then a Newton polish.

Example:
    >>> import torch
    >>> from eoskit.objective import FunctionObjective
    >>> obj = FunctionObjective(lambda x: ((x[0] ** 2 - 1) ** 2) / 4, 1)
    >>> m = find_minimum(obj, torch.tensor([1.3], dtype=torch.float64))
    >>> m.converged, round(float(m.x[0]), 8)
    (True, 1.0)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from eoskit._threads import limit_blas_threads
from eoskit.eigs import top_eigenpairs
from eoskit.objective import Objective
from eoskit.orbits._numeric import hessian_operator, minres, to_numpy, to_torch

__all__ = ["MinimumResult", "find_minimum"]


@dataclass
class MinimumResult:
    x: Tensor
    loss: float
    grad_norm: float
    converged: bool
    gd_steps: int
    newton_steps: int


@dataclass
class _State:
    """The current iterate: point, loss and gradient."""

    x: Tensor
    loss: float
    g: Tensor

    @property
    def grad_norm(self) -> float:
        return float(self.g.norm())


def _gd_phase(objective: Objective, s: _State, lr: float, steps: int, tol: float) -> tuple[
        _State, int]:
    """GD that halves ``lr`` whenever the loss would go up; returns the state and steps taken."""
    done = 0
    for _ in range(steps):
        if s.grad_norm <= tol:
            break
        xt = s.x - lr * s.g
        lt, gt = objective.value_and_grad(xt)
        if not math.isfinite(float(lt)) or float(lt) > s.loss:
            lr /= 2
            continue
        s = _State(xt, float(lt), gt)
        done += 1
    return s, done


def _trust_region_phase(objective: Objective, s: _State, tol: float,
                        max_iter: int) -> tuple[_State, int]:
    """SciPy's ``trust-krylov`` (Lanczos subproblems with HVPs: escapes saddles)."""
    import scipy.optimize as so

    like = s.x

    def fun(z):
        v, gz = objective.value_and_grad(to_torch(z, like))
        return float(v), to_numpy(gz)

    def hessp(z, p):
        return to_numpy(objective.hvp(to_torch(z, like), to_torch(p, like)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = so.minimize(fun, to_numpy(s.x), jac=True, hessp=hessp, method="trust-krylov",
                          options=dict(gtol=tol, maxiter=max_iter))
    xt = to_torch(res.x, like)
    lt, gt = objective.value_and_grad(xt)
    if math.isfinite(float(lt)) and float(lt) <= s.loss + 1e-12 * (1 + abs(s.loss)):
        s = _State(xt, float(lt), gt)
    return s, int(res.nit)


def _polish_step(objective: Objective, s: _State) -> _State | None:
    """One damped Newton–MINRES step on ``∇L = 0``, or None when no step is acceptable.

    A step is accepted when it lowers ``‖g‖`` or does not raise the loss beyond
    round-off: on an ill-conditioned minimum the full Newton step can raise
    ``‖g‖`` once and then converge quadratically.
    """
    d = s.x.numel()
    gn = s.grad_norm
    with objective.at(s.x) as point:
        op = hessian_operator(point, s.x)
        step = minres(op, -to_numpy(s.g), max(1e-14, min(1e-3, math.sqrt(gn))),
                      min(50 * d, 10000))
    step = to_torch(step, s.x)
    alpha = 1.0
    for _ in range(20):
        xt = s.x + alpha * step
        lt, gt = objective.value_and_grad(xt)
        lt = float(lt)
        if math.isfinite(lt) and (float(gt.norm()) < gn
                                  or lt <= s.loss + 4 * np.finfo(float).eps * abs(s.loss)):
            return _State(xt, lt, gt)
        alpha /= 2
    return None


def _polish_phase(objective: Objective, s: _State, tol: float, steps: int) -> tuple[_State, int]:
    """Newton polish; the iterate with the smallest ``‖g‖`` wins.

    The trust-region test on the loss stalls once loss changes reach round-off,
    long before ``‖g‖`` does.
    """
    best, done = s, 0
    for _ in range(steps):
        if s.grad_norm <= tol:
            break
        nxt = _polish_step(objective, s)
        if nxt is None:
            break
        s, done = nxt, done + 1
        if s.grad_norm < best.grad_norm:
            best = s
    return best, done


def find_minimum(
    objective: Objective,
    x0: Tensor,
    *,
    lr: float | None = None,
    gd_steps: int = 200,
    tol: float = 1e-10,
    max_newton: int = 200,
    polish_steps: int = 20,
) -> MinimumResult:
    """Converge to a local minimum: GD (``lr`` default ``1/λ₁(x0)``), then trust-region Newton.

    GD halves its learning rate whenever the loss goes up and stops early once
    ``‖g‖ ≤ tol``. The Newton phase is SciPy's ``trust-krylov`` (a Newton
    trust-region method whose subproblem is solved by Lanczos with HVPs, so it
    handles negative curvature and escapes saddles), then a Newton–MINRES
    polish on ``∇L = 0``. Converged when ``‖g‖ ≤ tol``.
    """
    limit_blas_threads()
    x = x0.detach().to(objective.dtype).clone()
    if lr is None:
        lam = float(top_eigenpairs(objective, x, 1, tol=1e-4).eigenvalues[0])
        lr = 1.0 / lam if lam > 0 else 1e-2
    loss, g = objective.value_and_grad(x)
    s, done = _gd_phase(objective, _State(x, float(loss), g), lr, gd_steps, tol)
    n_newton = 0
    if s.grad_norm > tol and max_newton > 0:
        s, n_newton = _trust_region_phase(objective, s, tol, max_newton)
    s, n_polish = _polish_phase(objective, s, tol, polish_steps)
    gn = s.grad_norm
    return MinimumResult(s.x, s.loss, gn, gn <= tol, done, n_newton + n_polish)
