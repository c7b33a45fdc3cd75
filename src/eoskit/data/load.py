"""``load_dataset``: options checked, the right loader called, the shared selection and
preprocessing applied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch

from eoskit.data.builtin import load_digits_pool, load_mnist5k_pool
from eoskit.data.cifar import load_cifar10_split
from eoskit.data.dataset import DATASETS as FILE_AND_SYNTHETIC_DATASETS
from eoskit.data.dataset import (
    DataError,
    Dataset,
    RawImages,
    check_classes,
    check_options,
)
from eoskit.data.idx import load_idx_split
from eoskit.data.preprocess import (
    flatten_features,
    reindex_labels,
    select,
    standardise,
    targets,
)
from eoskit.data.sequences import SEQUENCE_DATASETS, is_sequence_name, load_sequences
from eoskit.data.synthetic import chebyshev_degree, load_synthetic

# every data set name load_dataset accepts (besides the -K / -L-V variants)
DATASETS: tuple[str, ...] = FILE_AND_SYNTHETIC_DATASETS + SEQUENCE_DATASETS

# classification data sets: (name, data_dir) -> unprocessed images
IMAGE_LOADERS: dict[str, Callable[[str, str | Path | None], RawImages]] = {
    "mnist-5k": load_mnist5k_pool,
    "digits": load_digits_pool,
    "mnist": load_idx_split,
    "fashion-mnist": load_idx_split,
    "cifar10": load_cifar10_split,
}


def load_dataset(
    name: str,
    *,
    n_train: int,
    n_test: int = 0,
    classes: Sequence[int] | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    loss: Literal["mse", "ce"] = "mse",
    flatten: bool = False,
) -> Dataset:
    """Load ``n_train`` training and ``n_test`` test samples of data set ``name``.

    ``classes`` keeps only those class ids, re-indexed 0.. in the given order.
    ``loss`` picks the target format (see :class:`Dataset`). ``flatten`` gives
    inputs of shape ``(n, prod(input_shape))`` instead of ``(n, C, H, W)``.
    Raises :class:`DataError` for bad options or missing/corrupt files.

    >>> ds = load_dataset("mnist-5k", n_train=20, classes=[3, 7], loss="ce", flatten=True)
    >>> tuple(ds.x_train.shape), ds.n_outputs, sorted(set(ds.y_train.tolist()))
    ((20, 784), 2, [0, 1])
    """
    check_options(name, n_train, n_test, seed, loss)
    if name == "synthetic" or name.startswith("synthetic-"):
        if name != "synthetic":
            chebyshev_degree(name)  # reject a bad name before complaining about options
        if classes is not None:
            raise DataError(f"{name!r} is a regression data set; classes must be None")
        if loss != "mse":
            raise DataError(f"{name!r} is a regression data set; use loss='mse', not {loss!r}")
        return load_synthetic(name, n_train, n_test, seed)
    if is_sequence_name(name):
        if classes is not None:
            raise DataError(f"{name!r} is a sequence task over its whole vocabulary; "
                            "classes must be None")
        return load_sequences(name, n_train, n_test, seed, loss)
    if name not in IMAGE_LOADERS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    raw = IMAGE_LOADERS[name](name, data_dir)
    return classification_dataset(name, raw, n_train, n_test, classes, seed, loss, flatten)


def classification_dataset(
    name: str,
    raw: RawImages,
    n_train: int,
    n_test: int,
    classes: Sequence[int] | None,
    seed: int,
    loss: str,
    flatten: bool,
) -> Dataset:
    """Stratified train/test subsets of ``raw``, standardised with the training statistics."""
    classes = check_classes(classes, raw.n_classes)
    if raw.x_test is None:
        where = f"the {len(raw.labels)}-sample pool (n_train + n_test)"
        order = select(raw.labels, classes, seed, 0, n_train + n_test, name, where)
        i_train, i_test = order[:n_train], order[n_train:]
        x_tr, l_tr = raw.x[i_train], raw.labels[i_train]
        x_te, l_te = raw.x[i_test], raw.labels[i_test]
    else:
        i_train = select(raw.labels, classes, seed, 1, n_train, name, "the training files")
        i_test = select(raw.labels_test, classes, seed, 2, n_test, name, "the test files")
        x_tr, l_tr = raw.x[i_train], raw.labels[i_train]
        x_te, l_te = raw.x_test[i_test], raw.labels_test[i_test]
    x_tr, x_te, description = standardise(x_tr, x_te, raw.pixel_max)
    if flatten:
        x_tr, x_te = flatten_features(x_tr), flatten_features(x_te)
    lab_tr = reindex_labels(l_tr, classes, raw.n_classes)
    lab_te = reindex_labels(l_te, classes, raw.n_classes)
    return Dataset(
        name=name,
        x_train=torch.from_numpy(x_tr),
        y_train=targets(lab_tr, len(classes), loss),
        x_test=torch.from_numpy(x_te),
        y_test=targets(lab_te, len(classes), loss),
        labels_train=lab_tr,
        labels_test=lab_te,
        input_shape=tuple(x_tr.shape[1:]),
        n_outputs=len(classes),
        task="classification",
        classes=classes,
        preprocessing=description,
    )
