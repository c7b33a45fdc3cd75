"""Fixed points, period-two orbits and the half-amplitude reduction (THEORY.md §1, §5).

Orbits
------
A pair ``{x, y}`` with ``∇A_η = 0``, ``A_η(x, y) = L(x) + L(y) − |x − y|²/(2η)``,
is a fixed point (``x = y``, ``∇L = 0``) or a period-two orbit of GD at
learning rate ``η``. :func:`find_orbit` solves ``∇A_η = 0`` by Newton–Krylov:
the Jacobian is the symmetric block Hessian
``[[H(x) − I/η, I/η], [I/η, H(y) − I/η]]``, applied with two HVPs and solved
by SciPy's MINRES (inexact Newton, forcing term ``min(1e-3, √‖∇A‖)``).
Globalisation: a backtracking (Armijo) line search on the merit
``½‖∇A‖²``; if the Newton direction gives no decrease, a damped steepest-descent
step on the merit (its gradient is ``J ∇A``; the step length minimises the
merit's Gauss–Newton model along it, then backtracks). ``deflate=True``
multiplies ``∇A`` by ``1/|x − y|² + 1`` (deflation of the whole fixed-point
set ``x = y``, Farrell et al. 2015) so that a rough start is steered to an
orbit rather than collapsing onto a fixed point.

Starts: a pair (``x0``, ``y0``); a point (``y0 = x0 − η ∇L(x0)``);
:func:`gd_iterates` (the last two GD iterates); or
:meth:`Reduction.predicted_orbit`.

The result (:class:`OrbitResult`) carries the top Floquet multipliers of the
two-step map ``M = (I − ηH(y))(I − ηH(x))`` (dense for ``d ≤ dense_max``,
ARPACK ``eigs`` on a LinearOperator otherwise: ``M`` is not symmetric), the
stability verdict, and the exact orbit checks ``H̄ s = (2/η) s``
(``H̄ = ∫₀¹ H(x + τ s) dτ``, Gauss–Legendre quadrature of HVPs) and
``κ_x + κ_y = 4/η`` (``κ`` by quadrature with weight ``2(1 − τ)``), as
relative residuals.

Neutral multipliers. Exact continuous symmetries (a linear network's GL(3),
flat valleys) give multipliers of modulus exactly 1. ``stable`` means no
multiplier exceeds ``1 + neutral_tol`` in modulus; ``n_neutral`` counts those
within ``neutral_tol`` of the unit circle, so "stable with n_neutral > 0" is
stability modulo the flat directions.

Reduction
---------
:func:`reduce_at_fixed_point` takes the top-k eigenpairs ``(λ, v)`` of
``H = H(x*)`` and for each computes ``η_c = 2/λ`` and
``Q = F[v,v,v,v]/12 − tᵀ H⁺ t/4`` with ``t = T[v, v, ·]`` (:meth:`Objective.d3`)
and ``F`` by :meth:`Objective.d4` (no dense tensors). ``H⁺ t`` is a MINRES
solve with HVPs. Flat directions: MINRES from zero has iterates in
``span{t, Ht, H²t, …}``, so its only component in ``null(H)`` is a multiple of
``P₀ t``, and at the least-squares solution the residual ``r = t − H z`` *is*
``P₀ t``; projecting ``z`` off ``r`` gives the pseudo-inverse solution (range of
``H`` only), and ``|r|`` is the size of ``t``'s null-space component. The
smallest Hessian eigenvalue is estimated by Lanczos on ``λ₁ I − H``;
``singular`` says it is below ``null_tol·λ₁``. ``degenerate`` says H is singular
and ``t`` has a non-negligible null-space component (``|P₀ t| > degenerate_tol·|t|``):
then moving
along the flat manifold of fixed points changes ``λ`` at first order, the orbit
amplitude is not fixed by the point ``x*`` alone, and the expansion is **not
valid** (the output says so in ``note``). When ``H`` is singular but ``t`` has
no null-space component (e.g. at a balanced minimum of a linear network, where
``λ₁`` is stationary along the manifold of minima), the pseudo-inverse
expansion holds at leading order, but orbits are not isolated.

Sweep
-----
:func:`bifurcation_sweep` continues the period-two branch of one direction over
a grid of learning rates, from the prediction nearest ``η_c`` outward, each
solve started from the previous solution; :func:`plot_bifurcation` draws the
diagram and :meth:`Sweep.to_csv` writes its rows.

Example:
    >>> import torch
    >>> from eoskit.objective import FunctionObjective
    >>> from eoskit.testfns import theory_example
    >>> obj = FunctionObjective(theory_example, 2)
    >>> red = reduce_at_fixed_point(obj, torch.zeros(2, dtype=torch.float64), k=1)
    >>> round(red.directions[0].Q, 6), red.directions[0].side
    (-3.13, 'supercritical')
    >>> orb = find_orbit(obj, 1.01, *red.predicted_orbit(1.01))
    >>> orb.kind, round(orb.half_amplitude ** 2, 7)
    ('period_two', 0.0031436)
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as sla
import torch
from torch import Tensor

from eoskit._threads import limit_blas_threads
from eoskit.diagnostics import effective_curvature, segment_quadrature
from eoskit.eigs import lanczos, top_eigenpairs
from eoskit.objective import Objective

__all__ = [
    "DirectionReduction",
    "MinimumResult",
    "OrbitResult",
    "Reduction",
    "Sweep",
    "SweepRow",
    "bifurcation_sweep",
    "find_minimum",
    "find_orbit",
    "find_orbit_from_gd",
    "floquet_multipliers",
    "gd_iterates",
    "half_amplitude_coefficient",
    "orbit_checks",
    "plot_bifurcation",
    "predicted_half_amplitude",
    "reduce_at_fixed_point",
]


# ---------------------------------------------------------------- helpers
class _Point:
    """Loss, gradient and HVPs at one point (one retained graph when the objective allows)."""

    def __init__(self, obj: Objective, x: Tensor):
        self.obj = obj
        self.x = x.detach()
        if obj.hvp_method == "retained":
            self._p = obj.at(self.x)
            self.value = float(self._p.value)
            self.grad = self._p.grad
        else:
            self._p = None
            v, g = obj.value_and_grad(self.x)
            self.value, self.grad = float(v), g.detach()

    def hvp(self, v: Tensor) -> Tensor:
        if self._p is not None:
            return self._p.hvp(v)
        return self.obj.hvp(self.x, v)

    def release(self) -> None:
        if self._p is not None:
            self._p.release()


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy()


def _torch(a: np.ndarray, like: Tensor) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=like.dtype, device=like.device)


def _finite(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _coupling_grads(px: _Point, py: _Point, lr: float) -> Tensor:
    """∇A_η at (x, y) as one (2d,) vector: (g(x) − (x − y)/η, g(y) + (x − y)/η)."""
    diff = (px.x - py.x) / lr
    return torch.cat([px.grad - diff, py.grad + diff])


def _dense_hessian(obj: Objective, point: _Point) -> np.ndarray:
    d = point.x.numel()
    eye = torch.eye(d, dtype=point.x.dtype, device=point.x.device)
    H = _np(point.hvp(eye))
    return (H + H.T) / 2


def _minres(op, b: np.ndarray, rtol: float, maxiter: int, tries: int = 6) -> np.ndarray:
    """MINRES to a *true* relative residual ``‖Ax − b‖ ≤ rtol ‖b‖`` (restarted as needed).

    SciPy's MINRES stops on ``‖r‖ ≤ rtol (‖A‖‖x‖ + ‖b‖)`` (or a least-squares
    test), which is far looser than ``rtol ‖b‖`` when ``A`` is ill-conditioned;
    so the true residual is checked and the solve restarted from its last
    iterate with a proportionally tighter tolerance. A singular, inconsistent
    system keeps the least-squares answer of the last try.
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


