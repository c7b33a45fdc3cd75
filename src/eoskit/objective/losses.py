"""Per-chunk loss sums used by :class:`~eoskit.objective.ModelObjective`.

Each function returns the loss *summed* over the chunk's samples; the
objective divides by the total sample count, so unequal chunks weigh by
their size and chunking never changes the mean.

Sequence outputs ``(N, P, V)`` (one classification per position, targets
``(N, P)`` class ids or ``(N, P, V)`` one-hot) are *averaged over positions*
within each sample, then summed over samples like any other output: the
loss is the mean per-token loss, as in language-model training, so its
scale, and so the sharpness it is compared with ``2/η``, does not grow with the
sequence length, and a one-position sequence gives exactly the image loss.
Outputs ``(N, V)`` are unchanged (there is one position).

Example:
    >>> import torch
    >>> float(mse_sum(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])))
    2.5
    >>> out = torch.zeros(1, 2, 3)  # one sample, two positions, three classes
    >>> round(float(ce_sum(out, torch.tensor([[0, 2]]))), 4)  # log 3, the mean over positions
    1.0986
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor, nn

LOSSES = ("mse", "ce")


def _positions(out: Tensor) -> int:
    """Positions per sample: the sizes between the sample and the class dimension."""
    return math.prod(out.shape[1:-1])


def mse_sum(out: Tensor, target: Tensor) -> Tensor:
    """½‖f(x) − y‖² summed over outputs (mean over positions) and over samples."""
    return 0.5 * ((out - target) ** 2).sum() / _positions(out)


def ce_sum(out: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy summed over samples (mean over positions); class dimension last."""
    if out.ndim > 2:  # (N, P, V) -> (N·P, V): cross_entropy wants classes in dim 1
        return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1),
                                           reduction="sum") / _positions(out)
    return nn.functional.cross_entropy(out, target, reduction="sum")


LOSS_SUMS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"mse": mse_sum, "ce": ce_sum}


class MeanLossSum:
    """A user's *mean* loss ``fn(output, target)`` as a chunk sum: ``fn(chunk) · len(chunk)``.

    The objective divides the sum over chunks by ``n``, so each chunk weighs by
    its share of the samples and chunking never changes the mean.

    >>> import torch
    >>> out, y = torch.tensor([[1.0], [3.0]]), torch.zeros(2, 1)
    >>> float(MeanLossSum(torch.nn.functional.mse_loss)(out, y))  # (1 + 9)/2 · 2
    10.0
    """

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor]):
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)

    def __call__(self, out: Tensor, target: Tensor) -> Tensor:
        value = self.fn(out, target)
        if not isinstance(value, Tensor) or value.ndim != 0:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"loss {self.name} must return the mean loss over the samples "
                             f"given (a scalar tensor), not {shape}")
        return value * len(out)


def loss_sum_of(loss: str | Callable[[Tensor, Tensor], Tensor]):
    """The chunk-sum function of a built-in loss name or of a user's mean loss."""
    if callable(loss):
        return MeanLossSum(loss)
    if loss not in LOSS_SUMS:
        raise ValueError(f"loss must be one of {LOSSES} or a mean-loss callable, got {loss!r}")
    return LOSS_SUMS[loss]


def n_correct(out: Tensor, target: Tensor) -> Tensor:
    """Correct predictions in a chunk; targets are class ids or one-hot rows.

    A sequence sample counts as correct when *every* position is (exact match):
    the count stays an integer per sample, which is what accuracy divides by n.

    >>> import torch
    >>> out = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])  # (2, 2, 2)
    >>> int(n_correct(out, torch.tensor([[0, 1], [0, 1]])))
    1
    """
    labels = target.argmax(dim=-1) if target.is_floating_point() else target
    hits = out.argmax(dim=-1) == labels  # (N,) or (N, P)
    return hits.reshape(len(hits), -1).all(dim=1).sum()
