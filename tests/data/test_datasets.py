"""Tests for eoskit.data: selection, preprocessing, file formats and errors."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eoskit import data
from eoskit.data import (
    DATASETS,
    DataError,
    Dataset,
    idx,
    load_dataset,
    parse_idx,
    preprocess,
    read_idx,
)


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.tobytes() for r in x.reshape(len(x), -1).numpy()}


# ------------------------------------------------------------ real small sets


def test_datasets_tuple_lists_every_name():
    assert set(DATASETS) >= {
        "mnist-5k",
        "digits",
        "mnist",
        "fashion-mnist",
        "cifar10",
        "synthetic",
        "synthetic-chebyshev",
    }


@pytest.mark.parametrize("n_train", [100, 103, 1000])
def test_mnist5k_train_is_stratified(n_train):
    ds = load_dataset("mnist-5k", n_train=n_train, seed=3)
    counts = torch.bincount(ds.labels_train, minlength=10)
    assert counts.sum() == n_train
    assert counts.max() - counts.min() <= 1  # the pool is sorted: a prefix would fail this


def test_mnist5k_test_is_stratified_and_disjoint_from_train():
    ds = load_dataset("mnist-5k", n_train=1000, n_test=501, seed=1)
    counts = torch.bincount(ds.labels_test, minlength=10)
    assert counts.sum() == 501 and counts.max() - counts.min() <= 1
    assert not _rows(ds.x_train) & _rows(ds.x_test)


def test_mnist5k_full_pool_split_covers_every_image_once():
    ds = load_dataset("mnist-5k", n_train=4000, n_test=1000, seed=0)
    assert len(_rows(ds.x_train)) == 4000 and len(_rows(ds.x_test)) == 1000
    assert len(_rows(ds.x_train) | _rows(ds.x_test)) == 5000
    # The first 4,000 pool images hold no 8 or 9: stratification must reach past them.
    assert torch.bincount(ds.labels_train, minlength=10).tolist() == [400] * 10


def test_mnist5k_too_many_samples_is_a_clear_error():
    with pytest.raises(DataError, match="5000"):
        load_dataset("mnist-5k", n_train=4500, n_test=501)


def test_default_shapes_dtypes_and_flatten():
    ds = load_dataset("mnist-5k", n_train=30, n_test=10)
    assert ds.input_shape == (1, 28, 28) and tuple(ds.x_train.shape) == (30, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.labels_train.dtype == torch.int64
    assert ds.task == "classification" and ds.n_outputs == 10 and ds.classes == tuple(range(10))
    flat = load_dataset("digits", n_train=30, flatten=True)
    assert flat.input_shape == (64,) and tuple(flat.x_train.shape) == (30, 64)
    assert tuple(flat.x_test.shape) == (0, 64)
    assert load_dataset("digits", n_train=30).input_shape == (1, 8, 8)


def test_same_arguments_give_bit_identical_tensors_and_seed_changes_them():
    a = load_dataset("digits", n_train=200, n_test=100, seed=5)
    b = load_dataset("digits", n_train=200, n_test=100, seed=5)
    c = load_dataset("digits", n_train=200, n_test=100, seed=6)
    for k in ("x_train", "y_train", "x_test", "y_test", "labels_train", "labels_test"):
        assert torch.equal(getattr(a, k), getattr(b, k))
    assert not torch.equal(a.x_train, c.x_train)
    assert _rows(a.x_train) != _rows(c.x_train)


def test_train_subset_does_not_depend_on_n_test():
    a = load_dataset("mnist-5k", n_train=300, n_test=0, seed=2)
    b = load_dataset("mnist-5k", n_train=300, n_test=700, seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.labels_train, b.labels_train)


def test_preprocessing_centres_features_and_scales_to_unit_global_std():
    ds = load_dataset("mnist-5k", n_train=500, n_test=200, seed=0)
    x = ds.x_train.double()
    assert x.mean(dim=0).abs().max() < 1e-5
    assert abs(x.std(unbiased=False).item() - 1.0) < 1e-5
    # Test data uses the training statistics, so its mean is not forced to zero.
    assert ds.x_test.double().mean(dim=0).abs().max() > 1e-3
    assert "training" in ds.preprocessing and "/255" in ds.preprocessing
    assert "/16" in load_dataset("digits", n_train=20).preprocessing


def test_standardise_applies_training_statistics_to_test():
    rng = np.random.default_rng(0)
    xtr, xte = rng.integers(0, 256, (50, 4)), rng.integers(0, 256, (20, 4))
    a, b, _ = preprocess.standardise(xtr, xte, 255.0)
    mean = (xtr / 255).mean(axis=0)
    std = np.sqrt((((xtr / 255) - mean) ** 2).mean())
    np.testing.assert_allclose(a, (xtr / 255 - mean) / std, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(b, (xte / 255 - mean) / std, rtol=1e-6, atol=1e-6)


def test_single_sample_does_not_produce_nans():
    ds = load_dataset("digits", n_train=1, n_test=3)
    assert torch.isfinite(ds.x_train).all() and torch.isfinite(ds.x_test).all()


def test_class_subset_is_reindexed_in_given_order():
    ds = load_dataset("mnist-5k", n_train=100, n_test=40, classes=[9, 8], seed=0)
    assert ds.n_outputs == 2 and ds.classes == (9, 8)
    assert torch.bincount(ds.labels_train).tolist() == [50, 50]
    assert set(ds.labels_test.tolist()) == {0, 1}
    assert tuple(ds.y_train.shape) == (100, 2)


@pytest.mark.parametrize("classes", [[10], [-1], [1, 1], [], "01"])
def test_bad_classes_raise(classes):
    with pytest.raises(DataError, match="classes"):
        load_dataset("digits", n_train=10, classes=classes)


def test_all_classes_present_in_100_sample_digits_subset():
    ds = load_dataset("digits", n_train=100, seed=11)
    assert torch.bincount(ds.labels_train, minlength=10).tolist() == [10] * 10


def test_mse_targets_are_one_hot_and_ce_targets_are_indices():
    mse = load_dataset("digits", n_train=50, n_test=10, loss="mse")
    assert mse.y_train.dtype == torch.float32 and tuple(mse.y_train.shape) == (50, 10)
    assert torch.equal(mse.y_train.sum(dim=1), torch.ones(50))
    assert torch.equal(mse.y_train.argmax(dim=1), mse.labels_train)
    ce = load_dataset("digits", n_train=50, n_test=10, loss="ce")
    assert ce.y_train.dtype == torch.int64 and torch.equal(ce.y_train, ce.labels_train)
    assert torch.equal(ce.x_train, mse.x_train)


def test_to_casts_floats_and_keeps_int_labels():
    ds = load_dataset("digits", n_train=20, n_test=5, loss="ce").to("cpu", torch.float64)
    assert ds.x_train.dtype == ds.x_test.dtype == torch.float64
    assert ds.y_train.dtype == ds.labels_test.dtype == torch.int64
    assert isinstance(ds, Dataset) and "digits" in repr(ds)
    reg = load_dataset("synthetic", n_train=5).to(dtype=torch.float64)
    assert reg.y_train.dtype == torch.float64 and reg.labels_train is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "imagenet", "n_train": 10}, "unknown data set"),
        ({"name": "digits", "n_train": 0}, "n_train"),
        ({"name": "digits", "n_train": -3}, "n_train"),
        ({"name": "digits", "n_train": 10, "n_test": -1}, "n_test"),
        ({"name": "digits", "n_train": 1798}, "1797"),
        ({"name": "digits", "n_train": 10, "loss": "hinge"}, "loss"),
        ({"name": "digits", "n_train": 10, "seed": -1}, "seed"),
        ({"name": "synthetic", "n_train": 10, "loss": "ce"}, "regression"),
        ({"name": "synthetic", "n_train": 10, "classes": [0]}, "regression"),
        ({"name": "synthetic-cheb", "n_train": 10}, "unknown data set"),
    ],
)
def test_bad_options_raise_data_error(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(DataError, match=match):
        load_dataset(name, **kwargs)
    assert issubclass(DataError, ValueError)


@given(
    sizes=st.lists(st.integers(0, 12), min_size=1, max_size=5),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=60, deadline=None)
def test_stratified_order_is_a_balanced_permutation(sizes, seed):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    labels = labels[np.random.default_rng(seed).permutation(len(labels))]
    classes = list(range(len(sizes)))
    order = data.stratified_order(labels, classes, np.random.default_rng(seed))
    assert sorted(order.tolist()) == list(range(len(labels)))
    alive = [c for c, s in enumerate(sizes) if s > 0]
    if alive:
        full = len(alive) * min(sizes[c] for c in alive)  # balanced while every class lasts
        for p in range(full + 1):
            counts = np.bincount(labels[order[:p]], minlength=len(sizes))[alive]
            assert counts.max() - counts.min() <= 1


# ------------------------------------------------------------------ IDX files


def _idx_bytes(arr: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def _write(path: Path, raw: bytes, gz: bool) -> None:
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips_raw_and_gzip(tmp_path, gz):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write(tmp_path / "img", _idx_bytes(images, 0x08), gz)
    got = read_idx(tmp_path / ("img.gz" if gz else "img"))
    assert got.dtype == np.uint8 and np.array_equal(got, images)


def test_parse_idx_reads_big_endian_wider_types():
    ints = np.array([[1, -2, 70000]], dtype=np.int32)
    floats = np.array([0.5, -3.25], dtype=np.float32)
    assert np.array_equal(parse_idx(_idx_bytes(ints, 0x0C)), ints)
    assert np.array_equal(parse_idx(_idx_bytes(floats, 0x0D)), floats)
    assert parse_idx(_idx_bytes(ints, 0x0C)).dtype.isnative


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda b: b"\x08\x03" + b[2:], "magic"),
        (lambda b: b[:2] + b"\x07" + b[3:], "magic"),
        (lambda b: b[:3] + b"\x00" + b[4:], "magic"),
        (lambda b: b[:-1], "promises"),
        (lambda b: b + b"\x00", "promises"),
        (lambda b: b[:6], "truncated"),
        (lambda b: b"", "magic"),
    ],
)
def test_parse_idx_rejects_corrupt_headers(mutate, match):
    good = _idx_bytes(np.zeros((2, 2, 2), dtype=np.uint8), 0x08)
    with pytest.raises(DataError, match=match):
        parse_idx(mutate(good))


def test_read_idx_rejects_broken_gzip(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="x.gz"):
        read_idx(tmp_path / "x.gz")


def _fake_mnist(folder: Path, n_train=60, n_test=30, gz=False, seed=0) -> None:
    """IDX files whose images are constant with value 20 * label, so classes are visible."""
    rng = np.random.default_rng(seed)
    stems = idx.IDX_STEMS
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        images = np.broadcast_to((20 * labels)[:, None, None], (n, 5, 6)).astype(np.uint8)
        _write(folder / stems[split][0], _idx_bytes(images, 0x08), gz)
        _write(folder / stems[split][1], _idx_bytes(labels, 0x08), gz)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_dataset_loads_split_files_and_reindexes_classes(tmp_path, gz):
    _fake_mnist(tmp_path, gz=gz)
    ds = load_dataset("mnist", n_train=12, n_test=6, classes=[7, 2], data_dir=tmp_path)
    assert ds.input_shape == (1, 5, 6) and ds.n_outputs == 2
    assert torch.bincount(ds.labels_train).tolist() == [6, 6]
    assert torch.bincount(ds.labels_test).tolist() == [3, 3]
    # Label 0 means class 7 (brighter images) and label 1 class 2.
    brightness = ds.x_train.mean(dim=(1, 2, 3))
    assert brightness[ds.labels_train == 0].min() > brightness[ds.labels_train == 1].max()
    # Train comes from the 60-image train file: only 6 per class exist there.
    with pytest.raises(DataError, match="training files"):
        load_dataset("mnist", n_train=13, classes=[7, 2], data_dir=tmp_path)
    with pytest.raises(DataError, match="test files"):
        load_dataset("mnist", n_train=2, n_test=7, classes=[7, 2], data_dir=tmp_path)


def test_idx_dataset_with_corrupt_magic_names_the_file(tmp_path):
    _fake_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x01" + path.read_bytes()[1:])
    with pytest.raises(DataError, match="magic") as err:
        load_dataset("fashion-mnist", n_train=10, data_dir=tmp_path)
    assert str(path) in str(err.value)


def test_idx_dataset_rejects_mismatched_labels(tmp_path):
    _fake_mnist(tmp_path)
    labels = np.zeros(59, dtype=np.uint8)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(labels, 0x08))
    with pytest.raises(DataError, match="60 images"):
        load_dataset("mnist", n_train=10, data_dir=tmp_path)


def test_missing_idx_files_message_lists_paths_and_how_to_get_them(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", n_train=10, data_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "train-images-idx3-ubyte") in msg
    assert str(tmp_path / "t10k-labels-idx1-ubyte.gz") in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    with pytest.raises(DataError, match="does not exist") as err:
        load_dataset("mnist", n_train=10, data_dir=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    with pytest.raises(DataError, match="data_dir"):
        load_dataset("mnist", n_train=10)


@pytest.mark.skipif(
    not (data.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_real_fashion_mnist_from_default_location():
    ds = load_dataset("fashion-mnist", n_train=200, n_test=100, seed=0)
    assert tuple(ds.x_train.shape) == (200, 1, 28, 28) and ds.n_test == 100
    assert torch.bincount(ds.labels_train, minlength=10).tolist() == [20] * 10
    assert torch.bincount(ds.labels_test, minlength=10).tolist() == [10] * 10


# ---------------------------------------------------------------------- CIFAR


def _fake_cifar(folder: Path, per_batch=20) -> None:
    """Channel c of an image with label l is the constant (c + 1) * 9 * l."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        labels = rng.permutation(np.arange(per_batch) % 10)
        scale = (np.arange(3) + 1)[None, :, None] * 9 * labels[:, None, None]
        images = np.broadcast_to(scale, (per_batch, 3, 1024)).astype(np.uint8)
        batch = {b"data": images.reshape(per_batch, 3072), b"labels": labels.tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)


