"""Synthetic regression tasks: a random tanh teacher, and Chebyshev polynomials in 1-D."""

from __future__ import annotations

import math
import re

import numpy as np
import torch
from torch import Tensor

from eoskit.data.dataset import DATASETS, DataError, Dataset

TEACHER_DIM, TEACHER_WIDTH, CHEBYSHEV_DEGREE = 20, 32, 4


def load_synthetic(name: str, n_train: int, n_test: int, seed: int) -> Dataset:
    """``synthetic`` (teacher-student) or ``synthetic-chebyshev[-K]``, drawn from ``seed``.

    >>> load_synthetic("synthetic-chebyshev-2", 3, 0, seed=0).preprocessing
    'none: x ~ U[-1, 1], y = T_2(x) (Chebyshev polynomial)'
    """
    if name == "synthetic":
        make, input_dim = teacher_student(seed), TEACHER_DIM
        description = (
            f"none: x ~ N(0, I_{TEACHER_DIM}), y = tanh teacher "
            f"({TEACHER_DIM}-{TEACHER_WIDTH}-1, seed {seed})"
        )
    else:
        degree = chebyshev_degree(name)
        make, input_dim = chebyshev(degree), 1
        description = f"none: x ~ U[-1, 1], y = T_{degree}(x) (Chebyshev polynomial)"
    # Separate streams so that n_test never changes the training set.
    x_tr, y_tr = make(np.random.default_rng([seed, 1]), n_train)
    x_te, y_te = make(np.random.default_rng([seed, 2]), n_test)
    return Dataset(
        name=name,
        x_train=_f32(x_tr),
        y_train=_f32(y_tr),
        x_test=_f32(x_te),
        y_test=_f32(y_te),
        labels_train=None,
        labels_test=None,
        input_shape=(input_dim,),
        n_outputs=1,
        task="regression",
        classes=None,
        preprocessing=description,
    )


def _f32(a: np.ndarray) -> Tensor:
    return torch.from_numpy(a.astype(np.float32))


def chebyshev_degree(name: str) -> int:
    """K of ``synthetic-chebyshev-K`` (4 without a suffix); any other name is a DataError.

    >>> chebyshev_degree("synthetic-chebyshev"), chebyshev_degree("synthetic-chebyshev-9")
    (4, 9)
    """
    if name == "synthetic-chebyshev":
        return CHEBYSHEV_DEGREE
    m = re.fullmatch(r"synthetic-chebyshev-(\d+)", name)
    if m is None:
        raise DataError(
            f"unknown data set {name!r}; choose one of {', '.join(DATASETS)} "
            "(or synthetic-chebyshev-K for degree K)"
        )
    return int(m.group(1))


def teacher_student(seed: int):
    """A sampler ``(rng, n) -> (x, y)`` for a fixed random tanh teacher drawn from ``seed``."""
    rng = np.random.default_rng([seed, 0])
    w1 = rng.standard_normal((TEACHER_WIDTH, TEACHER_DIM)) / math.sqrt(TEACHER_DIM)
    w2 = rng.standard_normal((1, TEACHER_WIDTH)) / math.sqrt(TEACHER_WIDTH)

    def sample(rng: np.random.Generator, n: int):
        x = rng.standard_normal((n, TEACHER_DIM))  # (n, 20)
        return x, np.tanh(x @ w1.T) @ w2.T  # (n, 1)

    return sample


def chebyshev(degree: int):
    """A sampler ``(rng, n) -> (x, T_degree(x))`` with ``x ~ U[-1, 1]``, both ``(n, 1)``."""
    coefficients = np.zeros(degree + 1)
    coefficients[degree] = 1.0

    def sample(rng: np.random.Generator, n: int):
        x = rng.uniform(-1.0, 1.0, size=(n, 1))
        return x, np.polynomial.chebyshev.chebval(x, coefficients)

    return sample