# ---------------------------------------------------------------- orbit checks
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
    out = dict(averaged_hessian=None, kappa_sum=None, kappa_loss_form=None,
               kappa_x=None, kappa_y=None, nodes=nodes)
    if ss == 0.0 or not math.isfinite(ss):
        return out
    quad = segment_quadrature(objective, x, s, nodes)
    hbar_s = quad.hbar_s
    kx = quad.kappa  # from x along s: weight 2(1 − τ)
    # from y along −s the same points carry weight 2τ, so κ_x + κ_y = 2 q̄
    ky = 2.0 * quad.q_bar - kx
    target = (2.0 / lr) * s
    lx, ly = float(objective.value(x)), float(objective.value(y))
    kx_loss = effective_curvature(lx, ly, ss, lr)
    ky_loss = effective_curvature(ly, lx, ss, lr)
    out.update(
        averaged_hessian=float((hbar_s - target).norm() / target.norm()),
        kappa_sum=abs(kx + ky - 4.0 / lr) / (4.0 / lr),
        kappa_loss_form=max(abs(kx - kx_loss), abs(ky - ky_loss)) / (2.0 / lr),
        kappa_x=kx,
        kappa_y=ky,
    )
    return out


# ---------------------------------------------------------------- Floquet
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
    px, py = _Point(objective, x), _Point(objective, y)
    try:
        if d <= dense_max or d < 4:
            eye = np.eye(d)
            M = (eye - lr * _dense_hessian(objective, py)) @ (
                eye - lr * _dense_hessian(objective, px))
            mu = np.linalg.eigvals(M)
        else:
            def mv(v):
                vt = _torch(np.asarray(v).reshape(-1).real, x)
                w = vt - lr * px.hvp(vt)
                return _np(w - lr * py.hvp(w))

            op = sla.LinearOperator((d, d), matvec=mv, dtype=np.float64)
            kk = min(k, d - 2)
            mu = sla.eigs(op, k=kk, which="LM", tol=tol, return_eigenvectors=False,
                          maxiter=max(1000, 20 * d))
    finally:
        px.release()
        py.release()
    mu = np.asarray(mu, dtype=np.complex128)
    order = np.lexsort((-mu.real, -np.abs(mu)))
    return mu[order] if all_dense and d <= dense_max else mu[order][:k]


