"""Edge-coupling identities (docs/theory.md §1-3) and the residuals that check them.

§1 edge coupling: :func:`edge_coupling` A_η(x, y) = L(x) + L(y) − |x − y|²/(2η), its
gradients :func:`edge_coupling_grads`, and :func:`gd_pair_residual` (zero iff ``y`` is
the GD step from ``x``). §3: :func:`effective_curvature` κ read off the loss. Exact-identity
residuals, each relative: :func:`step_recurrence_residual` (§2),
:func:`loss_change_residual` (§3), :func:`kappa_mismatch` (κ by quadrature vs from the loss).

Example:
    >>> effective_curvature(loss_t=1.0, loss_next=1.0, step_norm_sq=0.5, lr=0.1)
    20.0
    >>> kappa_mismatch(4.0, 3.0)
    0.25
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from eoskit.objective import Objective


# ---------------------------------------------------------------- helpers (shared by siblings)
def _float(t) -> float:
    return float(t.detach()) if isinstance(t, Tensor) else float(t)


def _rel(num: float, den: float) -> float:
    """|num|/|den|, NaN when either is not finite; 0/0 is 0 (an exact identity)."""
    if not (math.isfinite(num) and math.isfinite(den)):
        return math.nan
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return abs(num) / abs(den)


def _eps(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps)


# ---------------------------------------------------------------- §1 edge coupling
def edge_coupling(objective: Objective, x: Tensor, y: Tensor, lr: float) -> float:
    """A_η(x, y) = L(x) + L(y) − |x − y|²/(2η).

    >>> import torch
    >>> from eoskit.objective import FunctionObjective
    >>> obj = FunctionObjective(lambda x: (x ** 2).sum(), dim=1)
    >>> edge_coupling(obj, torch.tensor([1.0], dtype=torch.float64),
    ...               torch.tensor([-1.0], dtype=torch.float64), lr=1.0)
    0.0
    """
    return _float(objective.value(x)) + _float(objective.value(y)) - _float(
        ((x - y) ** 2).sum()
    ) / (2.0 * lr)


def edge_coupling_grads(
    objective: Objective, x: Tensor, y: Tensor, lr: float
) -> tuple[Tensor, Tensor]:
    """(∇_x A, ∇_y A) = (g(x) − (x − y)/η, g(y) + (x − y)/η)."""
    diff = (x - y) / lr
    return objective.grad(x) - diff, objective.grad(y) + diff


def gd_pair_residual(objective: Objective, x: Tensor, y: Tensor, lr: float) -> float:
    """‖∇_x A(x, y)‖/‖g(x)‖: zero (to rounding) iff ``y = x − η g(x)`` is a GD step."""
    g = objective.grad(x)
    return _rel(_float((g - (x - y) / lr).norm()), _float(g.norm()))


# ---------------------------------------------------------------- §3 effective curvature
def effective_curvature(loss_t: float, loss_next: float, step_norm_sq: float, lr: float) -> float:
    """κ_t = 2/η + 2 (L_{t+1} − L_t)/|s_t|², read off the loss and the step norm
    (docs/theory.md §3); NaN for a zero step."""
    if step_norm_sq <= 0.0:
        return math.nan
    return 2.0 / lr + 2.0 * (loss_next - loss_t) / step_norm_sq


# ---------------------------------------------------------------- exact-identity residuals
def step_recurrence_residual(
    s_t: Tensor, s_next: Tensor, hbar_s: Tensor, lr: float
) -> float:
    """‖s_{t+1} − (s_t − η H̄_t s_t)‖/‖s_{t+1}‖ (docs/theory.md §2); ``hbar_s`` from
    quadrature."""
    return _rel(_float((s_next - (s_t - lr * hbar_s)).norm()), _float(s_next.norm()))


def loss_change_residual(
    loss_t: float, loss_next: float, step_norm_sq: float, kappa: float, lr: float
) -> float:
    """|ΔL − ½|s|²(κ − 2/η)|/|ΔL| (docs/theory.md §3), κ from quadrature."""
    dl = float(loss_next) - float(loss_t)
    return _rel(dl - 0.5 * step_norm_sq * (kappa - 2.0 / lr), dl)


def kappa_mismatch(kappa_quad: float, kappa_loss: float) -> float:
    """|κ_quad − κ_loss| / max(|κ_quad|, |κ_loss|): quadrature against the loss formula."""
    return _rel(kappa_quad - kappa_loss, max(abs(kappa_quad), abs(kappa_loss)))
