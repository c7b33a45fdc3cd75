"""A user's module and a user's *mean* loss function as an :class:`~eoskit.objective.Objective`.

``loss_fn(output, target)`` follows the ``torch.nn.functional`` convention
(``reduction='mean'``): it returns the mean over the samples it is given.
Chunk ``c`` of ``n_c`` samples therefore contributes ``loss_fn(chunk) · n_c/n``,
so the sum over chunks is the mean over all ``n`` samples and chunking
(``physical_batch``) changes memory, never the value.

The module is evaluated with ``torch.func.functional_call`` on the flat
vector's parameters and *clones* of its buffers, read from the live module at
every evaluation: the user's module (parameters, buffers, gradients) is never
written. Inputs may be a tensor, a tuple of tensors (``model(*inputs)``) or a
dict of tensors (``model(**inputs)``, the Hugging Face convention); targets
may be ``None`` when the model computes its own loss (``loss_fn(output, None)``).

Example:
    >>> import torch
    >>> model = torch.nn.Linear(3, 1).double()
    >>> X, Y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 1, dtype=torch.float64)
    >>> mse = torch.nn.functional.mse_loss
    >>> whole = LossFnObjective(model, mse, X, Y)
    >>> chunked = LossFnObjective(model, mse, X, Y, physical_batch=3)
    >>> x = whole.x0()
    >>> bool(torch.isclose(whole.value(x), chunked.value(x), rtol=1e-12))
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from eoskit.objective.base import Objective
from eoskit.objective.model import (
    BatchNormChunkingWarning,
    _batch_norm_in_training,
    chunk_bounds,
    flatten_params,
    layout_of,
)

LossFn = Callable[[object, object], Tensor]


def take(data, lo: int, hi: int):
    """Samples ``lo:hi`` of a tensor, or of every tensor in a tuple, list or dict."""
    if data is None:
        return None
    if isinstance(data, dict):
        return {k: take(v, lo, hi) for k, v in data.items()}
    if isinstance(data, (tuple, list)):
        return type(data)(take(v, lo, hi) for v in data)
    return data[lo:hi]


def n_samples(data) -> int:
    """Length of the first tensor found in ``data`` (its sample dimension)."""
    if isinstance(data, dict):
        return n_samples(next(iter(data.values())))
    if isinstance(data, (tuple, list)):
        return n_samples(data[0])
    return len(data)


def to_device(data, dtype: torch.dtype, device: torch.device):
    """Floating tensors to ``dtype`` and every tensor to ``device``, recursively."""
    if isinstance(data, dict):
        return {k: to_device(v, dtype, device) for k, v in data.items()}
    if isinstance(data, (tuple, list)):
        return type(data)(to_device(v, dtype, device) for v in data)
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype if data.is_floating_point() else data.dtype)
    return data


def call_model(model: nn.Module, tensors: dict[str, Tensor], inputs):
    if isinstance(inputs, dict):
        return functional_call(model, tensors, (), inputs)
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    return functional_call(model, tensors, args)


class LossFnObjective(Objective):
    """Mean of ``loss_fn(model(inputs), targets)`` over the samples, on flat parameters.

    ``dtype``/``device`` (default: the model's parameters') are those of the
    flat vector and of the inputs; the module is not converted (its
    parameters are replaced during the call, its buffers cast on the fly).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        inputs,
        targets=None,
        *,
        physical_batch: int | Sequence[int] | None = None,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        hvp_method: str = "retained",
    ):
        super().__init__(hvp_method)
        first = next(model.parameters())
        self.dtype = dtype or first.dtype
        self.device = torch.device(device) if device is not None else first.device
        self.model = model
        self.loss_fn = loss_fn
        self.layout = layout_of(model)
        self.dim = self.layout.dim
        self.n = n_samples(inputs)
        if self.n == 0 or (targets is not None and n_samples(targets) != self.n):
            raise ValueError("inputs and targets must be non-empty and of equal length")
        self.inputs = to_device(inputs, self.dtype, self.device)
        self.targets = to_device(targets, self.dtype, self.device)
        self.bounds = chunk_bounds(self.n, physical_batch)
        if len(self.bounds) > 1 and _batch_norm_in_training(model):
            warnings.warn("the model has BatchNorm in training mode: each physical chunk is "
                          "normalised by its own statistics, so physical_batch changes the loss",
                          BatchNormChunkingWarning, stacklevel=2)

    def x0(self) -> Tensor:
        """The model's current parameters, flat, in the objective's dtype and device."""
        return flatten_params(self.model, self.dtype, self.device)

    def forward(self, x: Tensor, inputs):
        # buffers cloned from the live module: a forward pass may write to them (BatchNorm's
        # running statistics), never to the module's own
        buffers = {name: b.detach().clone().to(
            device=self.device, dtype=self.dtype if b.is_floating_point() else b.dtype)
            for name, b in self.model.named_buffers()}
        return call_model(self.model, {**self.layout.unflatten(x), **buffers}, inputs)

    def terms(self):
        for lo, hi in self.bounds:
            xb, yb = take(self.inputs, lo, hi), take(self.targets, lo, hi)
            share = (hi - lo) / self.n

            def term(x, xb=xb, yb=yb, share=share):
                return self.loss_fn(self.forward(x, xb), yb) * share, None

            yield term