# ---------------------------------------------------------------- orbit result
@dataclass
class OrbitResult:
    """A solution (or the best iterate) of ``∇A_η = 0``."""

    x: Tensor
    y: Tensor
    lr: float
    kind: str  # "fixed_point" or "period_two"
    half_amplitude: float  # |x − y|/2
    residual: float  # ‖∇A_η(x, y)‖
    converged: bool
    iterations: int
    floquet: np.ndarray  # top multipliers of M (complex, by modulus)
    stable: bool
    n_neutral: int  # multipliers within neutral_tol of the unit circle (among those computed)
    max_non_neutral: float  # largest |μ| among the others
    orbit_checks: dict
    n_hvps: int = 0
    history: list[float] = field(default_factory=list)

    @property
    def max_multiplier(self) -> float:
        return float(np.max(np.abs(self.floquet))) if len(self.floquet) else math.nan

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "x": _np(self.x).tolist(),
            "y": _np(self.y).tolist(),
            "half_amplitude": self.half_amplitude,
            "residual": self.residual,
            "floquet": [{"re": float(m.real), "im": float(m.imag), "abs": float(abs(m))}
                        for m in self.floquet],
            "stable": bool(self.stable),
            "orbit_checks": {k: _finite(v) if isinstance(v, float) else v
                             for k, v in self.orbit_checks.items()},
            "lr": self.lr,
            "converged": bool(self.converged),
            "iterations": self.iterations,
            "n_neutral": self.n_neutral,
            "max_non_neutral_multiplier": _finite(self.max_non_neutral),
            "max_multiplier": _finite(self.max_multiplier),
            "n_hvps": self.n_hvps,
        }


