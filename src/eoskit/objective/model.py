"""A network's mean loss over a data set, as an :class:`~eoskit.objective.Objective`.

The one model objective of ``eoskit run`` and of the Monitor. The flat vector
``x`` holds the module's *trainable* parameters (``requires_grad=True``) and
splits into them by a :class:`ParamLayout`; frozen parameters are constants of
the loss, read from the live module like its buffers, so no step moves them and
no Hessian includes them. The module is evaluated with
``torch.func.functional_call`` on those parameters and *clones* of its buffers
(cast to the objective's dtype), read from the live module at every evaluation:
the user's module (its dtype, device, parameters, buffers, gradients) is never
written, but for one exception that leaves no trace: an ``fd`` product at a point held
by the module's own parameters (:meth:`ModelObjective.live_parameters`) displaces them in
place and gives every bit back before it returns.

The loss is a built-in name (``"mse"``, ``"ce"``: per-chunk sums,
:mod:`~eoskit.objective.losses`) or a user's *mean* loss ``loss(output,
target)`` (the ``torch.nn.functional`` convention): chunk ``c`` of ``n_c``
samples then contributes ``loss(chunk) · n_c/n``, so chunking
(``physical_batch``) changes memory, never the value. Inputs may be a
tensor, a tuple of tensors (``model(*inputs)``) or a dict of tensors
(``model(**inputs)``, the Hugging Face convention); targets may be ``None``
when the model computes its own loss (``loss(output, None)``).

Example:
    >>> import torch
    >>> model = torch.nn.Linear(3, 2).double()
    >>> X, Y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    >>> ModelObjective(model, "mse", X, Y, physical_batch=4).dim
    8
    >>> mse = torch.nn.functional.mse_loss
    >>> whole, chunked = (ModelObjective(model, mse, X, Y, physical_batch=c) for c in (None, 3))
    >>> x = whole.x0()
    >>> bool(torch.isclose(whole.value(x), chunked.value(x), rtol=1e-12))
    True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from eoskit.objective.base import Objective, flat_copy
from eoskit.objective.gauss_newton_products import gauss_newton_product
from eoskit.objective.losses import loss_sum_of, n_correct

Loss = str | Callable[[object, object], Tensor]  # a built-in name or a user's mean loss


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

    def unflatten(self, x: Tensor | list[Tensor]) -> dict[str, Tensor]:
        """The named parameters of a flat vector (views of it), or of its :meth:`parts`."""
        parts = self.parts(x) if isinstance(x, Tensor) else x
        return dict(zip(self.names, parts, strict=True))

    def parts(self, x: Tensor) -> list[Tensor]:
        """The parameters' views of a flat vector, in the layout's order."""
        chunks = torch.split(x, self.sizes)
        return [c.view(s) for c, s in zip(chunks, self.shapes, strict=True)]

    def flatten(self, params: dict[str, Tensor]) -> Tensor:
        return torch.cat([params[n].reshape(-1) for n in self.names])


class BatchNormChunkingWarning(UserWarning):
    """Chunking a BatchNorm model's data changes its loss (each chunk has its own statistics)."""


def _batch_norm_in_training(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
               for m in model.modules())


def take(data, lo: int, hi: int):
    """Samples ``lo:hi`` of a tensor, or of every tensor in a tuple, list or dict."""
    return _map(data, lambda t: t[lo:hi])


def pick(data, index: Tensor):
    """Samples ``index`` of a tensor, or of every tensor in a tuple, list or dict."""
    return _map(data, lambda t: t[index.to(t.device)])


def to_device(data, dtype: torch.dtype, device: torch.device):
    """Floating tensors to ``dtype`` and every tensor to ``device``, recursively."""
    return _map(data, lambda t: t.to(device=device,
                                     dtype=dtype if t.is_floating_point() else t.dtype))


def _map(data, fn):
    if data is None:
        return None
    if isinstance(data, dict):
        return {k: _map(v, fn) for k, v in data.items()}
    if isinstance(data, (tuple, list)):
        return type(data)(_map(v, fn) for v in data)
    return fn(data) if isinstance(data, Tensor) else data


def n_samples(data) -> int:
    """Length of the first tensor found in ``data`` (its sample dimension)."""
    if isinstance(data, dict):
        return n_samples(next(iter(data.values())))
    if isinstance(data, (tuple, list)):
        return n_samples(data[0])
    return len(data)


def trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The named parameters that the flat vector holds: those with ``requires_grad``."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def layout_of(model: nn.Module) -> ParamLayout:
    """The layout of the model's *trainable* parameters (frozen ones are constants)."""
    named = [(n, p.shape) for n, p in trainable(model)]
    return ParamLayout(tuple(n for n, _ in named), tuple(s for _, s in named))


def flatten_params(model: nn.Module, dtype=None, device=None) -> Tensor:
    """The model's current trainable parameters as one flat vector."""
    x = flat_copy(p for _, p in trainable(model))
    return x.to(dtype=dtype or x.dtype, device=device or x.device)


def flatten_params_into(model: nn.Module, out: Tensor) -> Tensor:
    """Write the model's trainable parameters into the flat ``out`` (d,), a parameter at a
    time (no d-long temporary): the values :func:`flatten_params` gives in ``out``'s dtype."""
    offset = 0
    for _, p in trainable(model):
        n = p.numel()
        out[offset:offset + n].copy_(p.detach().reshape(-1))
        offset += n
    if offset != out.numel():
        raise ValueError(f"the model has {offset} trainable parameters, the vector {out.numel()}")
    return out


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
    ``aux`` counts correct predictions (classification; ``count_correct=False``
    skips it). ``dtype``/``device`` (default: the model's parameters') are those
    of the flat vector and of the data; the module is not converted.

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
        loss: Loss,
        inputs,
        targets=None,
        *,
        physical_batch: int | Sequence[int] | None = None,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        hvp_method: str = "retained",
        count_correct: bool = True,
    ):
        super().__init__(hvp_method)
        loss_sum = loss_sum_of(loss)  # checks the name first: bad input before any work
        self.n = n_samples(inputs)
        if self.n == 0 or (targets is not None and n_samples(targets) != self.n):
            raise ValueError("inputs and targets must be non-empty and of equal length")
        first = next(model.parameters(), None)
        if first is None:
            raise ValueError(f"{type(model).__name__} has no parameters: there is no "
                             "Hessian to measure")
        self.dtype = dtype or first.dtype
        self.device = torch.device(device) if device is not None else first.device
        self.model = model
        self.layout = layout_of(model)
        self.parts = self.layout.parts  # the fd engine sums gradients a parameter at a time
        self.dim = self.layout.dim
        self.loss = loss
        self.loss_name = loss if isinstance(loss, str) else loss_sum.name
        self.loss_sum = loss_sum
        self.inputs = to_device(inputs, self.dtype, self.device)
        self.targets = to_device(targets, self.dtype, self.device)
        self.physical_batch = physical_batch
        self.bounds = chunk_bounds(self.n, physical_batch)
        # a user loss is counted on class ids only: its floating targets may be anything
        countable = isinstance(self.targets, Tensor) and (
            not self.targets.is_floating_point() if callable(loss)
            else loss == "ce" or _one_hot(self.targets))
        self.count_correct = count_correct and countable
        if len(self.bounds) > 1 and _batch_norm_in_training(model):
            warnings.warn("the model has BatchNorm in training mode: each physical chunk is "
                          "normalised by its own statistics, so physical_batch changes the "
                          "loss (chunking is exact only for models without BatchNorm)",
                          BatchNormChunkingWarning, stacklevel=2)

    def x0(self) -> Tensor:
        """The model's current parameters, flat, in the objective's dtype and device."""
        return flatten_params(self.model, self.dtype, self.device)

    def forward(self, x: Tensor, inputs):
        # buffers cloned from the live module: a forward pass may write to them (BatchNorm's
        # running statistics, a user module's counters), never to the module's own;
        # frozen parameters (requires_grad=False) enter the same way, as constants of the loss
        constants = {name: b.detach().clone().to(
            device=self.device, dtype=self.dtype if b.is_floating_point() else b.dtype)
            for name, b in [*self.model.named_buffers(), *self._frozen()]}
        tensors = {**self.layout.unflatten(x), **constants}
        if isinstance(inputs, dict):
            return functional_call(self.model, tensors, (), inputs)
        args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        return functional_call(self.model, tensors, args)

    def live_parameters(self) -> list[Tensor] | None:
        """The module's trainable parameters, in the layout's order, when they hold the
        objective's point exactly (its dtype and device, contiguous); else None.

        An ``fd`` product at a :meth:`at` point given them displaces them in place and gives
        every bit back (:mod:`~eoskit.objective.displacement`): the only writes to the
        module, undone before the product returns."""
        named = trainable(self.model)
        params = [p for _, p in named]
        if tuple(n for n, _ in named) != self.layout.names or any(
                p.dtype != self.dtype or p.device != self.device or not p.is_contiguous()
                for p in params):
            return None
        return params

    def gauss_newton(self, x: Tensor) -> Callable[[Tensor], Tensor] | None:
        """``v ↦ G v`` of the mean loss at ``x``: the sum of the chunks' ``J_cᵀ ∇²ℓ_c J_c``
        (the mean loss is a sum over samples, and so is ``G``); None when the model's output
        is not one tensor (a dict of outputs has no single ``J``). One chunk keeps its
        forward graph for every product; several rebuild each chunk's inside each product,
        so memory stays one chunk's, as ``physical_batch`` promises, for one more forward
        pass per chunk and product."""
        if not isinstance(self.forward(x, take(self.inputs, 0, 1)), Tensor):
            return None
        parts = [self._chunk_outputs_and_loss(lo, hi) for lo, hi in self.bounds]
        if len(parts) == 1:
            return gauss_newton_product(*parts[0], x)

        def product(v: Tensor) -> Tensor:
            return sum(gauss_newton_product(outputs, loss, x)(v) for outputs, loss in parts)

        return product

    def _chunk_outputs_and_loss(self, lo: int, hi: int):
        """``outputs(p)`` on samples lo:hi and their share ``loss(z)`` of the mean loss."""
        xb, yb = take(self.inputs, lo, hi), take(self.targets, lo, hi)
        return (lambda p: self.forward(p, xb)), (
            lambda z: self._loss_sum(z, yb, hi - lo) / self.n)

    def _frozen(self) -> list[tuple[str, Tensor]]:
        trained = set(self.layout.names)
        return [(n, p) for n, p in self.model.named_parameters() if n not in trained]

    def terms(self):
        for lo, hi in self.bounds:
            xb, yb = take(self.inputs, lo, hi), take(self.targets, lo, hi)

            def term(x, xb=xb, yb=yb, size=hi - lo):
                out = self.forward(x, xb)
                aux = n_correct(out.detach(), yb) if self.count_correct else None
                return self._loss_sum(out, yb, size) / self.n, aux

            yield term

    def _loss_sum(self, out, target, size: int) -> Tensor:
        """The chunk's loss summed over its ``size`` samples (a user's mean loss times
        ``size``: the count comes from the data, as a model may return a dict)."""
        if not callable(self.loss):
            return self.loss_sum(out, target)
        value = self.loss(out, target)
        if not isinstance(value, Tensor) or value.ndim != 0:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"loss {self.loss_name} must return the mean loss over the samples "
                             f"given (a scalar tensor), not {shape}")
        return value * size

    def subset(self, index: Tensor) -> ModelObjective:
        """The same loss on a subset of the samples (a mini-batch), mean over that subset."""
        return ModelObjective(
            self.model,
            self.loss,
            pick(self.inputs, index),
            pick(self.targets, index),
            physical_batch=self.physical_batch if isinstance(self.physical_batch, int) else None,
            dtype=self.dtype,
            device=self.device,
            hvp_method=self.hvp_method,
            count_correct=self.count_correct,
        )

    def loss_and_accuracy(self, x: Tensor) -> tuple[float, float | None]:
        """Mean loss and accuracy (None for regression) without gradients."""
        total, correct = 0.0, 0
        with torch.no_grad():
            for term in self.exact_terms():
                loss, aux = term(x)
                total += float(loss)
                if aux is not None:
                    correct += int(aux)
        return total, (correct / self.n if self.count_correct else None)


def _one_hot(targets: Tensor) -> bool:
    """Floating targets that are class labels (rows of 0s and one 1), not regression values:
    only those have an accuracy."""
    if not targets.is_floating_point():
        return True
    if targets.ndim < 2 or targets.shape[-1] < 2:
        return False
    return bool(((targets == 0) | (targets == 1)).all() and (targets.sum(-1) == 1).all())
