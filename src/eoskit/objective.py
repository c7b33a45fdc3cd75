"""The one abstraction underneath eoskit: a loss on a flat parameter vector.

An :class:`Objective` maps a 1-D tensor ``x`` (float32 or float64, any device)
to a scalar loss and offers its derivatives:

* ``value(x)``, ``grad(x)``, ``value_and_grad(x)``
* ``hvp(x, v)`` for ``v`` of shape ``(d,)`` or a block ``(d, k)``
* ``d3(x, u, v)`` = ``T[u, v, ·]`` (third derivative tensor contracted twice)
* ``d4(x, v)`` = ``F[v, v, v, v]`` (fourth directional derivative)
* ``at(x)``: a :class:`PointObjective` that keeps one gradient graph alive so
  that many Hessian-vector products at the same point cost one backward each.

A loss over data is a *sum of terms* (one per chunk of the training set, each
weighted by its share of the samples), and every derivative is the sum of the
terms' derivatives, so chunking changes memory, never the numbers.

Example:
    >>> import torch
    >>> obj = FunctionObjective(lambda x: (x ** 4).sum() / 4, dim=3)
    >>> x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    >>> obj.hvp(x, torch.ones(3, dtype=torch.float64)).tolist()
    [3.0, 12.0, 27.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

HVP_METHODS = ("retained", "rev-rev", "fwd-rev")
LOSSES = ("mse", "ce")

ScalarFn = Callable[[Tensor], Tensor]


# ---------------------------------------------------------------- losses
def mse_sum(out: Tensor, target: Tensor) -> Tensor:
    """½‖f(x) − y‖² summed over outputs and over samples (divide by n for the mean)."""
    return 0.5 * ((out - target) ** 2).sum()


def ce_sum(out: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy summed over samples."""
    return nn.functional.cross_entropy(out, target, reduction="sum")


LOSS_SUMS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"mse": mse_sum, "ce": ce_sum}


def n_correct(out: Tensor, target: Tensor) -> Tensor:
    """Correct predictions in a chunk; targets are class indices or one-hot rows."""
    labels = target if target.ndim == 1 else target.argmax(dim=-1)
    return (out.argmax(dim=-1) == labels).sum()


# ---------------------------------------------------------------- the point-bound form
class PointObjective:
    """Value, gradient and HVPs at one fixed point, sharing one retained graph.

    Built once with ``create_graph=True``; each product is then a single
    backward pass through the gradient's graph (no forward pass is redone).
    """

    def __init__(self, parent: Objective, x: Tensor):
        self.parent = parent
        self.x = x.detach().clone().requires_grad_(True)
        total = None
        grad_total = None
        aux_total = None
        for term in parent.terms():
            loss, aux = term(self.x)
            (g,) = torch.autograd.grad(loss, self.x, create_graph=True)
            total = loss.detach() if total is None else total + loss.detach()
            grad_total = g if grad_total is None else grad_total + g
            if aux is not None:
                aux_total = aux if aux_total is None else aux_total + aux
        self._graph_grad = grad_total  # (d,), carries the graph
        self.value = total
        self.grad = grad_total.detach()
        self.aux = aux_total
        parent.grad_count += 1

    def hvp(self, v: Tensor) -> Tensor:
        """H v for v of shape (d,) or (d, k); one backward through the kept graph."""
        if v.ndim == 1:
            (hv,) = torch.autograd.grad(self._graph_grad, self.x, v, retain_graph=True)
            self.parent.hvp_count += 1
            return hv
        # (k, d) batched cotangents: one vmapped backward for the whole block
        (hv,) = torch.autograd.grad(
            self._graph_grad, self.x, v.T.contiguous(), retain_graph=True, is_grads_batched=True
        )
        self.parent.hvp_count += v.shape[1]
        return hv.T

    def release(self) -> None:
        """Drop the graph (frees its activations)."""
        self._graph_grad = None