def gd_iterates(objective: Objective, x0: Tensor, lr: float, steps: int) -> tuple[Tensor, Tensor]:
    """Run ``steps`` GD steps from ``x0``; return the last two iterates ``(x_{T−1}, x_T)``."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    x = x0.detach().clone()
    prev = x
    for _ in range(steps):
        g = objective.grad(x)
        prev, x = x, x - lr * g
        if not torch.isfinite(x).all():
            raise ValueError(f"GD diverged at lr={lr} within {steps} steps")
    return prev, x


def find_orbit(
    objective: Objective,
    lr: float,
    x0: Tensor,
    y0: Tensor | None = None,
    *,
    tol: float = 1e-10,
    max_iter: int = 60,
    minres_maxiter: int | None = None,
    deflate: bool = False,
    n_floquet: int = 6,
    dense_max: int = 600,
    fixed_tol: float = 1e-7,
    neutral_tol: float = 1e-8,
    quad_nodes: int = 20,
    checks: bool = True,
) -> OrbitResult:
    """Solve ``∇A_η(x, y) = 0`` by globalised Newton–MINRES from ``(x0, y0)``.

    ``y0=None`` starts from the point ``x0`` with ``y0 = x0 − η ∇L(x0)``.
    Converged when ``‖∇A‖ ≤ tol``; otherwise the best iterate is returned with
    ``converged=False``. ``kind`` is ``fixed_point`` when ``|x − y| ≤
    fixed_tol·(1 + |x|)``.
    """
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"learning rate must be positive and finite, got {lr}")
    limit_blas_threads()
    d = objective.dim
    x0 = x0.detach().to(objective.dtype)
    if x0.numel() != d:
        raise ValueError(f"x0 has length {x0.numel()} but the objective has dimension {d}")
    hv0 = objective.hvp_count
    if y0 is None:
        y0 = x0 - lr * objective.grad(x0)
    y0 = y0.detach().to(objective.dtype)
    if y0.numel() != d:
        raise ValueError(f"y0 has length {y0.numel()} but the objective has dimension {d}")
    mr_max = minres_maxiter or min(20 * 2 * d, 5000)

    def evaluate(x, y):
        px, py = _Point(objective, x), _Point(objective, y)
        F = _coupling_grads(px, py, lr)
        m, dm = _deflation(x, y) if deflate else (1.0, None)
        return px, py, F, m, dm

    def merit(F, m):
        return 0.5 * m * m * float(F @ F)

    x, y = x0.clone(), y0.clone()
    px, py, F, m, dm = evaluate(x, y)
    phi = merit(F, m)
    history = [float(F.norm())]
    it = 0
    converged = float(F.norm()) <= tol
    while not converged and it < max_iter:
        it += 1

        def jac(z, px=px, py=py, like=x):
            zt = _torch(np.asarray(z).reshape(-1), like)
            p, q = zt[:d], zt[d:]
            diff = (p - q) / lr
            return _np(torch.cat([px.hvp(p) - diff, py.hvp(q) + diff]))

        op = sla.LinearOperator((2 * d, 2 * d), matvec=jac, dtype=np.float64)
        fn = float(F.norm())
        rtol = max(1e-14, min(1e-3, math.sqrt(fn)))
        step_np = _minres(op, -_np(F), rtol, mr_max)
        step = _torch(step_np, x)
        if deflate:
            # Newton step of G = m F from that of F (Sherman–Morrison): δ = p / (1 − ∇m·p / m)
            denom = 1.0 - float(dm @ step) / m
            if abs(denom) > 1e-12:
                step = step / denom
        accepted = False
        alpha = 1.0
        for _ in range(12):
            xt, yt = x + alpha * step[:d], y + alpha * step[d:]
            cand = evaluate(xt, yt)
            phi_t = merit(cand[2], cand[3])
            if math.isfinite(phi_t) and phi_t <= (1 - 1e-4 * alpha) * phi:
                accepted = True
                break
            cand[0].release()
            cand[1].release()
            alpha /= 2
        if not accepted:
            # damped steepest descent on the merit ½‖F‖²: gradient J F, Gauss–Newton step length
            gF = _torch(jac(_np(F)), x)
            JgF = _torch(jac(_np(gF)), x)
            denom = float(JgF @ JgF)
            alpha = float(gF @ gF) / denom if denom > 0 else 0.0
            for _ in range(30):
                if alpha == 0.0:
                    break
                xt, yt = x - alpha * gF[:d], y - alpha * gF[d:]
                cand = evaluate(xt, yt)
                phi_t = merit(cand[2], cand[3])
                if math.isfinite(phi_t) and phi_t < phi:
                    accepted = True
                    break
                cand[0].release()
                cand[1].release()
                alpha /= 2
        if not accepted:
            break  # stagnation: no decrease along either direction
        px.release()
        py.release()
        x, y = xt, yt
        px, py, F, m, dm = cand
        phi = phi_t
        history.append(float(F.norm()))
        converged = history[-1] <= tol
    px.release()
    py.release()
    residual = float(F.norm())
    gap = float((x - y).norm())
    kind = "fixed_point" if gap <= fixed_tol * (1 + float(x.norm())) else "period_two"
    if kind == "fixed_point":
        mid = (x + y) / 2
        x, y = mid, mid.clone()
    mu_all = floquet_multipliers(objective, x, y, lr, k=n_floquet, dense_max=dense_max,
                                 all_dense=True)
    mods = np.abs(mu_all)
    stable = bool(np.all(mods <= 1 + neutral_tol))
    neutral = np.abs(mods - 1) <= neutral_tol
    n_neutral = int(np.sum(neutral))
    max_non_neutral = float(mods[~neutral].max()) if np.any(~neutral) else math.nan
    mu = mu_all[:n_floquet]
    chk = orbit_checks(objective, x, y, lr, quad_nodes) if checks and kind == "period_two" else (
        dict(averaged_hessian=None, kappa_sum=None, kappa_loss_form=None,
             kappa_x=None, kappa_y=None, nodes=quad_nodes))
    return OrbitResult(
        x=x, y=y, lr=float(lr), kind=kind, half_amplitude=float((x - y).norm()) / 2,
        residual=residual, converged=converged, iterations=it, floquet=mu, stable=stable,
        n_neutral=n_neutral, max_non_neutral=max_non_neutral, orbit_checks=chk,
        n_hvps=objective.hvp_count - hv0, history=history,
    )


def _deflation(x: Tensor, y: Tensor) -> tuple[float, Tensor]:
    """m = 1/|x − y|² + 1 and its gradient in (x, y)."""
    diff = x - y
    r2 = float(diff @ diff)
    if r2 == 0.0:
        return math.inf, torch.cat([diff, -diff])
    gx = -2.0 * diff / r2**2
    return 1.0 / r2 + 1.0, torch.cat([gx, -gx])


def find_orbit_from_gd(objective: Objective, lr: float, x0: Tensor, steps: int,
                       **kwargs) -> OrbitResult:
    """Run GD for ``steps`` steps, then refine its last two iterates with :func:`find_orbit`."""
    xa, xb = gd_iterates(objective, x0, lr, steps)
    return find_orbit(objective, lr, xa, xb, **kwargs)


# ---------------------------------------------------------------- minimum
@dataclass
class MinimumResult:
    x: Tensor
    loss: float
    grad_norm: float
    converged: bool
    gd_steps: int
    newton_steps: int


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
    handles negative curvature and escapes saddles). Converged when ``‖g‖ ≤ tol``.
    """
    import scipy.optimize as so

    limit_blas_threads()
    x = x0.detach().to(objective.dtype).clone()
    if lr is None:
        lam = float(top_eigenpairs(objective, x, 1, tol=1e-4).eigenvalues[0])
        lr = 1.0 / lam if lam > 0 else 1e-2
    loss, g = objective.value_and_grad(x)
    loss = float(loss)
    done = 0
    for _ in range(gd_steps):
        if float(g.norm()) <= tol:
            break
        xt = x - lr * g
        lt, gt = objective.value_and_grad(xt)
        if not math.isfinite(float(lt)) or float(lt) > loss:
            lr /= 2
            continue
        x, loss, g = xt, float(lt), gt
        done += 1
    nsteps = 0
    if float(g.norm()) > tol and max_newton > 0:
        def fun(z):
            v, gz = objective.value_and_grad(_torch(z, x))
            return float(v), _np(gz)

        def hessp(z, p):
            return _np(objective.hvp(_torch(z, x), _torch(p, x)))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = so.minimize(fun, _np(x), jac=True, hessp=hessp, method="trust-krylov",
                              options=dict(gtol=tol, maxiter=max_newton))
        nsteps = int(res.nit)
        xt = _torch(res.x, x)
        lt, gt = objective.value_and_grad(xt)
        if math.isfinite(float(lt)) and float(lt) <= loss + 1e-12 * (1 + abs(loss)):
            x, loss, g = xt, float(lt), gt
    # polish: Newton–MINRES on ∇L = 0 (the trust-region test on the loss stalls once loss
    # changes reach round-off, long before ‖g‖ does). A step is accepted when it lowers ‖g‖
    # or does not raise the loss beyond round-off: on an ill-conditioned minimum the full
    # Newton step can raise ‖g‖ once and then converge quadratically. The best iterate wins.
    d = objective.dim
    best = (float(g.norm()), x, loss, g)
    for _ in range(polish_steps):
        gn = float(g.norm())
        if gn <= tol:
            break
        point = _Point(objective, x)
        op = sla.LinearOperator(
            (d, d), matvec=lambda v, p=point: _np(p.hvp(_torch(np.asarray(v).reshape(-1), p.x))),
            dtype=np.float64)
        step = _minres(op, -_np(g), max(1e-14, min(1e-3, math.sqrt(gn))), min(50 * d, 10000))
        point.release()
        step = _torch(step, x)
        alpha, ok = 1.0, False
        for _ in range(20):
            xt = x + alpha * step
            lt, gt = objective.value_and_grad(xt)
            lt = float(lt)
            if math.isfinite(lt) and (float(gt.norm()) < gn
                                      or lt <= loss + 4 * np.finfo(float).eps * abs(loss)):
                ok = True
                break
            alpha /= 2
        if not ok:
            break
        x, loss, g = xt, lt, gt
        nsteps += 1
        if float(g.norm()) < best[0]:
            best = (float(g.norm()), x, loss, g)
    gn, x, loss, g = best
    return MinimumResult(x, loss, gn, gn <= tol, done, nsteps)


