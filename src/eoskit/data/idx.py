"""IDX files (the MNIST format) and the data sets stored in them: mnist, fashion-mnist.

An IDX file is two zero bytes, a type code, the number of dimensions, one
big-endian uint32 size per dimension, then the data, big-endian, row-major.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from eoskit.data.dataset import DataError, RawImages
from eoskit.data.locations import HOWTO, data_folder

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# file names (before an optional .gz) of images and labels, per split
IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


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
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in IDX_DTYPES or raw[3] == 0:
        raise DataError(f"{source}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim, header = raw[3], 4 + 4 * raw[3]
    if len(raw) < header:
        raise DataError(f"{source}: IDX header truncated ({len(raw)} bytes, needs {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{source}: IDX header promises shape {dims} ({expected} data bytes) "
            f"but the file holds {len(raw) - header}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def load_idx_split(name: str, data_dir: str | Path | None) -> RawImages:
    """The four IDX files of ``name`` (mnist, fashion-mnist) as train and test images."""
    folder = data_folder(name, data_dir)
    found, missing = {}, []
    for stems in IDX_STEMS.values():
        for stem in stems:
            candidates = [folder / stem, folder / f"{stem}.gz"]
            hit = next((p for p in candidates if p.is_file()), None)
            found[stem] = hit
            if hit is None:
                missing.append(" or ".join(map(str, candidates)))
    if missing:
        raise DataError(f"{name}: missing {'; '.join(missing)}. {HOWTO[name]}")
    x_tr, l_tr = _read_images_and_labels(found, *IDX_STEMS["train"])
    x_te, l_te = _read_images_and_labels(found, *IDX_STEMS["test"])
    return RawImages(x=x_tr, labels=l_tr, pixel_max=255.0, x_test=x_te, labels_test=l_te)


def _read_images_and_labels(found: dict, image_stem: str, label_stem: str):
    """Images ``(N, 1, H, W)`` uint8 and int64 labels 0..9, checked against each other."""
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
