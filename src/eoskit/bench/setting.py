"""The benchmark's problem and schedule (:class:`Setting`), and its two instances.

``FULL``: MNIST-5k, 4,000 training images, ``fc-tanh`` 784-150-150-10, MSE,
float32 and float64, 700 GD steps at η = 0.1 to reach the Edge of Stability
(sharpness reaches 2/η = 20 by step ~550 and hovers there). ``TINY``: the same
on 200 images and width 16, for tests (seconds).

>>> TINY.n_train, TINY.width, FULL.lr
(200, 16, 0.1)
>>> TINY.key() == TINY.key() != FULL.key()
True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch

SECTIONS = ("costs", "cold", "track", "stream", "scaling")
REL_ACCURACY_COLD = 1e-6  # the cold solves' target relative accuracy
TRACK_TOL = 1e-4  # the tracked sharpness' relative accuracy, every step
STREAM_TOL = 1e-2  # the streaming mode's


@dataclass(frozen=True)
class Setting:
    """One benchmark problem and its schedule."""

    name: str = "mnist4k-fc150"
    dataset: str = "mnist-5k"
    n_train: int = 4000
    model: str = "fc-tanh"
    width: int = 150
    depth: int = 2
    lr: float = 0.1
    eos_steps: int = 700
    track_steps: int = 100
    stream_from: int = 500
    stream_steps: int = 350
    dtypes: tuple[str, ...] = ("float32", "float64")
    physical_batch: int | None = None  # eoskit's (and curvlinops') chunking; None: one chunk
    cohen_chunk: int = 1000
    repeats: int = 3
    cost_repeats: int = 15
    seed: int = 0
    ref_tol: float = 1e-10
    scaling_n: tuple[int, ...] = (1000, 2000, 4000, 8000)
    scaling_widths: tuple[int, ...] = (50, 100, 200, 400, 800)
    scaling_dataset: str = "fashion-mnist"
    scaling_track_steps: int = 10

    def key(self) -> str:
        """What the cached points and references depend on (not the schedule of timings)."""
        fields = ("dataset", "n_train", "model", "width", "depth", "lr", "eos_steps",
                  "stream_from", "physical_batch", "seed", "ref_tol")
        blob = json.dumps({f: getattr(self, f) for f in fields}, sort_keys=True, default=str)
        extra = f"{torch.__version__}|{torch.get_num_threads()}"
        return hashlib.sha1((blob + extra).encode()).hexdigest()[:12]


FULL = Setting()
TINY = Setting(
    name="tiny", n_train=200, width=16, eos_steps=60, track_steps=8, stream_from=40,
    stream_steps=20, cohen_chunk=100, repeats=1, cost_repeats=3, scaling_n=(100, 200),
    scaling_widths=(8, 16), scaling_dataset="mnist-5k", scaling_track_steps=3,
)