# ---------------------------------------------------------------- reduction
def predicted_half_amplitude(eigenvalue: float, Q: float, lr: float) -> float:
    """``a = sqrt((2/η − λ)/(2Q))`` where that is real, else NaN."""
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
        out = {
            "eigenvalue": self.eigenvalue,
            "eta_c": self.eta_c,
            "Q": self.Q,
            "side": self.side,
            "degenerate": bool(self.degenerate),
            "supports_orbit": None if lr is None else self.supports_orbit(lr),
            "predicted_half_amplitude": None if lr is None else _finite(
                self.predicted_half_amplitude(lr)),
            "fourth_derivative": self.fourth,
            "t_norm": float(self.t.norm()),
            "t_hpinv_t": self.t_hpinv_t,
            "null_component": self.null_component,
            "singular": bool(self.singular),
            "repeated": bool(self.repeated),
            "gap": _finite(self.gap),
            "valid": not (self.degenerate or self.repeated),
            "note": self.note,
        }
        return out


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
            "x_star": _np(self.x_star).tolist(),
            "grad_norm": self.grad_norm,
            "fixed_point": bool(self.is_fixed_point),
            "min_eigenvalue": _finite(self.min_eigenvalue),
            "lr": lr,
            "directions": [d.to_dict(lr) for d in self.directions],
        }


