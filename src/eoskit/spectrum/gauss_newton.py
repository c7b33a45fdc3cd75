"""The Gauss–Newton split of the Hessian: ``H = G + (H − G)``, ``G = Jᵀ ∇²ℓ J``.

For a loss ``f(p) = ℓ(z(p))`` of network outputs ``z``, ``G`` is the part of the
curvature that comes through the loss (positive semi-definite for convex ℓ,
such as MSE and cross-entropy) and ``H − G = Σ ∂ℓ/∂z_i ∇²z_i`` the part that
comes through the network's own curvature, weighted by the residuals.

A product ``G v`` is
:func:`~eoskit.objective.gauss_newton_products.gauss_newton_product`'s: a forward-mode
JVP, the loss Hessian on the outputs and a VJP through one kept forward graph, no second
derivative of the network. ``(H − G) v`` subtracts it from a
product of the composite's Hessian. Memory: the kept forward graph, the
composite's gradient graph and the eigensolver's basis.

Example:
    >>> import torch
    >>> W = torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64)
    >>> outputs = lambda p: torch.tanh(W @ p)
    >>> loss = lambda z: 0.5 * (z ** 2).sum()
    >>> split = gauss_newton_eigs(outputs, loss, torch.zeros(2, dtype=torch.float64))
    >>> round(float(split.gauss_newton.eigenvalues[0]), 8)  # σ₁(W)², tanh' = 1 at 0
    5.82842712
    >>> round(float(split.remainder.eigenvalues[0]), 8)  # zero residuals: H = G
    0.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from eoskit.eigs import EigResult, LanczosTracker, lanczos
from eoskit.objective import FunctionObjective
from eoskit.objective.gauss_newton_products import OutputLoss, Outputs, gauss_newton_product


@dataclass
class GaussNewtonSplit:
    """Top eigenpairs of the Gauss–Newton matrix ``G`` and of the remainder ``H − G``."""

    gauss_newton: EigResult
    remainder: EigResult


def gauss_newton_eigs(outputs: Outputs, loss: OutputLoss, x: Tensor, k: int = 1,
                      tol: float = 1e-8, **kwargs) -> GaussNewtonSplit:
    """Top-k algebraic eigenpairs of ``G`` and of ``H − G`` for ``f = loss ∘ outputs`` at ``x``.

    ``outputs(p)``: the network outputs on the flat parameters ``p``; ``loss(z)``:
    the mean loss of outputs ``z`` (targets closed over). Further keywords go to
    :func:`eoskit.eigs.lanczos` (e.g. ``v0`` to warm-start both solves).
    """
    x = x.detach()
    G = gauss_newton_product(outputs, loss, x)
    opts = dict(tol=tol, dtype=x.dtype, device=x.device, **kwargs)
    composite = FunctionObjective(lambda p: loss(outputs(p)), x.numel(), dtype=x.dtype,
                                  device=x.device)
    with composite.at(x) as point:
        remainder = lanczos(lambda v: point.hvp(v) - G(v), x.numel(), k, **opts)
    return GaussNewtonSplit(lanczos(G, x.numel(), k, **opts), remainder)


@dataclass
class GaussNewtonTracker:
    """``G``'s and ``H − G``'s top-k along a run, each warm-started from the last point's vectors.

    Each part is an :class:`eoskit.eigs.LanczosTracker` (``mode``, ``criterion`` and
    the periodic cold restart as there) fed that part's product.
    """

    k: int = 1
    tol: float = 1e-6
    restart_every: int = 50
    criterion: str = "residual"
    parts: dict[str, LanczosTracker] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        for name in ("gauss_newton", "remainder"):
            self.parts[name] = LanczosTracker(self.k, self.tol, self.restart_every,
                                                criterion=self.criterion)

    def measure(self, outputs: Outputs, loss: OutputLoss, x: Tensor) -> GaussNewtonSplit:
        x = x.detach()
        G = gauss_newton_product(outputs, loss, x)
        args = (x.numel(), x.dtype, x.device)
        composite = FunctionObjective(lambda p: loss(outputs(p)), x.numel(), dtype=x.dtype,
                                      device=x.device)
        with composite.at(x) as point:
            rest = self.parts["remainder"].measure(lambda v: point.hvp(v) - G(v), *args)
        return GaussNewtonSplit(self.parts["gauss_newton"].measure(G, *args), rest)

    def state_dict(self) -> dict:
        return {name: t.state_dict() for name, t in self.parts.items()}

    def load_state_dict(self, state: dict, device) -> None:
        for name, t in self.parts.items():
            t.load_state_dict(state[name], device)
