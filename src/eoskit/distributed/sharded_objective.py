"""A mean loss over data shared by many ranks, as one :class:`~eoskit.objective.Objective`.

Each rank holds a :class:`ShardModelObjective`: its own samples, in the same
chunks as one process, each term ``loss_sum(chunk) / n`` with the *global*
``n``. The loss, the gradient and every derivative of the whole objective are
then sums over the ranks: :class:`ShardedObjective` takes the rank's result
and all-reduces it (one collective per value-and-gradient, per Hessian-vector
product or block, per ``d3``/``d4``). Nothing is re-chunked here; everything
above it (eigensolvers, trackers, diagnostics) runs unchanged on every rank.

Example (one rank, where the reduction is the identity):
    >>> import torch
    >>> model = torch.nn.Linear(3, 2).double()
    >>> X, Y = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    >>> full = ModelObjective(model, "mse", X, Y)
    >>> part = ShardModelObjective(model, "mse", X, Y, n_total=6)
    >>> sharded = ShardedObjective(part, reduce=lambda t: t.clone())
    >>> x = full.x0()
    >>> bool(torch.allclose(sharded.grad(x), full.grad(x)))
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from eoskit.distributed.group import all_reduce_sum
from eoskit.objective.base import Objective, PointObjective
from eoskit.objective.model import ModelObjective

Reduce = Callable[[Tensor], Tensor]


class ShardModelObjective(ModelObjective):
    """A rank's shard of a mean loss: its chunks' loss sums over the GLOBAL count ``n_total``.

    ``n`` is the global count (so ``accuracy`` and the terms are shares of the
    whole data set); ``n_local`` is the shard's own.
    """

    def __init__(self, model, loss, inputs, targets, *, n_total: int, **kw):
        super().__init__(model, loss, inputs, targets, **kw)
        self.n_local = self.n
        self.n = int(n_total)


class ShardedPoint(PointObjective):
    """A :class:`~eoskit.objective.PointObjective` for a sharded objective: the rank's own
    point (one retained graph), its value, gradient and products all-reduced. It keeps the
    base's properties and context manager, not its constructor (which would build a graph
    on this rank's shard without the reduction)."""

    def __init__(self, parent: ShardedObjective, x: Tensor | None, copy: bool = True,
                 live: list[Tensor] | None = None):
        self.parent = parent
        self.local = parent.local.at(x, copy, live)
        self._vga: tuple[Tensor, Tensor, Tensor | None] | None = None

    def _value_grad_aux(self) -> tuple[Tensor, Tensor, Tensor | None]:
        if self._vga is None:
            local = self.local
            self._vga = self.parent.reduce_vga(local.value, local.grad, local.aux)
        return self._vga

    @property
    def x(self) -> Tensor:
        return self.local.x

    @property
    def alive(self) -> bool:
        return self.local.alive

    def hvp(self, v: Tensor) -> Tensor:
        """H(x) v for v of shape (d,) or (d, k): one all-reduce of d·k floats."""
        self.parent.hvp_count += 1 if v.ndim == 1 else v.shape[1]
        return self.parent.reduce(self.local.hvp(v))

    def release(self) -> None:
        self.local.release()


class ShardedObjective(Objective):
    """The sum over ranks of each rank's ``local`` objective (``reduce``: the all-reduce)."""

    def __init__(self, local: ModelObjective, reduce: Reduce = all_reduce_sum):
        super().__init__(local.hvp_method)
        self.local = local
        self.reduce = reduce
        for name in ("dim", "dtype", "device", "n", "model", "layout", "loss", "loss_name",
                     "physical_batch", "count_correct"):
            setattr(self, name, getattr(local, name))

    @property
    def inputs(self) -> Tensor:
        return self.local.inputs

    def terms(self):
        raise NotImplementedError("a sharded objective's terms are one rank's; its "
                                  "derivatives are reduced at the Objective level")

    def x0(self) -> Tensor:
        return self.local.x0()

    # values and gradients
    def reduce_vga(self, value: Tensor, g: Tensor,
                   aux: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Sum a rank's (value, gradient, aux) over the ranks: one reduction of d + 1 floats
        (and one of the integer aux)."""
        packed = self.reduce(torch.cat([value.detach().reshape(1), g.detach()]))  # (d + 1,)
        self.grad_count += 1
        return packed[0], packed[1:], (None if aux is None else self.reduce(aux))

    def value(self, x: Tensor) -> Tensor:
        return self.reduce(self.local.value(x))

    def value_grad_aux(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        return self.reduce_vga(*self.local.value_grad_aux(x))

    def loss_and_accuracy(self, x: Tensor) -> tuple[float, float | None]:
        loss, accuracy = self.local.loss_and_accuracy(x)
        correct = round(accuracy * self.n) if accuracy is not None else 0
        total = self.reduce(torch.tensor([loss, correct], dtype=torch.float64,
                                         device=self.device))
        return float(total[0]), (float(total[1]) / self.n if self.count_correct else None)

    def subset(self, index: Tensor):
        raise NotImplementedError("mini-batch rules (sgd) are not distributed; "
                                  "run them in one process")

    # second order and above
    def at(self, x: Tensor | None, copy: bool = True,
           live: list[Tensor] | None = None) -> ShardedPoint:
        point = ShardedPoint(self, x, copy, live)
        self._point = point
        return point

    def live_parameters(self) -> list[Tensor] | None:
        return self.local.live_parameters()

    def product(self, x: Tensor | None, v: Tensor, live: list[Tensor] | None = None) -> Tensor:
        self.hvp_count += 1 if v.ndim == 1 else v.shape[1]
        return self.reduce(self.local.product(x, v, live))

    def gauss_newton(self, x: Tensor) -> Callable[[Tensor], Tensor] | None:
        local = self.local.gauss_newton(x)  # every rank's model has the same outputs
        return None if local is None else (lambda v: self.reduce(local(v)))

    def d3(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        return self.reduce(self.local.d3(x, u, v))

    def d4(self, x: Tensor, v: Tensor) -> Tensor:
        return self.reduce(self.local.d4(x, v))
