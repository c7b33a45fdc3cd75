"""The peers eoskit is measured against: curvlinops, PyHessian and Cohen et al.'s protocol.

Every peer gets the same loss: curvlinops and PyHessian take a criterion, here
:class:`HalfSquaredError` = ``MSELoss(reduction='sum')/(2n)`` over the full
batch (curvlinops then applies no further normalisation, its reduction being
'sum'), which equals eoskit's ``mse`` objective. curvlinops and PyHessian are
optional: they are imported only inside the functions that use them, and
:func:`have` says whether one is installed.

>>> import torch
>>> crit = HalfSquaredError(n=2)
>>> float(crit(torch.tensor([[1.0], [3.0]]), torch.zeros(2, 1)))  # (1 + 9) / (2 * 2)
2.5
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable

import torch
from torch import Tensor, nn

from eoskit.bench.bench_problem import BenchProblem


class HalfSquaredError(nn.MSELoss):
    """``MSELoss(reduction='sum') / (2n)``: eoskit's MSE as a criterion for curvlinops/PyHessian.

    ``reduction`` stays ``'sum'`` so curvlinops adds no 1/N of its own.
    """

    def __init__(self, n: int):
        super().__init__(reduction="sum")
        self.scale = 0.5 / n

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return super().forward(input, target) * self.scale


def have(module: str) -> bool:
    """Whether ``module`` is installed (without importing it)."""
    return importlib.util.find_spec(module) is not None


def cohen_hvp_fn(prob: BenchProblem, chunk: int) -> Callable[[Tensor], Tensor]:
    """Cohen et al.'s HVP: double backward rebuilt per product, over chunks, loss/n each."""
    model, X, Y, n = prob.model, prob.X, prob.Y, prob.n
    params = list(model.parameters())

    def hvp(v: Tensor) -> Tensor:  # (d,) -> (d,)
        out = torch.zeros(prob.dim, dtype=prob.dtype)
        for lo in range(0, n, chunk):
            xb, yb = X[lo: lo + chunk], Y[lo: lo + chunk]
            loss = 0.5 * ((model(xb) - yb) ** 2).sum() / n
            grads = torch.autograd.grad(loss, params, create_graph=True)
            dot = torch.cat([g.reshape(-1) for g in grads]) @ v
            g2 = torch.autograd.grad(dot, params, retain_graph=True)
            out += torch.cat([g.reshape(-1) for g in g2])
        return out

    return hvp


def curvlinops_operator(prob: BenchProblem):
    """curvlinops' ``HessianLinearOperator`` on the module's parameters, the setting's chunks."""
    from curvlinops import HessianLinearOperator

    model = prob.model
    chunk = prob.setting.physical_batch or prob.n
    data = [(prob.X[lo: lo + chunk], prob.Y[lo: lo + chunk]) for lo in range(0, prob.n, chunk)]
    return HessianLinearOperator(model, HalfSquaredError(prob.n), list(model.parameters()), data,
                                 check_deterministic=False, num_data=prob.n)


class PyHessianCounter:
    """Counts PyHessian's products (wraps its module-level ``hessian_vector_product``)."""

    def __enter__(self):
        import pyhessian.hessian  # noqa: F401  (the package re-exports the class by that name)

        ph = sys.modules["pyhessian.hessian"]
        self.mod, self.orig, self.count = ph, ph.hessian_vector_product, 0

        def counted(*a, **kw):
            self.count += 1
            return self.orig(*a, **kw)

        ph.hessian_vector_product = counted
        return self

    def __exit__(self, *exc):
        self.mod.hessian_vector_product = self.orig


class default_dtype:
    """PyHessian draws its vectors with the default dtype; give it the problem's."""

    def __init__(self, dtype):
        self.dtype = dtype

    def __enter__(self):
        self.old = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.old)


def pyhessian_setup(prob: BenchProblem):
    """PyHessian's ``hessian`` object on the full batch (its gradient graph built once)."""
    from pyhessian import hessian

    for p in prob.model.parameters():
        p.grad = None
    with default_dtype(prob.dtype):
        h = hessian(prob.model, HalfSquaredError(prob.n), data=(prob.X, prob.Y), cuda=False)
    return h
