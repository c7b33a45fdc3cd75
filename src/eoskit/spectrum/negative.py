"""Negative curvature: the smallest algebraic Hessian eigenvalues λ_min, at a point and tracked.

The bottom of the spectrum of ``H`` is the top of ``−H``, so λ_min is eoskit's
top-k eigensolver (and its warm-started tracker) run on the negated product,
with the values negated back. Lanczos converges at both ends of the spectrum
at the same rate, so this costs what λ₁ costs, and the Krylov space is
shift-invariant: no shift is needed.

Example:
    >>> import torch
    >>> f = lambda x: x[0] ** 2 - 3 * x[1] ** 2 + x[0] * x[2]
    >>> round(float(lambda_min(f, torch.zeros(3, dtype=torch.float64)).eigenvalues[0]), 8)
    -6.0
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from eoskit.eigs import EigResult, LanczosTracker, MatVec, lanczos
from eoskit.spectrum.operand import Loss, as_objective


def _negated(res: EigResult) -> EigResult:
    """The result of a solve on ``−H`` read as one on ``H``: ascending values from λ_min."""
    return replace(res, eigenvalues=-res.eigenvalues,
                   ritz_values=None if res.ritz_values is None else -res.ritz_values)


def bottom_eigenpairs(matvec: MatVec, dim: int, k: int = 1, **kwargs) -> EigResult:
    """The k smallest algebraic eigenpairs of ``matvec``, ascending, by Lanczos on its negation."""
    return _negated(lanczos(lambda v: -matvec(v), dim, k, **kwargs))


def lambda_min(f: Loss, x: Tensor, k: int = 1, tol: float = 1e-8, **kwargs) -> EigResult:
    """The k smallest algebraic eigenpairs of ∇²f(x), ascending (λ_min first).

    ``f``: a callable or an :class:`~eoskit.objective.Objective`; keywords as
    :func:`eoskit.eigs.lanczos` (``v0`` a warm start).
    """
    x = x.detach()
    with as_objective(f, x).at(x) as point:
        return bottom_eigenpairs(point.hvp, x.numel(), k, tol=tol, dtype=x.dtype,
                                 device=x.device, **kwargs)


@dataclass
class LambdaMinTracker:
    """λ_min along a run: an :class:`eoskit.eigs.LanczosTracker` on ``−H``.

    Warm-started from the last point's bottom vectors, with the same periodic
    cold restart (which keeps the more negative answer), modes and checkpoint state.
    """

    k: int = 1
    tol: float = 1e-6
    restart_every: int = 50
    criterion: str = "residual"
    tracker: LanczosTracker = field(init=False, repr=False)

    def __post_init__(self):
        self.tracker = LanczosTracker(self.k, self.tol, self.restart_every,
                                        criterion=self.criterion)

    def measure(self, hvp: MatVec, dim: int, dtype: torch.dtype, device) -> EigResult:
        """The k smallest eigenpairs at the point whose Hessian product is ``hvp``."""
        return _negated(self.tracker.measure(lambda v: -hvp(v), dim, dtype, device))

    def state_dict(self) -> dict:
        return self.tracker.state_dict()

    def load_state_dict(self, state: dict, device) -> None:
        self.tracker.load_state_dict(state, device)
