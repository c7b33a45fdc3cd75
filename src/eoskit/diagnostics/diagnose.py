"""One row of diagnostics per step: :func:`diagnose_step`, :data:`DIAGNOSTIC_COLUMNS`.

Precision. The identities are exact in real arithmetic; check them in float64. The
loss-change residual and κ from the loss difference two nearby losses, so their rounding
floor is ``eps·(|L_t| + |L_{t+1}|)/|ΔL|``; ``diagnose_step`` adds such floors to the
smoothness tolerance so that a tiny step is not mistaken for a kink.

Non-smooth networks (ReLU). Autograd's Hessian misses the delta functions of kinks, so the
identities fail on a step whose segment crosses one. ``diagnose_step`` reports every value
as computed and sets ``smooth_flag=False`` when any identity residual exceeds
``smooth_tol`` (+ its rounding floor). ``smooth_flag=False`` on a smooth network means the
quadrature was too coarse for that step: raise ``nodes``.

Example (a quartic, where the 12-node quadrature is exact):
    >>> import torch
    >>> from eoskit.objective import FunctionObjective
    >>> obj = FunctionObjective(lambda x: (x ** 4).sum() / 12 + (x ** 2).sum(), dim=2)
    >>> x = torch.tensor([0.5, -0.3], dtype=torch.float64)
    >>> lr = 0.3
    >>> s = -lr * obj.grad(x)
    >>> row = diagnose_step(obj, x, s, -lr * obj.grad(x + s), lr, None, None)
    >>> row["smooth_flag"], row["bound_holds"], row["kappa_mismatch"] < 1e-12
    (True, True, True)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from eoskit.diagnostics.identities import (
    _eps,
    _float,
    _rel,
    effective_curvature,
    kappa_mismatch,
    loss_change_residual,
    step_recurrence_residual,
)
from eoskit.diagnostics.localisation import Localisation, localisation_points
from eoskit.diagnostics.quadrature import DEFAULT_NODES, SegmentQuadrature, segment_quadrature
from eoskit.eigs import top_eigenpairs
from eoskit.objective import Objective

DIAGNOSTIC_COLUMNS: list[str] = [
    "step",
    # the required row
    "coupling",
    "grad_x_residual",
    "q_bar",
    "kappa_quad",
    "kappa_loss",
    "recurrence_residual",
    "loss_change_residual",
    "kappa_mismatch",
    "tau_bar",
    "tau_tilde",
    "sharpness",
    "sharpness_at_tau_tilde",
    "bound_holds",
    "smooth_flag",
    # extras
    "lr",
    "step_norm",
    "loss_t",
    "loss_next",
    "loss_change",
    "q_bar_grad",
    "grad_diff_residual",
    "phi_tau_bar",
    "phi_tau_tilde",
    "localised",
    "bound_margin",
    "sharpness_converged",
    "smoothness_ratio",
    "nodes",
    "hvps",
]


def _nan_row(lr: float, nodes: int) -> dict:
    """The row of a step that could not be diagnosed: NaN values, every flag False."""
    row = {c: math.nan for c in DIAGNOSTIC_COLUMNS[1:]}
    row.update(bound_holds=False, smooth_flag=False, localised=False,
               sharpness_converged=False, lr=float(lr), nodes=int(nodes), hvps=0)
    return row


def diagnose_step(
    objective: Objective,
    x_t: Tensor,
    s_t: Tensor,
    s_next: Tensor | None,
    lr: float,
    loss_t: float | None,
    loss_next: float | None,
    *,
    nodes: int = DEFAULT_NODES,
    eig_tol: float = 1e-8,
    sharpness_v0: Tensor | None = None,
    smooth_tol: float | None = None,
    bound_rtol: float = 1e-6,
    vectors: dict | None = None,
) -> dict:
    """Every docs/theory.md §1-4 quantity for the step ``s_t`` from ``x_t``: one row.

    ``objective`` is the loss the step descended (the full-batch objective for GD; for
    SGD the batch objective of step t, with ``s_next=None``, which makes the recurrence
    residual NaN). ``loss_t``/``loss_next`` are that objective's values at ``x_t`` and
    ``x_t + s_t``; None evaluates them. The keys are ``DIAGNOSTIC_COLUMNS[1:]``; all
    values are floats, ints or bools.

    Cost: ``nodes`` + ~20 (localisation) gradient+HVP pairs, two gradients, and two
    Lanczos solves to relative residual ``max(eig_tol, 100·eps)`` (warm-started from
    ``sharpness_v0``, then from the first solve's vector). Pass a dict as ``vectors`` to
    receive ``sharpness_vector`` (the unit top eigenvector at ``x_t``), e.g. to warm-start
    the next call.

    ``smooth_flag``: every segment identity checked (H̄s = g(x+s) − g(x), recurrence,
    loss change, κ_quad = κ_loss) held to ``smooth_tol`` (default 1e-6 in float64,
    1e-3 otherwise) plus its rounding floor; ``smoothness_ratio`` is the largest
    residual/threshold ratio (≤ 1 means smooth). ``bound_holds``: κ_quad ≤
    λ_max(x_t + τ̃ s_t)(1 + ``bound_rtol``) (Lanczos reports a lower bound on λ_max).
    ``grad_x_residual`` checks that ``s_t = −η g(x_t)`` (a GD pair); it is reported but not
    part of ``smooth_flag``, which is about the segment.
    """
    lr = float(lr)
    x_t, s_t = x_t.detach(), s_t.detach()
    row = _nan_row(lr, nodes)
    if not (bool(torch.isfinite(x_t).all()) and bool(torch.isfinite(s_t).all())):
        return row
    hvp0 = objective.hvp_count
    tol = smooth_tol if smooth_tol is not None else (1e-6 if x_t.dtype == torch.float64 else 1e-3)
    val_x, g_x = objective.value_and_grad(x_t)
    val_y, g_y = objective.value_and_grad(x_t + s_t)
    loss_t = _float(val_x) if loss_t is None else float(loss_t)
    loss_next = _float(val_y) if loss_next is None else float(loss_next)
    ss = _float(s_t @ s_t)
    row.update(loss_t=loss_t, loss_next=loss_next, loss_change=loss_next - loss_t,
               step_norm=math.sqrt(ss))
    row["coupling"] = loss_t + loss_next - ss / (2.0 * lr)
    if not (ss > 0 and math.isfinite(ss) and math.isfinite(loss_t) and math.isfinite(loss_next)):
        row["hvps"] = objective.hvp_count - hvp0
        return row
    # §1: the GD-pair condition ∇_x A(x_t, x_t + s_t) = 0
    row["grad_x_residual"] = _rel(_float((g_x + s_t / lr).norm()), _float(g_x.norm()))
    # §2-3: one quadrature gives H̄s, q̄ and κ
    quad = segment_quadrature(objective, x_t, s_t, nodes)
    dg = g_y - g_x  # (d,)
    row["q_bar"], row["kappa_quad"] = quad.q_bar, quad.kappa
    row["q_bar_grad"] = _float(s_t @ dg) / ss
    row["grad_diff_residual"] = _rel(_float((quad.hbar_s - dg).norm()), _float(dg.norm()))
    row["kappa_loss"] = effective_curvature(loss_t, loss_next, ss, lr)
    row["kappa_mismatch"] = kappa_mismatch(quad.kappa, row["kappa_loss"])
    row["loss_change_residual"] = loss_change_residual(loss_t, loss_next, ss, quad.kappa, lr)
    if s_next is not None:
        s_next = s_next.detach()
        row["recurrence_residual"] = step_recurrence_residual(s_t, s_next, quad.hbar_s, lr)
    # §4: localisation and the sharpness bound
    try:
        loc = localisation_points(objective, x_t, s_t, quad=quad)
        row.update(tau_bar=loc.tau_bar, tau_tilde=loc.tau_tilde, phi_tau_bar=loc.phi_tau_bar,
                   phi_tau_tilde=loc.phi_tau_tilde, localised=loc.exact_bar and loc.exact_tilde)
    except (ValueError, RuntimeError):  # non-finite φ on the segment: report NaN, go on
        loc = None
    row.update(_sharpness_bound(objective, x_t, s_t, quad, loc, eig_tol=eig_tol,
                                v0=sharpness_v0, bound_rtol=bound_rtol, vectors=vectors))
    ratio = _smoothness_ratio(row, x_t, s_t, s_next, g_x, g_y, quad.kappa, tol)
    row["smoothness_ratio"] = ratio
    row["smooth_flag"] = bool(ratio <= 1.0)
    row["hvps"] = objective.hvp_count - hvp0
    return row


def _sharpness_bound(
    objective: Objective, x_t: Tensor, s_t: Tensor, quad: SegmentQuadrature,
    loc: Localisation | None, *, eig_tol: float, v0: Tensor | None, bound_rtol: float,
    vectors: dict | None,
) -> dict:
    """λ_max at x_t and at x_t + τ̃ s_t, and the bound κ ≤ λ_max(x_t + τ̃ s_t)."""
    out: dict = {}
    eig_tol = max(eig_tol, 100 * _eps(x_t.dtype))  # 1e-8 is out of float32's reach
    try:
        eig = top_eigenpairs(objective, x_t, 1, tol=eig_tol, v0=v0)
        out["sharpness"] = float(eig.eigenvalues[0])
        converged = eig.converged
        if vectors is not None:
            vectors["sharpness_vector"] = eig.eigenvectors[:, 0]
        if loc is not None:
            eig2 = top_eigenpairs(objective, x_t + loc.tau_tilde * s_t, 1, tol=eig_tol,
                                  v0=eig.eigenvectors[:, 0])
            lam = float(eig2.eigenvalues[0])
            converged = converged and eig2.converged
            out["sharpness_at_tau_tilde"] = lam
            out["bound_margin"] = lam - quad.kappa
            out["bound_holds"] = bool(quad.kappa <= lam + bound_rtol * abs(lam))
        out["sharpness_converged"] = bool(converged)
    except (ValueError, RuntimeError, np.linalg.LinAlgError):
        pass
    return out


def _smoothness_ratio(
    row: dict, x_t: Tensor, s_t: Tensor, s_next: Tensor | None, g_x: Tensor, g_y: Tensor,
    kappa: float, tol: float,
) -> float:
    """The largest segment-identity residual over tol + what rounding can explain;
    inf when one is NaN."""
    eps = _eps(x_t.dtype)
    loss_t, loss_next = row["loss_t"], row["loss_next"]
    lsum = abs(loss_t) + abs(loss_next)
    dl = abs(loss_next - loss_t)
    ss = _float(s_t @ s_t)
    kscale = max(abs(kappa), abs(row["kappa_loss"]), 1e-300)
    dg_norm = _float((g_y - g_x).norm())
    floors = {
        "grad_diff_residual": 1e3 * eps * (_float(g_x.norm()) + _float(g_y.norm()))
        / max(dg_norm, 1e-300),
        "loss_change_residual": 32 * eps * lsum / max(dl, 1e-300),
        "kappa_mismatch": 64 * eps * lsum / (ss * kscale),
    }
    if s_next is not None:
        nn_ = max(_float(s_next.norm()), 1e-300)
        floors["recurrence_residual"] = (
            1e3 * eps * (math.sqrt(ss) + nn_ + _float(x_t.norm())) / nn_
        )
    ratios = [row[k] / (tol + f) for k, f in floors.items()]
    return max(ratios) if ratios and not any(math.isnan(r) for r in ratios) else math.inf

