"""Diagnostics of an adaptive run (Adam, AdamW, RMSProp): docs/theory.md §6 along the run.

For step ``t`` the preconditioner is the step's own ``P_t = diag(√v̂_t + ε)``. With that P
the one-step statements hold for *any* P (P is only the metric of the step): the Taylor
identity ``κ^P = sᵀH̃s/|s|²_P = 2(ΔL − gᵀs)/|s|²_P`` and the localisation bound
``κ^P ≤ λ₁(P_t^{-1/2} H(x_t + τ̃s_t) P_t^{-1/2})``. What needs a *fixed* P is the step
recurrence: the next step predicted with ``P`` held at ``P_t`` and ``g_{t+1} = g_t + H̄_t s_t``
(the rule's own update, so momentum, bias correction and weight decay are included) equals
the actual ``s_{t+1}`` only if ``P_{t+1} = P_t``. The row therefore reports

* ``recurrence_residual`` = ‖s_{t+1} − s^pred‖/‖s_{t+1}‖: how far the fixed-P recurrence is
  from holding (≈ 0 with ``--freeze-preconditioner-at``, not for plain Adam);
* ``precond_drift`` = ‖s_{t+1} − s^{P_t}_{t+1}‖/‖s_{t+1}‖, with ``s^{P_t}_{t+1}`` the true next
  step taken with ``P_t``: the part of that residual that is P's drift;
* ``recurrence_residual_fixed_p`` = ‖s^{P_t}_{t+1} − s^pred‖/‖s_{t+1}‖: the rest (the
  quadrature of H̄, ≈ 0 always). The two add up (the step is linear in the gradient):
  ``recurrence_residual ≤ precond_drift + recurrence_residual_fixed_p``.

The rule object is only asked what it already offers: ``preconditioner(g, x)`` (``P_t``
without advancing), ``step(g, x)`` on a copy, and its ``freeze_preconditioner_at``
hyperparameter (a copy frozen at its current step keeps ``P_t``).

Example (RMSProp on a quadratic, P frozen from the start: the recurrence is exact):
    >>> import torch
    >>> from eoskit.objective import FunctionObjective
    >>> from eoskit.optim import RMSprop
    >>> obj = FunctionObjective(lambda x: (torch.arange(1.0, 4.0, dtype=x.dtype) * x * x).sum(), 3)
    >>> rule = RMSprop(0.01, freeze_preconditioner_at=0)
    >>> x = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    >>> s = rule.step(obj.grad(x), x)
    >>> row = diagnose_adaptive_step(obj, rule, x, s, x + s)
    >>> row["recurrence_residual"] < 1e-12, row["precond_drift"], row["bound_holds"]
    (True, 0.0, True)
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from eoskit.diagnostics.identities import _float, _rel
from eoskit.diagnostics.localisation import localisation_points
from eoskit.diagnostics.preconditioned_identities import p_norm_sq, preconditioned_sharpness
from eoskit.diagnostics.quadrature import DEFAULT_NODES, segment_quadrature
from eoskit.objective import Objective

ADAPTIVE_DIAGNOSTIC_COLUMNS: list[str] = [
    "step",
    "lr",
    "step_norm",
    "step_p_norm_sq",  # |s_t|²_{P_t}
    "loss_t",
    "loss_next",
    "g_dot_s",
    "kappa_p_quad",  # sᵀH̃s/|s|²_P by quadrature
    "kappa_p_loss",  # 2(ΔL − gᵀs)/|s|²_P
    "kappa_mismatch",
    "loss_change_residual",
    "recurrence_residual",
    "precond_drift",
    "recurrence_residual_fixed_p",
    "p_frozen",  # P_{t+1} = P_t exactly
    "tau_tilde",
    "precond_sharpness",  # λ₁(P_t^{-1/2} H(x_t) P_t^{-1/2})
    "precond_sharpness_at_tau_tilde",
    "bound_holds",
    "smooth_flag",
    "nodes",
    "hvps",
]


def diagnostic_columns(rule) -> list[str]:
    """The diagnostics.csv header for a run with ``rule``."""
    from eoskit.diagnostics.diagnose import DIAGNOSTIC_COLUMNS

    return list(ADAPTIVE_DIAGNOSTIC_COLUMNS if rule.preconditioned else DIAGNOSTIC_COLUMNS)


def _frozen_copy(rule):
    """A copy of ``rule`` whose next steps keep the current ``P`` (that of the last step)."""
    frozen = copy.deepcopy(rule)
    frozen.hyper = {**frozen.hyper, "freeze_preconditioner_at": max(frozen.t - 1, 0)}
    return frozen


def _next_steps(rule, g_pred: Tensor, g_next: Tensor, x_next: Tensor):
    """(actual s_{t+1}, s_{t+1} with P_t, predicted s_{t+1} with P_t from g_pred, P_{t+1})."""
    p_next = rule.preconditioner(g_next, x_next)
    s_next = copy.deepcopy(rule).step(g_next, x_next)
    s_fixed = _frozen_copy(rule).step(g_next, x_next)
    s_pred = _frozen_copy(rule).step(g_pred, x_next)
    return s_next, s_fixed, s_pred, p_next


def diagnose_adaptive_step(
    objective: Objective,
    rule,
    x_t: Tensor,
    s_t: Tensor,
    x_next: Tensor,
    loss_t: float | None = None,
    loss_next: float | None = None,
    *,
    with_next: bool = True,
    nodes: int = DEFAULT_NODES,
    eig_tol: float = 1e-10,
    smooth_tol: float | None = None,
    bound_rtol: float = 1e-6,
) -> dict:
    """One row of :data:`ADAPTIVE_DIAGNOSTIC_COLUMNS` (``step`` aside) for the step ``s_t``.

    ``rule`` is the adaptive rule *after* it took ``s_t`` from ``x_t`` (its state holds
    ``v_t``, the first moment, the step count); ``x_next = x_t + s_t``. It is not changed.
    ``with_next=False`` (no ``s_{t+1}``, e.g. a run's last step) leaves the recurrence NaN.
    """
    x_t, s_t, x_next = x_t.detach(), s_t.detach(), x_next.detach()
    hvp0 = objective.hvp_count
    row = {c: math.nan for c in ADAPTIVE_DIAGNOSTIC_COLUMNS[1:]}
    row.update(lr=float(rule.lr), nodes=int(nodes), bound_holds=False, smooth_flag=False,
               p_frozen=False)
    val_x, g_x = objective.value_and_grad(x_t)
    loss_t = _float(val_x) if loss_t is None else float(loss_t)
    loss_next = _float(objective.value(x_next)) if loss_next is None else float(loss_next)
    g_next = objective.grad(x_next)
    p_t = _frozen_copy(rule).preconditioner(g_next, x_next)
    qp = p_norm_sq(s_t, p_t)
    gs = _float(g_x @ s_t)
    row.update(step_norm=_float(s_t.norm()), step_p_norm_sq=qp, loss_t=loss_t,
               loss_next=loss_next, g_dot_s=gs)
    if not (qp > 0 and math.isfinite(qp) and math.isfinite(loss_t) and math.isfinite(loss_next)):
        row["hvps"] = objective.hvp_count - hvp0
        return row
    quad = segment_quadrature(objective, x_t, s_t, nodes)
    dl = loss_next - loss_t
    row["kappa_p_quad"] = _float(s_t @ quad.htilde_s) / qp
    row["kappa_p_loss"] = 2.0 * (dl - gs) / qp
    row["kappa_mismatch"] = _rel(abs(row["kappa_p_quad"] - row["kappa_p_loss"]),
                                 abs(row["kappa_p_loss"]))
    row["loss_change_residual"] = _rel(abs(dl - gs - 0.5 * qp * row["kappa_p_quad"]), abs(dl))
    if with_next:
        s_next, s_fixed, s_pred, p_next = _next_steps(rule, g_x + quad.hbar_s, g_next, x_next)
        n = _float(s_next.norm())
        row["recurrence_residual"] = _rel(_float((s_next - s_pred).norm()), n)
        row["precond_drift"] = _rel(_float((s_next - s_fixed).norm()), n)
        row["recurrence_residual_fixed_p"] = _rel(_float((s_fixed - s_pred).norm()), n)
        row["p_frozen"] = bool(torch.equal(p_next, p_t))
    row.update(_bound(objective, x_t, s_t, p_t, quad, row["kappa_p_quad"], nodes, eig_tol,
                      bound_rtol))
    tol = smooth_tol if smooth_tol is not None else (1e-6 if x_t.dtype == torch.float64 else 1e-3)
    checks = [row["kappa_mismatch"], row["loss_change_residual"]]
    if row["p_frozen"]:  # the recurrence is an identity only with P held
        checks.append(row["recurrence_residual"])
    row["smooth_flag"] = bool(all(math.isfinite(c) and c <= tol for c in checks))
    row["hvps"] = objective.hvp_count - hvp0
    return row


def _bound(objective, x_t, s_t, p_t, quad, kappa, nodes, eig_tol, bound_rtol) -> dict:
    """τ̃ and κ^P ≤ λ₁(P^{-1/2} H(x_t + τ̃s_t) P^{-1/2}) (φ^P is φ rescaled: τ̃ is §4's)."""
    out: dict = {}
    eig_tol = max(eig_tol, 100 * float(torch.finfo(x_t.dtype).eps))
    try:
        out["precond_sharpness"] = float(
            preconditioned_sharpness(objective, x_t, p_t, eig_tol).eigenvalues[0])
        loc = localisation_points(objective, x_t, s_t, nodes=nodes, quad=quad)
        lam = float(preconditioned_sharpness(objective, x_t + loc.tau_tilde * s_t, p_t,
                                             eig_tol).eigenvalues[0])
        out.update(tau_tilde=loc.tau_tilde, precond_sharpness_at_tau_tilde=lam,
                   bound_holds=bool(kappa <= lam + bound_rtol * abs(lam)))
    except (ValueError, RuntimeError):  # non-finite φ or a failed eigensolve: NaN, go on
        pass
    return out


def diagnosable(rule) -> bool:
    """Whether a run with ``rule`` can write diagnostics.csv (a GD-type or an adaptive step)."""
    return bool(rule.edge_coupling or rule.preconditioned)


def diagnose_rule_step(objective: Objective, rule, x_t: Tensor, s_t: Tensor,
                       s_next: Tensor | None, lr: float, loss_t: float | None,
                       loss_next: float | None, *, nodes: int = DEFAULT_NODES,
                       sharpness_v0: Tensor | None = None) -> dict:
    """The diagnostics row of a run's step: §1-4 for a GD-type rule (``s_next = −ηg_{t+1}``),
    §6 with ``P_t`` for an adaptive one (``rule`` after ``s_t``; ``s_next`` only says whether
    there is a next step)."""
    if rule.preconditioned:
        return diagnose_adaptive_step(objective, rule, x_t, s_t, x_t + s_t, loss_t, loss_next,
                                      with_next=s_next is not None, nodes=nodes)
    from eoskit.diagnostics.diagnose import diagnose_step

    return diagnose_step(objective, x_t, s_t, s_next, lr, loss_t, loss_next, nodes=nodes,
                         sharpness_v0=sharpness_v0)
