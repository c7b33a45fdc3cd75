"""CIFAR-10 from its python batches (``cifar-10-batches-py``).

The batches are pickles, and unpickling can run code: only read files you trust.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from eoskit.data.dataset import DataError, RawImages
from eoskit.data.locations import HOWTO, data_folder

CIFAR_FOLDER = "cifar-10-batches-py"


def load_cifar10_split(name: str, data_dir: str | Path | None) -> RawImages:
    """``data_batch_1..5`` as train and ``test_batch`` as test; ``data_dir`` may be the parent."""
    folder = data_folder(name, data_dir)
    if (folder / CIFAR_FOLDER).is_dir():
        folder = folder / CIFAR_FOLDER
    files = [folder / f"data_batch_{i}" for i in range(1, 6)] + [folder / "test_batch"]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise DataError(f"{name}: missing {', '.join(missing)}. {HOWTO[name]}")
    batches = [read_cifar_batch(p) for p in files]
    x_tr = np.concatenate([b[0] for b in batches[:5]])
    l_tr = np.concatenate([b[1] for b in batches[:5]])
    x_te, l_te = batches[5]
    return RawImages(x=x_tr, labels=l_tr, pixel_max=255.0, x_test=x_te, labels_test=l_te)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch as uint8 images ``(N, 3, 32, 32)`` and int64 labels 0..9."""
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
