"""Synthetic sequence tasks, one classification per position: ``sorting`` and ``copying``.

Inputs are int64 token ids ``(n, P)``; targets are class ids ``(n, P)``
(``loss="ce"``) or one-hot ``(n, P, V)`` float32 (``loss="mse"``); labels are
the class ids. Input and output vocabularies are the same ``V`` tokens, so a
model's embedding size is its ``n_outputs``.

``sorting`` (``sorting-L-V``; default L = 8, V = 8)
    ``L`` tokens drawn uniformly (with replacement) from ``0..V-1``; the
    target at position ``i`` is the ``i``-th smallest token, i.e. the target
    sequence is the input sorted. Every output depends on the whole input:
    use a bidirectional model (``transformer``).
``copying`` (``copying-L-V``; default L = 6, V = 8)
    ``L`` content tokens from ``0..V-3``, then a delimiter ``V-1`` and ``L-1``
    blanks ``V-2``: ``P = 2L``. The target is blank for the first ``L``
    positions, then the content: position ``L + i`` must reproduce token
    ``i`` (so a causal model can solve it too).

The seed draws everything; train and test come from separate streams, so
``n_test`` never changes the training set (samples may repeat across them).

Example:
    >>> ds = load_sequences("sorting-4-5", 3, 0, seed=0, loss="ce")
    >>> bool((ds.y_train == ds.x_train.sort(dim=1).values).all()), ds.input_shape, ds.n_outputs
    (True, (4,), 5)
"""

from __future__ import annotations

import re

import numpy as np
import torch

from eoskit.data.dataset import DataError, Dataset
from eoskit.data.preprocess import targets

SEQUENCE_DATASETS: tuple[str, ...] = ("sorting", "copying")
DEFAULT_SIZES = {"sorting": (8, 8), "copying": (6, 8)}  # (L, V)


def is_sequence_name(name: str) -> bool:
    """Whether ``name`` is ``sorting``/``copying`` or one of their ``-L-V`` variants."""
    return name.split("-", 1)[0] in SEQUENCE_DATASETS


def sequence_sizes(name: str) -> tuple[str, int, int]:
    """Task, length ``L`` and vocabulary ``V`` of ``sorting[-L-V]`` / ``copying[-L-V]``.

    >>> sequence_sizes("sorting"), sequence_sizes("copying-3-5")
    (('sorting', 8, 8), ('copying', 3, 5))
    """
    if name in DEFAULT_SIZES:
        return (name, *DEFAULT_SIZES[name])
    m = re.fullmatch(r"(sorting|copying)-(\d+)-(\d+)", name)
    if m is None:
        raise DataError(f"unknown data set {name!r}; sequence tasks are sorting, copying, "
                        "sorting-L-V or copying-L-V")
    task, length, vocab = m.group(1), int(m.group(2)), int(m.group(3))
    smallest = 2 if task == "sorting" else 3  # copying spends two tokens on blank, delimiter
    if length < 1 or vocab < smallest:
        raise DataError(f"{name!r}: need L >= 1 and V >= {smallest}")
    return task, length, vocab


def sorting(rng: np.random.Generator, n: int, length: int, vocab: int):
    """``(x, y)``: ``x`` uniform tokens ``(n, L)``, ``y`` each row sorted."""
    x = rng.integers(0, vocab, size=(n, length))
    return x, np.sort(x, axis=1)


def copying(rng: np.random.Generator, n: int, length: int, vocab: int):
    """``(x, y)`` of shape ``(n, 2L)``: content, delimiter, blanks -> blanks, content."""
    blank, delimiter = vocab - 2, vocab - 1
    content = rng.integers(0, vocab - 2, size=(n, length))
    pad = np.full((n, length), blank)
    x = np.concatenate([content, pad], axis=1)
    x[:, length] = delimiter
    return x, np.concatenate([pad, content], axis=1)


def load_sequences(name: str, n_train: int, n_test: int, seed: int, loss: str) -> Dataset:
    """The sequence task ``name`` with ``n_train``/``n_test`` samples drawn from ``seed``."""
    task, length, vocab = sequence_sizes(name)
    make = sorting if task == "sorting" else copying
    x_tr, l_tr = (torch.from_numpy(a) for a in make(np.random.default_rng([seed, 1]), n_train,
                                                   length, vocab))
    x_te, l_te = (torch.from_numpy(a) for a in make(np.random.default_rng([seed, 2]), n_test,
                                                   length, vocab))
    return Dataset(
        name=name,
        x_train=x_tr,  # (n, P) int64
        y_train=targets(l_tr, vocab, loss),  # (n, P) or (n, P, V)
        x_test=x_te,
        y_test=targets(l_te, vocab, loss),
        labels_train=l_tr,
        labels_test=l_te,
        input_shape=tuple(x_tr.shape[1:]),
        n_outputs=vocab,
        task="classification",
        classes=tuple(range(vocab)),
        preprocessing=f"none: {task}, L={length} content tokens, vocabulary {vocab} "
                      f"(seed {seed})",
    )