def _solve_pinv(point: _Point, t: Tensor, rtol: float, maxiter: int) -> tuple[Tensor, float, float]:
    """``z = H⁺ t`` by two consistent MINRES solves; returns ``(z, |P₀ t|, relative residual)``.

    A direct MINRES solve of ``H z = t`` is inconsistent when ``t`` has a
    null-space part, and then keeps iterating on the numerically-zero
    eigenvalues (``~1e-16 λ₁``), blowing ``z`` up. Instead: (1) solve the
    consistent system ``H y = H t``: its iterates lie in ``span{Ht, H²t, …}`` ⊂
    range(H), so ``y = P_R t`` and ``t − y = P₀ t``; (2) solve the consistent
    ``H z = y``. Both stop at ``rtol`` before the null eigenvalues matter, so
    eigenvalues below about ``rtol·λ₁`` count as null.
    """
    d = t.numel()
    op = sla.LinearOperator(
        (d, d), matvec=lambda v: _np(point.hvp(_torch(np.asarray(v).reshape(-1), t))),
        dtype=np.float64)
    tn = float(t.norm())
    if tn == 0.0:
        return torch.zeros_like(t), 0.0, 0.0
    ht = point.hvp(t)
    if float(ht.norm()) == 0.0:
        return torch.zeros_like(t), tn, 0.0
    y_np = _minres(op, _np(ht), rtol, maxiter)
    y = _torch(y_np, t)
    null_c = float((t - y).norm())
    z_np = _minres(op, y_np, rtol, maxiter)
    z = _torch(z_np, t)
    res = float((point.hvp(z) - y).norm()) / tn
    return z, null_c, res


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
    point = point or _Point(objective, x_star)
    try:
        if eigenvalue is None:
            eigenvalue = float(v @ point.hvp(v))
        lam1 = eigenvalue if lam1 is None else lam1
        t = objective.d3(x_star, v, v).detach()
        fourth = float(objective.d4(x_star, v))
        d = x_star.numel()
        z, null_c, range_res = _solve_pinv(point, t, solve_rtol, solve_maxiter or min(50 * d, 5000))
    finally:
        if own:
            point.release()
    tht = float(t @ z)
    Q = fourth / 12.0 - tht / 4.0
    tn = float(t.norm())
    scale = max(abs(lam1), abs(eigenvalue), np.finfo(float).tiny)
    singular = bool(math.isfinite(min_eig) and abs(min_eig) <= null_tol * scale)
    degenerate = bool(singular and null_c > max(degenerate_tol * tn, 1e-12))
    repeated = bool(math.isfinite(gap) and gap <= 1e-6 * scale)
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
    return DirectionReduction(
        eigenvalue=float(eigenvalue), eigenvector=v, eta_c=2.0 / eigenvalue if eigenvalue > 0
        else math.inf, Q=Q, fourth=fourth, t=t, h_pinv_t=z, t_hpinv_t=tht, null_component=null_c,
        singular=singular, degenerate=degenerate, repeated=repeated, gap=gap,
        solve_residual=range_res, note=note)


