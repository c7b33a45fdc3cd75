"""The Gauss–Newton product of a loss of network outputs: ``G v = Jᵀ ∇²ℓ(z) J v``.

For a loss ``f(p) = ℓ(z(p))`` of outputs ``z``, ``G`` is the curvature that comes through
the loss (positive semi-definite for convex ℓ, such as MSE and cross-entropy). A product is
a forward-mode JVP ``J v`` (one forward pass with tangents), the loss Hessian on the
outputs (their size, small) and a VJP ``Jᵀ(·)`` through the graph of one forward pass
kept for all products: no second derivative of the network is taken. An objective offers
its own (:meth:`~eoskit.objective.Objective.gauss_newton`): a model's sums its chunks', a
distributed run's its ranks'.

Example:
    >>> W = torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64)
    >>> G = gauss_newton_product(lambda p: W @ p, lambda z: 0.5 * (z ** 2).sum(),
    ...                          torch.zeros(2, dtype=torch.float64))
    >>> G(torch.tensor([1.0, 0.0], dtype=torch.float64)).tolist()  # WᵀW e₀
    [1.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jvp

MatVec = Callable[[Tensor], Tensor]
Outputs = Callable[[Tensor], Tensor]
OutputLoss = Callable[[Tensor], Tensor]


def gauss_newton_product(outputs: Outputs, loss: OutputLoss, x: Tensor) -> MatVec:
    """``v ↦ G v = Jᵀ ∇²ℓ(z) J v`` at ``x``, with ``z = outputs(x)``."""
    x = x.detach()
    xr = x.clone().requires_grad_(True)
    z = outputs(xr)  # this forward graph serves every VJP
    zr = z.detach().requires_grad_(True)
    (gz,) = torch.autograd.grad(loss(zr), zr, create_graph=True)

    def product(v: Tensor) -> Tensor:
        jv = jvp(outputs, (x,), (v,))[1]
        if not gz.requires_grad:  # ℓ linear in z: ∇²ℓ = 0
            return torch.zeros_like(v)
        (hjv,) = torch.autograd.grad(gz, zr, jv, retain_graph=True)
        (jt,) = torch.autograd.grad(z, xr, hjv, retain_graph=True)
        return jt

    return product
