"""load_run(...).metrics is typed data: a DataFrame of floats with NaN for empty cells."""

from __future__ import annotations

import math

import pandas as pd

from eoskit import load_run
from eoskit.training.config import RunConfig
from eoskit.training.loop import train


def test_load_run_metrics_is_a_typed_frame(tmp_path):
    cfg = RunConfig(dataset="digits", n_train=48, n_test=0, width=6, depth=1, steps=6,
                    dtype="float64", lr=0.1, sharpness_every=2, checkpoint_every=0)
    train(cfg, tmp_path, progress=False)
    run = load_run(tmp_path)
    frame = run.metrics
    assert isinstance(frame, pd.DataFrame) and len(frame) == 6
    assert frame["step"].tolist() == list(range(6))
    assert frame["loss"].dtype == float and frame["sharpness"].dtype == float
    # sharpness measured every 2 steps: the other cells are NaN, not empty strings
    assert [math.isnan(v) for v in frame["sharpness"]] == [False, True] * 3
    assert frame["loss"].tolist() == [r["loss"] for r in run.metric_rows]
