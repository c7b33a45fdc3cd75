"""Selection and preprocessing of classification data: stratified subsets, standardisation,
class re-indexing and loss targets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from eoskit.data.dataset import DataError


def stratified_order(labels: np.ndarray, classes: Sequence[int], rng: np.random.Generator):
    """All indices of ``labels`` in ``classes``, dealt round-robin from shuffled classes.

    In round ``j`` every class still holding samples contributes its ``j``-th
    (shuffled) sample, in a class order drawn anew each round, so every
    prefix is stratified to within one sample per class.

    >>> o = stratified_order(np.array([0, 0, 0, 1, 1, 1]), [0, 1], np.random.default_rng(0))
    >>> np.bincount(np.array([0, 0, 0, 1, 1, 1])[o[:4]]).tolist()
    [2, 2]
    """
    labels = np.asarray(labels)
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    rounds = max((len(m) for m in members), default=0)
    if rounds == 0:
        return np.zeros(0, dtype=np.int64)
    keys = rng.random((rounds, len(classes)))  # position of each class within each round
    idx = np.concatenate(members)
    rnd = np.concatenate([np.arange(len(m)) for m in members])
    key = np.concatenate([keys[: len(m), k] for k, m in enumerate(members)])
    return idx[np.lexsort((key, rnd))].astype(np.int64)


def select(labels, classes, seed: int, stream: int, n: int, name: str, where: str) -> np.ndarray:
    """The first ``n`` indices of a stratified order; ``stream`` keeps draws independent.

    >>> labels = np.array([0, 0, 0, 1, 1, 1])
    >>> np.bincount(labels[select(labels, (0, 1), 0, 0, 2, "toy", "the pool")]).tolist()
    [1, 1]
    >>> select(labels, (0, 1), 0, 0, 7, "toy", "the pool")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    eoskit.data.dataset.DataError: toy: asked for 7 samples, but the pool has only 6 ...
    """
    order = stratified_order(labels, classes, np.random.default_rng([seed, stream]))
    if n > len(order):
        raise DataError(
            f"{name}: asked for {n} samples, but {where} has only {len(order)} "
            f"of classes {list(classes)}"
        )
    return order[:n]


def standardise(x_train: np.ndarray, x_test: np.ndarray, pixel_max: float):
    """Scale to [0, 1], centre per feature and divide by one global std, all from train.

    Returns float32 ``(x_train, x_test)`` and a description of what was done.
    """
    xtr = x_train.astype(np.float64) / pixel_max
    xte = x_test.astype(np.float64) / pixel_max
    mean = xtr.mean(axis=0)
    std = float(np.sqrt(np.mean((xtr - mean) ** 2)))
    # A single sample (or constant images) has zero spread; dividing would give NaN.
    scale = std if std > 0 else 1.0
    xtr = ((xtr - mean) / scale).astype(np.float32)
    xte = ((xte - mean) / scale).astype(np.float32)
    description = (
        f"pixels/{pixel_max:g}; minus the per-feature mean of the {len(x_train)} training "
        f"samples; divided by their global std {scale:.6g} (test uses the training statistics)"
    )
    return xtr, xte, description


def flatten_features(x: np.ndarray) -> np.ndarray:
    """``(n, C, H, W)`` -> ``(n, C*H*W)``."""
    return x.reshape(len(x), math.prod(x.shape[1:]))


def reindex_labels(labels: np.ndarray, classes: tuple[int, ...], n_classes: int) -> Tensor:
    """Class ids -> int64 positions in ``classes`` (ids outside it become -1).

    >>> reindex_labels(np.array([7, 3, 7]), (7, 3), 10).tolist()
    [0, 1, 0]
    """
    remap = np.full(n_classes, -1, dtype=np.int64)
    remap[list(classes)] = np.arange(len(classes))
    return torch.from_numpy(remap[labels])


def targets(labels: Tensor, n_classes: int, loss: str) -> Tensor:
    """Loss targets: the labels themselves for ``ce``, float32 one-hot for ``mse``."""
    if loss == "ce":
        return labels
    return torch.nn.functional.one_hot(labels, n_classes).to(torch.float32)
