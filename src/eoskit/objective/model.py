"""A network's mean loss over a data set, as an :class:`~eoskit.objective.Objective`.

The flat vector ``x`` splits into the module's named parameters by a
:class:`ParamLayout`; the module itself is evaluated with
``torch.func.functional_call`` so the user's module is never mutated by a
forward pass.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(3, 2).double()
    >>> X, Y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    >>> ModelObjective(model, "mse", X, Y, physical_batch=4).dim
    8
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from eoskit.objective.base import Objective
from eoskit.objective.losses import loss_sum_of, n_correct


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


class BatchNormChunkingWarning(UserWarning):
    """Chunking a BatchNorm model's data changes its loss (each chunk has its own statistics)."""


def _in_dtype(model: nn.Module, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """The model itself if it already lives in ``dtype`` on ``device``, else a converted copy
    (the user's module is never converted in place)."""
    tensors = list(model.parameters()) + list(model.buffers())
    same = all((not t.is_floating_point() or t.dtype == dtype) and t.device == device
               for t in tensors)
    return model if same else copy.deepcopy(model).to(dtype=dtype, device=device)


def _batch_norm_in_training(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
               for m in model.modules())


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
        loss: str | Callable[[Tensor, Tensor], Tensor],
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
        loss_sum = loss_sum_of(loss)  # checks the name first: bad input before any work
        if len(inputs) != len(targets) or len(inputs) == 0:
            raise ValueError("inputs and targets must be non-empty and of equal length")
        self.dtype = dtype or (inputs.dtype if inputs.is_floating_point()
                               else torch.get_default_dtype())  # token inputs are integers
        self.device = torch.device(device) if device is not None else inputs.device
        self.model = _in_dtype(model, self.dtype, self.device)
        self.layout = layout_of(self.model)
        self.dim = self.layout.dim
        self.loss = loss
        self.loss_name = loss if isinstance(loss, str) else loss_sum.name
        self.loss_sum = loss_sum
        self.inputs = inputs.to(device=self.device,
                                dtype=self.dtype if inputs.is_floating_point() else None)
        self.targets = targets.to(device=self.device)
        if self.targets.is_floating_point():
            self.targets = self.targets.to(self.dtype)
        self.n = len(inputs)
        self.physical_batch = physical_batch
        self.bounds = chunk_bounds(self.n, physical_batch)
        # a user loss is counted on class ids only: its floating targets may be anything
        countable = (not self.targets.is_floating_point() if callable(loss)
                     else loss == "ce" or self.targets.ndim >= 2)
        self.count_correct = count_correct and countable
        if len(self.bounds) > 1 and _batch_norm_in_training(self.model):
            warnings.warn("the model has BatchNorm in training mode: each physical chunk is "
                          "normalised by its own statistics, so physical_batch changes the "
                          "loss (chunking is exact only for models without BatchNorm)",
                          BatchNormChunkingWarning, stacklevel=2)

    def x0(self) -> Tensor:
        """The model's own parameters, flat, in the objective's dtype and device."""
        return flatten_params(self.model, self.dtype, self.device)

    def forward(self, x: Tensor, inputs: Tensor) -> Tensor:
        # fresh copies of the buffers: a forward pass (BatchNorm's num_batches_tracked, a
        # user module's counters) may write to them, never to the model's own
        buffers = {name: b.clone() for name, b in self.model.named_buffers()}
        return functional_call(self.model, {**self.layout.unflatten(x), **buffers}, (inputs,))

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
            self.loss,
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
            for term in self.exact_terms():
                loss, aux = term(x)
                total += float(loss)
                if aux is not None:
                    correct += int(aux)
        return total, (correct / self.n if self.count_correct else None)
