"""Per-chunk loss sums used by :class:`~eoskit.objective.ModelObjective`.

Each function returns the loss *summed* over the chunk's samples; the
objective divides by the total sample count, so unequal chunks weigh by
their size and chunking never changes the mean.

Example:
    >>> import torch
    >>> float(mse_sum(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])))
    2.5
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

LOSSES = ("mse", "ce")


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