def test_cifar10_loader_reads_fake_batches(tmp_path):
    _fake_cifar(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", n_train=50, n_test=20, data_dir=tmp_path, seed=4)
    assert ds.input_shape == (3, 32, 32) and tuple(ds.x_test.shape) == (20, 3, 32, 32)
    assert torch.bincount(ds.labels_train).tolist() == [5] * 10
    # Channels are the rows' consecutive 1024-blocks: their spread is in ratio 1:2:3.
    spread = ds.x_train.std(dim=0).mean(dim=(1, 2))
    torch.testing.assert_close(spread / spread[0], torch.tensor([1.0, 2.0, 3.0]))
    # The folder itself works as data_dir too, and 100 train images exist in all.
    same = load_dataset(
        "cifar10", n_train=50, n_test=20, seed=4, data_dir=tmp_path / "cifar-10-batches-py"
    )
    assert torch.equal(same.x_train, ds.x_train)
    with pytest.raises(DataError, match="100"):
        load_dataset("cifar10", n_train=101, data_dir=tmp_path)


def test_cifar10_missing_and_corrupt_batches(tmp_path):
    with pytest.raises(DataError, match="python version") as err:
        load_dataset("cifar10", n_train=5, data_dir=tmp_path)
    assert str(tmp_path / "data_batch_1") in str(err.value)
    _fake_cifar(tmp_path / "c")
    (tmp_path / "c" / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="test_batch"):
        load_dataset("cifar10", n_train=5, data_dir=tmp_path / "c")


# ------------------------------------------------------------------ synthetic


def test_teacher_student_regression():
    ds = load_dataset("synthetic", n_train=64, n_test=16, seed=1)
    assert ds.task == "regression" and ds.labels_train is None and ds.classes is None
    assert ds.input_shape == (20,) and ds.n_outputs == 1
    assert tuple(ds.y_train.shape) == (64, 1) and ds.y_train.dtype == torch.float32
    again = load_dataset("synthetic", n_train=64, n_test=16, seed=1)
    assert torch.equal(ds.x_train, again.x_train) and torch.equal(ds.y_test, again.y_test)
    other = load_dataset("synthetic", n_train=64, seed=2)
    assert not torch.equal(ds.y_train, other.y_train)
    assert ds.y_train.std() > 0.1  # a non-degenerate teacher
    # Same seed, same teacher: targets are a deterministic function of the inputs.
    bigger = load_dataset("synthetic", n_train=128, seed=1)
    assert torch.equal(bigger.x_train[:64], ds.x_train)
    assert torch.equal(bigger.y_train[:64], ds.y_train)


@pytest.mark.parametrize("name, degree", [("synthetic-chebyshev", 4), ("synthetic-chebyshev-6", 6)])
def test_chebyshev_targets(name, degree):
    ds = load_dataset(name, n_train=200, n_test=50, seed=0)
    x = ds.x_train.double()
    assert ds.input_shape == (1,) and x.abs().max() <= 1
    expected = torch.cos(degree * torch.arccos(x))
    torch.testing.assert_close(ds.y_train.double(), expected, atol=1e-5, rtol=0)
    if degree == 4:
        torch.testing.assert_close(ds.y_train.double(), 8 * x**4 - 8 * x**2 + 1, atol=1e-5, rtol=0)
