"""The edge-coupling identities with a fixed preconditioner P (docs/theory.md §6).

``P`` is symmetric positive definite, given as its diagonal ``p`` (d,) (an adaptive
optimiser's ``√v̂ + ε``) or as a matrix (d, d); ``|v|²_P = vᵀPv``. The step is
``s = −ηP⁻¹g``, and every §1-4 statement holds with the P-norm in place of the
Euclidean one: :func:`preconditioned_edge_coupling` A^P_η, its gradients and
:func:`preconditioned_pair_residual` (zero iff ``y`` is the P-step from ``x``), the
recurrence ``s_{t+1} = (I − ηP⁻¹H̄_t)s_t`` (:func:`preconditioned_recurrence_residual`),
``κ^P = sᵀH̃s/|s|²_P = 2/η + 2ΔL/|s|²_P`` (:func:`preconditioned_effective_curvature`),
the telescoping identity (:func:`preconditioned_forcing`) and the localisation bound
``κ^P ≤ λ₁(P^{-1/2}H(x+τ̃s)P^{-1/2})`` (:func:`preconditioned_localisation`).

Example (L = x²: H = 2, P = 4, η = 1: the P-step halves x, κ^P = 2/4):
    >>> import torch
    >>> from eoskit.objective import FunctionObjective
    >>> obj = FunctionObjective(lambda x: (x ** 2).sum(), dim=1)
    >>> x, p = torch.tensor([1.0], dtype=torch.float64), torch.tensor([4.0], dtype=torch.float64)
    >>> y = preconditioned_step(obj, x, 1.0, p)
    >>> y.tolist(), preconditioned_pair_residual(obj, x, y, 1.0, p)
    ([0.5], 0.0)
    >>> s = y - x
    >>> preconditioned_effective_curvature(1.0, 0.25, p_norm_sq(s, p), 1.0)
    0.5
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from eoskit.diagnostics.identities import _float, _rel
from eoskit.diagnostics.localisation import localisation_points
from eoskit.diagnostics.quadrature import DEFAULT_NODES, SegmentQuadrature, segment_quadrature
from eoskit.eigs.solvers import lanczos
from eoskit.objective import Objective


# ---------------------------------------------------------------- P as diagonal or matrix
def p_apply(p: Tensor, v: Tensor) -> Tensor:
    """``P v`` (d,)."""
    return p * v if p.ndim == 1 else p @ v


def p_solve(p: Tensor, v: Tensor) -> Tensor:
    """``P⁻¹ v`` (d,)."""
    return v / p if p.ndim == 1 else torch.linalg.solve(p, v)


def p_norm_sq(v: Tensor, p: Tensor) -> float:
    """``|v|²_P = vᵀPv``."""
    return _float(v @ p_apply(p, v))


def _inv_root(p: Tensor):
    """``v ↦ P^{-1/2} v`` with the symmetric root, for (d,) or (d, k) ``v``."""
    if p.ndim == 1:
        r = p.rsqrt()
        return lambda v: (r if v.ndim == 1 else r[:, None]) * v
    w, Q = torch.linalg.eigh(p)
    R = (Q * w.rsqrt()) @ Q.T  # (d, d)
    return lambda v: R @ v


# ---------------------------------------------------------------- §6.1 the P-edge coupling
def preconditioned_edge_coupling(objective: Objective, x: Tensor, y: Tensor, lr: float,
                                 p: Tensor) -> float:
    """A^P_η(x, y) = L(x) + L(y) − |x − y|²_P/(2η)."""
    return (_float(objective.value(x)) + _float(objective.value(y))
            - p_norm_sq(x - y, p) / (2.0 * lr))


def preconditioned_edge_coupling_grads(objective: Objective, x: Tensor, y: Tensor, lr: float,
                                       p: Tensor) -> tuple[Tensor, Tensor]:
    """(∇_x A^P, ∇_y A^P) = (g(x) − P(x − y)/η, g(y) + P(x − y)/η)."""
    diff = p_apply(p, x - y) / lr
    return objective.grad(x) - diff, objective.grad(y) + diff


def preconditioned_step(objective: Objective, x: Tensor, lr: float, p: Tensor) -> Tensor:
    """``x − ηP⁻¹g(x)``: the critical ``y`` of ``A^P_η(x, ·)``'s x-gradient."""
    return x - lr * p_solve(p, objective.grad(x))


def preconditioned_pair_residual(objective: Objective, x: Tensor, y: Tensor, lr: float,
                                 p: Tensor) -> float:
    """‖∇_x A^P(x, y)‖/‖g(x)‖: zero (to rounding) iff ``y = x − ηP⁻¹g(x)``."""
    g = objective.grad(x)
    return _rel(_float((g - p_apply(p, x - y) / lr).norm()), _float(g.norm()))


