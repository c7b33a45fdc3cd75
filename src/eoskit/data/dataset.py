"""The :class:`Dataset` a run trains on, the data-set registry and the option checks.

Also :class:`RawImages`, what every image loader hands to the shared
selection and preprocessing (``eoskit.data.load``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

DATASETS: tuple[str, ...] = (
    "mnist-5k",
    "digits",
    "mnist",
    "fashion-mnist",
    "cifar10",
    "synthetic",
    "synthetic-chebyshev",
)


class DataError(ValueError):
    """Bad data-set options, or data files that are missing or malformed."""


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Train/test tensors plus what a run needs to know about them.

    ``y_*`` are the loss targets: one-hot float for classification with
    ``loss="mse"``, int64 class indices for ``loss="ce"``, float
    ``(n, n_outputs)`` for regression. ``labels_*`` are int64 class indices
    (re-indexed to ``0..len(classes)-1``), or None for regression.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    labels_train: Tensor | None
    labels_test: Tensor | None
    input_shape: tuple[int, ...]
    n_outputs: int
    task: Literal["classification", "regression"]
    classes: tuple[int, ...] | None
    preprocessing: str

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if tuple(x.shape[1:]) != self.input_shape or len(y) != len(x):
                raise DataError(
                    f"inconsistent {split} tensors: x {tuple(x.shape)}, y {tuple(y.shape)}, "
                    f"input_shape {self.input_shape}"
                )

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    @property
    def n_test(self) -> int:
        return len(self.x_test)

    def to(self, device=None, dtype: torch.dtype | None = None) -> Dataset:
        """A copy on ``device`` with float tensors cast to ``dtype``; int64 stays int64.

        >>> from eoskit.data import load_dataset
        >>> load_dataset("synthetic", n_train=4).to(dtype=torch.float64).x_train.dtype
        torch.float64
        """

        def move(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        tensors = ("x_train", "y_train", "x_test", "y_test", "labels_train", "labels_test")
        return dataclasses.replace(self, **{k: move(getattr(self, k)) for k in tensors})

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, {self.task}, n_train={self.n_train}, n_test={self.n_test}, "
            f"input_shape={self.input_shape}, n_outputs={self.n_outputs}, "
            f"y={self.y_train.dtype}, x={self.x_train.dtype} on {self.x_train.device})"
        )


@dataclasses.dataclass
class RawImages:
    """Unprocessed images ``(N, C, H, W)`` and int labels; ``x_test`` is None when pooled.

    Pooled data sets (one set of samples) carve train and test out of ``x``;
    split ones (separate train and test files) bring their own ``x_test``.
    """

    x: np.ndarray
    labels: np.ndarray
    pixel_max: float
    x_test: np.ndarray | None = None
    labels_test: np.ndarray | None = None
    n_classes: int = 10


def is_int(v: object) -> bool:
    """An integer, numpy's included, but not a bool.

    >>> is_int(3), is_int(np.int64(3)), is_int(True), is_int(3.0)
    (True, True, False, False)
    """
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_options(name: object, n_train: object, n_test: object, seed: object, loss: object):
    """Reject options that are wrong for every data set."""
    if not isinstance(name, str):
        raise DataError(f"data set name must be a string, got {name!r}")
    if not is_int(n_train) or n_train <= 0:
        raise DataError(f"n_train must be a positive integer, got {n_train!r}")
    if not is_int(n_test) or n_test < 0:
        raise DataError(f"n_test must be a non-negative integer, got {n_test!r}")
    if not is_int(seed) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    if loss not in ("mse", "ce"):
        raise DataError(f"loss must be 'mse' or 'ce', got {loss!r}")


def check_classes(classes, n_classes: int) -> tuple[int, ...]:
    """The class ids to keep, as a tuple; None means all ``n_classes``.

    >>> check_classes(None, 3), check_classes([2, 0], 3)
    ((0, 1, 2), (2, 0))
    """
    if classes is None:
        return tuple(range(n_classes))
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise DataError(f"classes must be a sequence of class ids, got {classes!r}")
    if len(classes) == 0 or not all(is_int(c) for c in classes):
        raise DataError(f"classes must be a non-empty list of integer class ids, got {classes!r}")
    bad = [c for c in classes if not 0 <= c < n_classes]
    if bad:
        raise DataError(f"classes {bad} not in this data set (ids 0..{n_classes - 1})")
    if len(set(classes)) != len(classes):
        raise DataError(f"classes contains duplicates: {list(classes)}")
    return tuple(int(c) for c in classes)