def _smallest_eigenvalue(point: _Point, lam1: float, d: int) -> float:
    """Algebraically smallest eigenvalue of H via Lanczos on ``λ₁ I − H`` (loose tolerance)."""
    if d == 1:
        return lam1
    shift = abs(lam1) if lam1 != 0 else 1.0
    res = lanczos(lambda v: shift * v - point.hvp(v), d, 1, tol=1e-10,
                  dtype=point.x.dtype, device=point.x.device, max_iter=min(d, 400))
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
    eig = top_eigenpairs(objective, x_star, min(k + 1, d), tol=eig_tol)
    vals = np.asarray(eig.eigenvalues, dtype=float)
    point = _Point(objective, x_star)
    try:
        grad_norm = float(point.grad.norm())
        lam1 = float(vals[0])
        min_eig = _smallest_eigenvalue(point, lam1, d)
        dirs = []
        for i in range(min(k, len(vals))):
            others = np.delete(vals, i)
            gap = float(np.min(np.abs(others - vals[i]))) if others.size else math.nan
            dirs.append(_reduce_direction(
                objective, x_star, eig.eigenvectors[:, i], float(vals[i]), point=point,
                lam1=lam1, min_eig=min_eig, gap=gap, solve_rtol=solve_rtol,
                solve_maxiter=solve_maxiter, null_tol=null_tol, degenerate_tol=degenerate_tol))
    finally:
        point.release()
    return Reduction(x_star, grad_norm, min_eig, dirs, lr)


# ---------------------------------------------------------------- sweep
@dataclass
class SweepRow:
    lr: float
    eta_minus_eta_c: float
    predicted_half_amplitude: float
    measured_half_amplitude: float
    kind: str  # "period_two", "fixed_point", "none" (no branch predicted), "failed"
    stable: bool | None
    max_multiplier: float
    residual: float
    converged: bool
    fixed_point_stable: bool  # GD stability of x* at this lr (top eigenvalues only)

    FIELDS = ("lr", "eta_minus_eta_c", "predicted_half_amplitude", "measured_half_amplitude",
              "kind", "stable", "max_multiplier", "residual", "converged", "fixed_point_stable")


@dataclass
class Sweep:
    reduction: Reduction
    direction: int
    rows: list[SweepRow]
    orbits: list[OrbitResult | None]

    @property
    def eta_c(self) -> float:
        return self.reduction.directions[self.direction].eta_c

    def measured(self) -> list[SweepRow]:
        return [r for r in self.rows if r.kind == "period_two" and r.converged]

    def fit_exponent(self) -> tuple[float, float]:
        """Least-squares slope and intercept of log a vs log |η − η_c| over the measured branch."""
        rows = self.measured()
        if len(rows) < 2:
            return math.nan, math.nan
        xs = np.log([abs(r.eta_minus_eta_c) for r in rows])
        ys = np.log([r.measured_half_amplitude for r in rows])
        slope, icpt = np.polyfit(xs, ys, 1)
        return float(slope), float(icpt)

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(SweepRow.FIELDS)
            for r in self.rows:
                w.writerow([getattr(r, f) for f in SweepRow.FIELDS])
        return path

    def to_dict(self) -> dict:
        slope, _ = self.fit_exponent()
        return {
            "direction": self.direction,
            "eta_c": self.eta_c,
            "exponent": _finite(slope),
            "rows": [{f: (_finite(getattr(r, f)) if isinstance(getattr(r, f), float)
                          else getattr(r, f)) for f in SweepRow.FIELDS} for r in self.rows],
        }


def _fixed_point_stable(reduction: Reduction, lr: float) -> bool:
    """GD stability of x* at ``lr`` from the known eigenvalues (top-k and the smallest)."""
    eigs = [x.eigenvalue for x in reduction.directions] + [reduction.min_eigenvalue]
    return all(abs(1 - lr * e) < 1 for e in eigs if math.isfinite(e))