# ---------------------------------------------------------------- base class
class Objective:
    """A scalar loss on a flat parameter vector, as a sum of terms.

    Subclasses implement :meth:`terms`, yielding callables ``term(x) -> (loss,
    aux)`` whose losses sum to the objective (``aux`` is an optional detached
    side result, e.g. correct predictions, summed alongside).
    """

    dim: int
    dtype: torch.dtype
    device: torch.device

    def __init__(self, hvp_method: str = "retained"):
        if hvp_method not in HVP_METHODS:
            raise ValueError(f"hvp_method must be one of {HVP_METHODS}, got {hvp_method!r}")
        self.hvp_method = hvp_method
        self.hvp_count = 0  # single-vector Hessian products so far
        self.grad_count = 0  # gradient evaluations so far
        self._point: PointObjective | None = None

    # subclasses
    def terms(self) -> Iterator[Callable[[Tensor], tuple[Tensor, Tensor | None]]]:
        raise NotImplementedError

    def term_fns(self) -> Iterator[ScalarFn]:
        for term in self.terms():
            yield lambda x, term=term: term(x)[0]

    # values and gradients
    def value(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return sum(fn(x) for fn in self.term_fns())

    def value_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        value, g, _ = self.value_grad_aux(x)
        return value, g

    def value_grad_aux(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Loss, gradient and summed aux in one pass over the data."""
        xr = x.detach().requires_grad_(True)
        value = torch.zeros((), dtype=x.dtype, device=x.device)
        g = torch.zeros_like(x)
        aux_total = None
        for term in self.terms():
            loss, aux = term(xr)
            (gc,) = torch.autograd.grad(loss, xr)
            value = value + loss.detach()
            g = g + gc
            if aux is not None:
                aux_total = aux if aux_total is None else aux_total + aux
        self.grad_count += 1
        return value, g, aux_total

    def grad(self, x: Tensor) -> Tensor:
        return self.value_and_grad(x)[1]

    # second order
    def at(self, x: Tensor) -> PointObjective:
        """Point-bound form: value, gradient and cheap repeated HVPs at ``x``."""
        point = PointObjective(self, x)
        self._point = point
        return point

    def hvp(self, x: Tensor, v: Tensor) -> Tensor:
        """Hessian-vector product; ``v`` is (d,) or a block (d, k)."""
        if self.hvp_method == "retained":
            point = self._point
            if point is None or point._graph_grad is None or not _same_point(point.x, x):
                point = self.at(x)
            return point.hvp(v)
        k = 1 if v.ndim == 1 else v.shape[1]
        self.hvp_count += k
        if self.hvp_method == "rev-rev":
            return self._hvp_double_backward(x, v)
        return self._hvp_forward_over_reverse(x, v)

    def _hvp_double_backward(self, x: Tensor, v: Tensor) -> Tensor:
        xr = x.detach().requires_grad_(True)
        out = torch.zeros(v.shape, dtype=x.dtype, device=x.device)
        for fn in self.term_fns():
            (g,) = torch.autograd.grad(fn(xr), xr, create_graph=True)
            if v.ndim == 1:
                (hv,) = torch.autograd.grad(g, xr, v)
                out = out + hv
            else:
                (hv,) = torch.autograd.grad(g, xr, v.T.contiguous(), is_grads_batched=True)
                out = out + hv.T
        return out

    def _hvp_forward_over_reverse(self, x: Tensor, v: Tensor) -> Tensor:
        x = x.detach()
        out = torch.zeros(v.shape, dtype=x.dtype, device=x.device)
        for fn in self.term_fns():
            def hvp1(vec, fn=fn):
                return jvp(grad(fn), (x,), (vec,))[1]

            out = out + (hvp1(v) if v.ndim == 1 else vmap(hvp1, in_dims=1, out_dims=1)(v))
        return out

    # higher directional derivatives
    def d3(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """``T[u, v, ·]``: the gradient of ``uᵀ H(x) v`` (reverse over forward-forward)."""
        x = x.detach()
        out = torch.zeros_like(x)
        for fn in self.term_fns():
            def second(y, fn=fn):
                return jvp(lambda z: jvp(fn, (z,), (u,))[1], (y,), (v,))[1]

            out = out + grad(second)(x)
        return out

    def d4(self, x: Tensor, v: Tensor) -> Tensor:
        """``F[v, v, v, v]``: fourth derivative of ``ε ↦ L(x + εv)`` at 0 (nested forward)."""
        x = x.detach()
        total = torch.zeros((), dtype=x.dtype, device=x.device)
        for fn in self.term_fns():
            total = total + directional_derivative(fn, x, v, order=4)
        return total

    def hessian(self, x: Tensor) -> Tensor:
        """Dense Hessian (d, d) by ``torch.func.hessian``: for tests and tiny problems."""
        x = x.detach()
        return sum(torch.func.hessian(fn)(x) for fn in self.term_fns())


def directional_derivative(fn: ScalarFn, x: Tensor, v: Tensor, order: int) -> Tensor:
    """d^order/dε^order fn(x + εv) at ε = 0, by nested forward-mode AD."""
    g = fn
    for _ in range(order):
        g = (lambda h: (lambda y: jvp(h, (y,), (v,))[1]))(g)
    return g(x)


def _same_point(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(
        a.detach(), b.detach()
    )


# ---------------------------------------------------------------- concrete objectives
class FunctionObjective(Objective):
    """Any callable ``f(x) -> scalar tensor`` on a 1-D tensor of length ``dim``.

    Example:
        >>> import torch
        >>> obj = FunctionObjective(lambda x: x[0] ** 2 + 3 * x[0] * x[1], dim=2)
        >>> obj.hessian(torch.zeros(2, dtype=torch.float64)).tolist()
        [[2.0, 3.0], [3.0, 0.0]]
    """

    def __init__(
        self,
        f: ScalarFn,
        dim: int,
        *,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        hvp_method: str = "retained",
    ):
        super().__init__(hvp_method)
        self.f = f
        self.dim = int(dim)
        self.dtype = dtype
        self.device = torch.device(device)

    def terms(self):
        yield lambda x: (self.f(x), None)


@dataclass(frozen=True)
class ParamLayout:
    """How a flat vector splits into a module's named parameters."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def dim(self) -> int:
        return sum(self.sizes)

    def unflatten(self, x: Tensor) -> dict[str, Tensor]:
        chunks = torch.split(x, self.sizes)
        return {n: c.view(s) for n, c, s in zip(self.names, chunks, self.shapes, strict=True)}

    def flatten(self, params: dict[str, Tensor]) -> Tensor:
        return torch.cat([params[n].reshape(-1) for n in self.names])


def layout_of(model: nn.Module) -> ParamLayout:
    named = [(n, p.shape) for n, p in model.named_parameters()]
    return ParamLayout(tuple(n for n, _ in named), tuple(s for _, s in named))


def flatten_params(model: nn.Module, dtype=None, device=None) -> Tensor:
    """The model's current parameters as one flat vector."""
    x = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return x.to(dtype=dtype or x.dtype, device=device or x.device).clone()


def chunk_bounds(n: int, chunk: int | Sequence[int] | None) -> list[tuple[int, int]]:
    """Split ``range(n)`` into consecutive chunks: a size, explicit sizes, or one chunk."""
    if chunk is None:
        return [(0, n)]
    sizes = [chunk] * (n // chunk) + ([n % chunk] if n % chunk else []) if isinstance(
        chunk, int
    ) else list(chunk)
    if any(s <= 0 for s in sizes) or sum(sizes) != n:
        raise ValueError(f"chunk sizes {sizes} must be positive and sum to {n}")
    bounds, start = [], 0
    for s in sizes:
        bounds.append((start, start + s))
        start += s
    return bounds


class ModelObjective(Objective):
    """Mean loss of ``model`` over ``(inputs, targets)`` as a function of its flat parameters.

    The loss is ``loss_sum(chunk) / n`` summed over chunks, so unequal chunks
    (``physical_batch``, or explicit sizes) are weighted by their sample counts.
    ``aux`` counts correct predictions (classification).

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(3, 2).double()
        >>> X, Y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
        >>> obj = ModelObjective(model, "mse", X, Y, physical_batch=4)
        >>> obj.dim
        8
    """

    def __init__(
        self,
        model: nn.Module,
        loss: str,
        inputs: Tensor,
        targets: Tensor,
        *,
        physical_batch: int | Sequence[int] | None = None,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        hvp_method: str = "retained",
        count_correct: bool = True,
    ):
        super().__init__(hvp_method)
        if loss not in LOSS_SUMS:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if len(inputs) != len(targets) or len(inputs) == 0:
            raise ValueError("inputs and targets must be non-empty and of equal length")
        self.dtype = dtype or inputs.dtype
        self.device = torch.device(device) if device is not None else inputs.device
        self.model = model.to(dtype=self.dtype, device=self.device)
        self.layout = layout_of(self.model)
        self.dim = self.layout.dim
        self.loss_name = loss
        self.loss_sum = LOSS_SUMS[loss]
        self.inputs = inputs.to(device=self.device, dtype=self.dtype)
        self.targets = targets.to(device=self.device)
        if self.targets.is_floating_point():
            self.targets = self.targets.to(self.dtype)
        self.n = len(inputs)
        self.physical_batch = physical_batch
        self.bounds = chunk_bounds(self.n, physical_batch)
        self.count_correct = count_correct and (loss == "ce" or self.targets.ndim == 2)

    def x0(self) -> Tensor:
        """The model's own parameters, flat, in the objective's dtype and device."""
        return flatten_params(self.model, self.dtype, self.device)

    def forward(self, x: Tensor, inputs: Tensor) -> Tensor:
        return functional_call(self.model, self.layout.unflatten(x), (inputs,))

    def terms(self):
        for lo, hi in self.bounds:
            xb, yb = self.inputs[lo:hi], self.targets[lo:hi]

            def term(x, xb=xb, yb=yb):
                out = self.forward(x, xb)
                aux = n_correct(out.detach(), yb) if self.count_correct else None
                return self.loss_sum(out, yb) / self.n, aux

            yield term

    def subset(self, index: Tensor) -> ModelObjective:
        """The same loss on a subset of the samples (a mini-batch), mean over that subset."""
        return ModelObjective(
            self.model,
            self.loss_name,
            self.inputs[index],
            self.targets[index],
            physical_batch=self.physical_batch if isinstance(self.physical_batch, int) else None,
            hvp_method=self.hvp_method,
            count_correct=self.count_correct,
        )

    def loss_and_accuracy(self, x: Tensor) -> tuple[float, float | None]:
        """Mean loss and accuracy (None for regression) without gradients."""
        total, correct = 0.0, 0
        with torch.no_grad():
            for term in self.terms():
                loss, aux = term(x)
                total += float(loss)
                if aux is not None:
                    correct += int(aux)
        return total, (correct / self.n if self.count_correct else None)
