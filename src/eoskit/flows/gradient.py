"""Gradient flow dx/dt = −η∇L(x), time in units of GD steps (t ↔ t steps of size η).

Integrated by scipy's adaptive ``solve_ivp`` on the flat float64 vector
(default RK45, Dormand–Prince 5(4), ``rtol=1e-6``, ``atol=1e-9``; DOP853 for
tighter tolerances). An adaptive explicit scheme, not a fixed-step RK4 (the
paper's baseline): past the Edge of Stability gradient flow keeps sharpening,
so the step a fixed scheme needs shrinks as η·λ_max grows, and the controller
finds it. Integration runs segment by segment between recorded times, so a
run resumed at a segment boundary repeats the uninterrupted one exactly.

Example (a quadratic ½xᵀAx: x(t) = exp(−tηA)x₀):
    >>> import torch
    >>> from eoskit.objective import FunctionObjective
    >>> A = torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64))
    >>> obj = FunctionObjective(lambda x: 0.5 * x @ A @ x, dim=2)
    >>> x, info = integrate(obj, torch.tensor([1.0, 1.0], dtype=torch.float64), lr=0.5, duration=2)
    >>> [round(v, 5) for v in x.tolist()]  # exp(-1), exp(-3)
    [0.36788, 0.04979]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from eoskit.objective import Objective

METHODS = ("RK45", "DOP853", "RK23")
RTOL, ATOL = 1e-6, 1e-9


@dataclass
class GradientFlowSettings:
    method: str = "RK45"
    rtol: float = RTOL
    atol: float = ATOL

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"gradient-flow method must be one of {METHODS}, got {self.method!r}")
        if not (self.rtol > 0 and self.atol > 0):
            raise ValueError("gradient-flow rtol and atol must be positive")


def integrate(obj: Objective, x0: Tensor, lr: float, duration: float,
              settings: GradientFlowSettings | None = None) -> tuple[Tensor, dict]:
    """x(duration) from x(0) = x0 under dx/dt = −η∇L; info has the gradient count."""
    settings = settings or GradientFlowSettings()
    if duration <= 0:
        return x0.detach().clone(), {"grads": 0, "steps": 0}
    dtype, device = x0.dtype, x0.device

    def rhs(_t, y: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(y, dtype=dtype, device=device)
        return (-lr * obj.grad(x)).detach().cpu().numpy().astype(np.float64)

    y0 = x0.detach().cpu().numpy().astype(np.float64)
    sol = solve_ivp(rhs, (0.0, float(duration)), y0, method=settings.method,
                    rtol=settings.rtol, atol=settings.atol, t_eval=[float(duration)])
    if not sol.success:
        raise RuntimeError(f"gradient flow integration failed: {sol.message}")
    x = torch.as_tensor(sol.y[:, -1], dtype=dtype, device=device)
    return x, {"grads": int(sol.nfev), "steps": int(sol.t.size)}