def bifurcation_sweep(
    objective: Objective,
    reduction: Reduction,
    lrs: Sequence[float],
    *,
    direction: int = 0,
    tol: float = 1e-10,
    max_iter: int = 60,
    n_floquet: int = 4,
    dense_max: int = 600,
    deflate: bool = True,
    checks: bool = False,
) -> Sweep:
    """Continue the period-two branch of ``direction`` over ``lrs``.

    Learning rates on the side where the reduction predicts orbits are solved
    in order of distance from ``η_c``: the first from the predicted orbit, each
    next one from the previous solution (falling back to the prediction when
    that solve fails or lands on a fixed point). On the other side no branch
    is predicted; those rows have kind ``none``. Every row also records the
    GD stability of ``x*`` itself (``max_i |1 − η λ_i| < 1`` over the reduced
    eigenvalues and the smallest one).
    """
    dr = reduction.directions[direction]
    lrs = [float(v) for v in lrs]
    if any(not (v > 0 and math.isfinite(v)) for v in lrs):
        raise ValueError("learning rates must be positive and finite")
    results: dict[int, OrbitResult | None] = {}
    supported = [i for i, v in enumerate(lrs) if dr.supports_orbit(v)]
    supported.sort(key=lambda i: abs(lrs[i] - dr.eta_c))
    prev: OrbitResult | None = None
    kw = dict(tol=tol, max_iter=max_iter, n_floquet=n_floquet, dense_max=dense_max,
              deflate=deflate, checks=checks)
    for i in supported:
        lr = lrs[i]
        res = None
        if prev is not None and prev.converged and prev.kind == "period_two":
            res = find_orbit(objective, lr, prev.x, prev.y, **kw)
        if res is None or not res.converged or res.kind != "period_two":
            res2 = find_orbit(objective, lr, *reduction.predicted_orbit(lr, direction), **kw)
            if res is None or (res2.converged and res2.kind == "period_two"):
                res = res2
        results[i] = res
        prev = res
    rows, orbits = [], []
    for i, lr in enumerate(lrs):
        fp_stable = _fixed_point_stable(reduction, lr)
        res = results.get(i)
        pred = dr.predicted_half_amplitude(lr)
        if res is None:
            rows.append(SweepRow(lr, lr - dr.eta_c, pred, math.nan, "none", None, math.nan,
                                 math.nan, False, fp_stable))
        else:
            kind = res.kind if res.converged else "failed"
            rows.append(SweepRow(lr, lr - dr.eta_c, pred, res.half_amplitude, kind, res.stable,
                                 res.max_multiplier, res.residual, res.converged, fp_stable))
        orbits.append(res)
    return Sweep(reduction, direction, rows, orbits)


def plot_bifurcation(sweep: Sweep, path: str | Path, title: str | None = None) -> Path:
    """Bifurcation diagram: half-amplitude vs η (measured points, predicted curve, η_c).

    Stable orbits are filled circles, unstable ones open circles; the fixed
    point's branch (amplitude 0) is solid where GD-stable and dashed where not.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    dr = sweep.reduction.directions[sweep.direction]
    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    lrs = np.array([r.lr for r in sweep.rows])
    lo, hi = float(lrs.min()), float(lrs.max())
    if math.isfinite(dr.eta_c):  # keep η_c in view
        pad = 0.05 * (max(hi, dr.eta_c) - min(lo, dr.eta_c))
        lo, hi = min(lo, dr.eta_c - pad), max(hi, dr.eta_c + pad)
    grid = np.linspace(lo, hi, 400)
    pred = np.array([dr.predicted_half_amplitude(v) for v in grid])
    ax.plot(grid, pred, "-", color="tab:blue", lw=1.2, label="predicted  √((2/η−λ)/(2Q))")
    fp_stable = np.array([_fixed_point_stable(sweep.reduction, v) for v in grid])
    zero = np.zeros_like(grid)
    ax.plot(np.where(fp_stable, grid, np.nan), zero, "-", color="k", lw=2,
            label="fixed point (stable)")
    ax.plot(np.where(~fp_stable, grid, np.nan), zero, "--", color="k", lw=1.2,
            label="fixed point (unstable)")
    meas = [r for r in sweep.rows if r.kind == "period_two" and r.converged]
    st = [r for r in meas if r.stable]
    un = [r for r in meas if not r.stable]
    if st:
        ax.plot([r.lr for r in st], [r.measured_half_amplitude for r in st], "o",
                color="tab:red", label="orbit (stable)")
    if un:
        ax.plot([r.lr for r in un], [r.measured_half_amplitude for r in un], "o",
                mfc="none", color="tab:red", label="orbit (unstable)")
    ax.axvline(dr.eta_c, color="tab:gray", ls=":", label=f"η_c = {dr.eta_c:.5g}")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("half-amplitude a = |x − y|/2")
    ax.set_title(title or f"period-two branch, λ = {dr.eigenvalue:.5g}, Q = {dr.Q:.4g} "
                          f"({dr.side})", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
