"""The half-amplitude reduction at a fixed point (docs/theory.md §5).

:func:`reduce_at_fixed_point` takes the top-k eigenpairs ``(λ, v)`` of
``H = H(x*)`` and for each computes ``η_c = 2/λ`` and
``Q = F[v,v,v,v]/12 − tᵀ H⁺ t/4`` with ``t = T[v, v, ·]`` (:meth:`Objective.d3`)
and ``F`` by :meth:`Objective.d4` (no dense tensors); the period-two branch
born at ``η_c`` has half-amplitude ``a = √((2/η − λ)/(2Q))``.

Flat directions. ``H⁺ t`` is computed by MINRES with HVPs (:func:`_solve_pinv`):
the size of ``t``'s null-space component ``|P₀ t|`` comes out with it. The
smallest Hessian eigenvalue is estimated by Lanczos on ``λ₁ I − H``;
``singular`` says it is below ``null_tol·λ₁``. ``degenerate`` says H is
singular and ``t`` has a non-negligible null-space component (``|P₀ t| >
degenerate_tol·|t|``): then moving along the flat manifold of fixed points
changes ``λ`` at first order, the orbit amplitude is not fixed by the point
``x*`` alone, and the expansion is **not valid** (the output says so in
``note``). When ``H`` is singular but ``t`` has no null-space component (e.g.
at a balanced minimum of a linear network, where ``λ₁`` is stationary along the
manifold of minima), the pseudo-inverse expansion holds at leading order, but
orbits are not isolated.

Example (``L = x² + x³ + x⁴/2``: ``Q = 12/12 − 36/8 = −3.5``):
    >>> import torch
    >>> from eoskit.objective import FunctionObjective
    >>> obj = FunctionObjective(lambda x: x[0] ** 2 + x[0] ** 3 + x[0] ** 4 / 2, 1)
    >>> red = reduce_at_fixed_point(obj, torch.zeros(1, dtype=torch.float64))
    >>> d = red.directions[0]
    >>> round(d.Q, 9), d.eta_c, d.side, d.supports_orbit(1.01), d.supports_orbit(0.99)
    (-3.5, 1.0, 'supercritical', True, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from eoskit._threads import limit_blas_threads
from eoskit.eigs import lanczos, top_eigenpairs
from eoskit.objective import Objective, PointObjective
from eoskit.objective.failures import ObjectiveError
from eoskit.orbits._numeric import finite_or_none, hessian_operator, minres, to_numpy, to_torch

__all__ = [
    "DirectionReduction",
    "Reduction",
    "half_amplitude_coefficient",
    "predicted_half_amplitude",
    "reduce_at_fixed_point",
]


def predicted_half_amplitude(eigenvalue: float, Q: float, lr: float) -> float:
    """``a = sqrt((2/η − λ)/(2Q))`` where that is real, else NaN.

    >>> [predicted_half_amplitude(4.0, Q, 2.0 / 3.0) for Q in (-0.5, 0.5)]
    [1.0, nan]
    """
    if Q == 0 or not math.isfinite(Q):
        return math.nan
    a2 = (2.0 / lr - eigenvalue) / (2.0 * Q)
    return math.sqrt(a2) if a2 > 0 else math.nan


@dataclass
class DirectionReduction:
    """The half-amplitude reduction along one eigendirection ``v`` of ``H(x*)``."""

    eigenvalue: float
    eigenvector: Tensor
    eta_c: float
    Q: float
    fourth: float  # F[v,v,v,v]
    t: Tensor  # T[v, v, ·]
    h_pinv_t: Tensor  # H⁺ t (range of H)
    t_hpinv_t: float  # tᵀ H⁺ t
    null_component: float  # |P₀ t| (least-squares residual of H z = t)
    singular: bool
    degenerate: bool
    repeated: bool
    gap: float  # distance to the nearest other computed eigenvalue
    solve_residual: float  # relative residual of H z = t on the range of H
    note: str

    @property
    def side(self) -> str:
        if self.Q < 0:
            return "supercritical"
        if self.Q > 0:
            return "subcritical"
        return "undetermined"

    def supports_orbit(self, lr: float) -> bool:
        """``(2/η − λ)/Q > 0``."""
        return bool(self.Q != 0 and (2.0 / lr - self.eigenvalue) / self.Q > 0)

    def predicted_half_amplitude(self, lr: float) -> float:
        return predicted_half_amplitude(self.eigenvalue, self.Q, lr)

    def to_dict(self, lr: float | None = None) -> dict:
        return {
            "eigenvalue": self.eigenvalue,
            "eta_c": self.eta_c,
            "Q": self.Q,
            "side": self.side,
            "degenerate": bool(self.degenerate),
            "supports_orbit": None if lr is None else self.supports_orbit(lr),
            "predicted_half_amplitude": None if lr is None else finite_or_none(
                self.predicted_half_amplitude(lr)),
            "fourth_derivative": self.fourth,
            "t_norm": float(self.t.norm()),
            "t_hpinv_t": self.t_hpinv_t,
            "null_component": self.null_component,
            "singular": bool(self.singular),
            "repeated": bool(self.repeated),
            "gap": finite_or_none(self.gap),
            "valid": not (self.degenerate or self.repeated),
            "note": self.note,
        }


@dataclass
class Reduction:
    """The reduction at a fixed point ``x*``: one :class:`DirectionReduction` per eigenpair."""

    x_star: Tensor
    grad_norm: float
    min_eigenvalue: float
    directions: list[DirectionReduction]
    lr: float | None = None

    @property
    def is_fixed_point(self) -> bool:
        """``‖∇L(x*)‖`` small against the curvature scale (``≤ 1e-6 (1 + λ₁ |x*|)``)."""
        lam = abs(self.directions[0].eigenvalue) if self.directions else 1.0
        return self.grad_norm <= 1e-6 * (1 + lam * float(self.x_star.norm()))

    def fixed_point_stable(self, lr: float) -> bool:
        """GD stability of x* at ``lr`` from the known eigenvalues (top-k and the smallest)."""
        eigs = [x.eigenvalue for x in self.directions] + [self.min_eigenvalue]
        return all(abs(1 - lr * e) < 1 for e in eigs if math.isfinite(e))

    def predicted_orbit(self, lr: float, direction: int = 0) -> tuple[Tensor, Tensor]:
        """``x = x* + m + a v``, ``y = x* + m − a v``, ``m = −(a²/2) H⁺ t``."""
        dr = self.directions[direction]
        a = dr.predicted_half_amplitude(lr)
        if not math.isfinite(a):
            raise ValueError(
                f"direction {direction} supports no orbit at lr={lr} (eta_c={dr.eta_c:.6g}, "
                f"{dr.side}: orbits for lr {'>' if dr.Q < 0 else '<'} eta_c)")
        mid = self.x_star - 0.5 * a * a * dr.h_pinv_t
        return mid + a * dr.eigenvector, mid - a * dr.eigenvector

    def to_dict(self, lr: float | None = None) -> dict:
        lr = self.lr if lr is None else lr
        return {
            "x_star": to_numpy(self.x_star).tolist(),
            "grad_norm": self.grad_norm,
            "fixed_point": bool(self.is_fixed_point),
            "min_eigenvalue": finite_or_none(self.min_eigenvalue),
            "lr": lr,
            "directions": [d.to_dict(lr) for d in self.directions],
        }


def _solve_pinv(point: PointObjective, t: Tensor, rtol: float,
                maxiter: int) -> tuple[Tensor, float, float]:
    """``z = H⁺ t`` by two consistent MINRES solves; returns ``(z, |P₀ t|, relative residual)``.

    A direct MINRES solve of ``H z = t`` is inconsistent when ``t`` has a
    null-space part, and then keeps iterating on the numerically-zero
    eigenvalues (``~1e-16 λ₁``), blowing ``z`` up. Instead: (1) solve the
    consistent system ``H y = H t``: its iterates lie in ``span{Ht, H²t, …}`` ⊂
    range(H), so ``y = P_R t`` and ``t − y = P₀ t``; (2) solve the consistent
    ``H z = y``. Both stop at ``rtol`` before the null eigenvalues matter, so
    eigenvalues below about ``rtol·λ₁`` count as null.
    """
    op = hessian_operator(point, t)
    tn = float(t.norm())
    if tn == 0.0:
        return torch.zeros_like(t), 0.0, 0.0
    ht = point.hvp(t)
    if float(ht.norm()) == 0.0:
        return torch.zeros_like(t), tn, 0.0
    y_np = minres(op, to_numpy(ht), rtol, maxiter)
    y = to_torch(y_np, t)
    null_c = float((t - y).norm())
    z = to_torch(minres(op, y_np, rtol, maxiter), t)
    res = float((point.hvp(z) - y).norm()) / tn
    return z, null_c, res


def _validity_note(min_eig: float, null_c: float, tn: float, gap: float, range_res: float,
                   singular: bool, degenerate: bool, repeated: bool) -> str:
    """The human verdict on whether the one-direction expansion applies."""
    if degenerate:
        note = (f"NOT VALID: H is singular (smallest eigenvalue {min_eig:.2g}) and "
                f"t = T[v,v,.] has a null-space component |P0 t| = {null_c:.3g} "
                f"(|t| = {tn:.3g}): the eigenvalue changes at first order along the flat "
                "manifold of fixed points, so x* alone does not fix the orbit; Q uses the "
                "pseudo-inverse and is indicative only")
    elif singular:
        note = (f"H is singular (smallest eigenvalue {min_eig:.2g}); t has no null-space "
                f"component (|P0 t| = {null_c:.2g}), so the pseudo-inverse expansion holds at "
                "leading order, but fixed points and orbits are not isolated")
    else:
        note = "H non-singular at x*: expansion valid for small half-amplitude"
    if repeated:
        note += (f"; NOT VALID: eigenvalue repeated (gap {gap:.2g}), the one-direction "
                 "reduction does not apply")
    if range_res > 1e-6:
        note += f"; warning: H+ t solve residual {range_res:.2g}"
    return note


def half_amplitude_coefficient(objective: Objective, x_star: Tensor, v: Tensor,
                               eigenvalue: float | None = None, **kwargs) -> float:
    """``Q = F[v,v,v,v]/12 − tᵀ H⁺ t/4`` at ``x*`` along the unit eigenvector ``v``."""
    return _reduce_direction(objective, x_star, v, eigenvalue, **kwargs).Q


def _reduce_direction(objective, x_star, v, eigenvalue=None, *, point=None, lam1=None,
                      min_eig=math.nan, gap=math.nan, solve_rtol=1e-12, solve_maxiter=None,
                      null_tol=1e-9, degenerate_tol=1e-6) -> DirectionReduction:
    x_star = x_star.detach().to(objective.dtype)
    v = (v / v.norm()).to(objective.dtype)
    own = point is None
    point = objective.at(x_star) if own else point
    try:
        if eigenvalue is None:
            eigenvalue = float(v @ point.hvp(v))
        lam1 = eigenvalue if lam1 is None else lam1
        t = objective.d3(x_star, v, v).detach()
        fourth = float(objective.d4(x_star, v))
        maxiter = solve_maxiter or min(50 * x_star.numel(), 5000)
        z, null_c, range_res = _solve_pinv(point, t, solve_rtol, maxiter)
    finally:
        if own:
            point.release()
    tht = float(t @ z)
    tn = float(t.norm())
    scale = max(abs(lam1), abs(eigenvalue), np.finfo(float).tiny)
    singular = bool(math.isfinite(min_eig) and abs(min_eig) <= null_tol * scale)
    degenerate = bool(singular and null_c > max(degenerate_tol * tn, 1e-12))
    repeated = bool(math.isfinite(gap) and gap <= 1e-6 * scale)
    note = _validity_note(min_eig, null_c, tn, gap, range_res, singular, degenerate, repeated)
    return DirectionReduction(
        eigenvalue=float(eigenvalue), eigenvector=v,
        eta_c=2.0 / eigenvalue if eigenvalue > 0 else math.inf, Q=fourth / 12.0 - tht / 4.0,
        fourth=fourth, t=t, h_pinv_t=z, t_hpinv_t=tht, null_component=null_c,
        singular=singular, degenerate=degenerate, repeated=repeated, gap=gap,
        solve_residual=range_res, note=note)


def _smallest_eigenvalue(point: PointObjective, x: Tensor, lam1: float) -> float:
    """Algebraically smallest eigenvalue of H via Lanczos on ``λ₁ I − H`` (loose tolerance)."""
    d = x.numel()
    if d == 1:
        return lam1
    shift = abs(lam1) if lam1 != 0 else 1.0
    res = lanczos(lambda v: shift * v - point.hvp(v), d, 1, tol=1e-10,
                  dtype=x.dtype, device=x.device, max_iter=min(d, 400))
    return shift - float(res.eigenvalues[0])


def reduce_at_fixed_point(
    objective: Objective,
    x_star: Tensor,
    k: int = 1,
    *,
    lr: float | None = None,
    eig_tol: float = 1e-10,
    solve_rtol: float = 1e-12,
    solve_maxiter: int | None = None,
    null_tol: float = 1e-9,
    degenerate_tol: float = 1e-6,
) -> Reduction:
    """The half-amplitude reduction along the top-``k`` eigenpairs of ``H(x*)``.

    ``lr`` (optional) is remembered for :meth:`Reduction.to_dict`. ``singular``:
    smallest eigenvalue ``≤ null_tol·λ₁``; ``degenerate``: singular and
    ``|P₀ t| > degenerate_tol·|t|``; ``repeated``: the gap to a neighbouring
    eigenvalue (one extra eigenpair is computed to know it) is ``≤ 1e-6 λ₁``.
    See the module docstring for how flat directions are handled.
    """
    limit_blas_threads()
    x_star = x_star.detach().to(objective.dtype)
    d = x_star.numel()
    if d != objective.dim:
        raise ValueError(f"x_star has length {d} but the objective has dimension {objective.dim}")
    if not 1 <= k <= d:
        raise ValueError(f"k must be between 1 and {d}, got {k}")
    with objective.at(x_star) as point:
        if not (math.isfinite(float(point.value)) and bool(torch.isfinite(point.grad).all())):
            raise ObjectiveError("its value or gradient is not finite at x*")
    eig = top_eigenpairs(objective, x_star, min(k + 1, d), tol=eig_tol)
    vals = np.asarray(eig.eigenvalues, dtype=float)
    if not np.isfinite(vals).all():
        raise ObjectiveError("its Hessian at x* has non-finite eigenvalues")
    with objective.at(x_star) as point:
        grad_norm = float(point.grad.norm())
        lam1 = float(vals[0])
        min_eig = _smallest_eigenvalue(point, x_star, lam1)
        dirs = []
        for i in range(min(k, len(vals))):
            others = np.delete(vals, i)
            gap = float(np.min(np.abs(others - vals[i]))) if others.size else math.nan
            dirs.append(_reduce_direction(
                objective, x_star, eig.eigenvectors[:, i], float(vals[i]), point=point,
                lam1=lam1, min_eig=min_eig, gap=gap, solve_rtol=solve_rtol,
                solve_maxiter=solve_maxiter, null_tol=null_tol, degenerate_tol=degenerate_tol))
    return Reduction(x_star, grad_norm, min_eig, dirs, lr)