# ---------------------------------------------------------------- §6.2 the P-step recurrence
def preconditioned_recurrence_residual(s_t: Tensor, s_next: Tensor, hbar_s: Tensor, lr: float,
                                       p: Tensor) -> float:
    """‖s_{t+1} − (s_t − ηP⁻¹H̄_t s_t)‖/‖s_{t+1}‖; ``hbar_s`` = H̄_t s_t from quadrature."""
    return _rel(_float((s_next - (s_t - lr * p_solve(p, hbar_s))).norm()),
                _float(s_next.norm()))


def preconditioner_drift(g_next: Tensor, s_next: Tensor, lr: float, p_t: Tensor,
                         p_next: Tensor) -> float:
    """‖η(P_t⁻¹ − P_{t+1}⁻¹)g_{t+1}‖/‖s_{t+1}‖: the part of the fixed-P recurrence residual
    that a changing P makes, for steps ``s = −ηP_t⁻¹g_t`` (RMSProp's form)."""
    drift = lr * (p_solve(p_t, g_next) - p_solve(p_next, g_next))
    return _rel(_float(drift.norm()), _float(s_next.norm()))


# ---------------------------------------------------------------- §6.3 κ^P and telescoping
def preconditioned_effective_curvature(loss_t: float, loss_next: float, step_p_sq: float,
                                       lr: float, g_dot_s: float | None = None) -> float:
    """κ^P = 2/η + 2ΔL/|s|²_P for a P-step; for any step (momentum) 2(ΔL − gᵀs)/|s|²_P."""
    if step_p_sq <= 0.0:
        return float("nan")
    dl = float(loss_next) - float(loss_t)
    if g_dot_s is None:
        return 2.0 / lr + 2.0 * dl / step_p_sq
    return 2.0 * (dl - g_dot_s) / step_p_sq


def preconditioned_curvature(quad: SegmentQuadrature, step_p_sq: float) -> float:
    """κ^P = sᵀH̃s/|s|²_P from a segment quadrature of ``s``."""
    return quad.kappa * quad.step_norm_sq / step_p_sq


def preconditioned_forcing(losses, steps_p_sq, kappas, lr: float) -> tuple[float, float]:
    """Both sides of Σ_t |s_t|²_P (2/η − κ^P_t) = 2(L_0 − L_T); ``losses`` has T+1 entries."""
    lhs = sum(float(q) * (2.0 / lr - float(k)) for q, k in zip(steps_p_sq, kappas, strict=True))
    return lhs, 2.0 * (float(losses[0]) - float(losses[-1]))


# ---------------------------------------------------------------- §6.4 localisation
@dataclass
class PreconditionedLocalisation:
    """τ̃ with φ^P(τ̃) = κ^P, and λ₁(P^{-1/2} H(x + τ̃s) P^{-1/2}) ≥ κ^P (``bound_holds``)."""

    tau_tilde: float
    kappa: float  # κ^P by quadrature
    phi_at_tau_tilde: float  # φ^P(τ̃) = sᵀH(x+τ̃s)s/|s|²_P
    sharpness_at_tau_tilde: float  # λ₁(P^{-1/2} H(x + τ̃s) P^{-1/2})
    bound_holds: bool


def preconditioned_sharpness(objective: Objective, x: Tensor, p: Tensor, tol: float = 1e-10,
                             k: int = 1):
    """Top-k of P^{-1/2} H(x) P^{-1/2} by Lanczos (an :class:`~eoskit.eigs.EigResult`)."""
    root = _inv_root(p)
    with objective.at(x) as point:
        return lanczos(lambda v: root(point.hvp(root(v))), objective.dim, k, tol=tol,
                       dtype=x.dtype, device=x.device)


def preconditioned_localisation(objective: Objective, x: Tensor, s: Tensor, p: Tensor, *,
                                nodes: int = DEFAULT_NODES,
                                tol: float = 1e-10) -> PreconditionedLocalisation:
    """κ^P ≤ λ₁(P^{-1/2} H(x + τ̃s) P^{-1/2}) at the mean-value point τ̃ (docs/theory.md §6).

    φ^P = φ·|s|²/|s|²_P is the Euclidean φ times a constant, so τ̃ is §4's.
    """
    quad = segment_quadrature(objective, x, s, nodes)
    ratio = quad.step_norm_sq / p_norm_sq(s, p)
    loc = localisation_points(objective, x, s, nodes=nodes, quad=quad)
    lam = float(preconditioned_sharpness(objective, x + loc.tau_tilde * s, p, tol).eigenvalues[0])
    kappa = quad.kappa * ratio
    slack = 1e-10 * max(1.0, abs(lam))
    return PreconditionedLocalisation(loc.tau_tilde, kappa, loc.phi_tau_tilde * ratio, lam,
                                      kappa <= lam + slack)
