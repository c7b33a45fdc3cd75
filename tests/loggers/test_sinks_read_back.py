"""TensorBoard and MLflow sinks: what they store reads back equal to metrics.csv."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from eoskit import store
from eoskit.monitor import Monitor
from tests.loggers.expected_cells import numeric_cells


def _run(out, loggers):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    X, Y = torch.randn(24, 3, dtype=torch.float64), torch.randn(24, 1, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, F.mse_loss, (X, Y), every=2, neigs=2, optimizer=opt, out=out,
                 loggers=loggers) as mon:
        for _ in range(7):
            opt.zero_grad()
            F.mse_loss(model(X), Y).backward()
            opt.step()
            mon.step()
    return store.read_rows(out / "metrics.csv")


def test_tensorboard_events_equal_metrics_csv(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = _run(tmp_path, ("tensorboard",))
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    want = numeric_cells(rows)
    assert set(acc.Tags()["scalars"]) == set(want)
    for tag, pairs in want.items():
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in pairs], tag
        # event files store float32
        assert [v for _, v in got] == pytest.approx([v for _, v in pairs], rel=1e-6), tag


def test_mlflow_metrics_params_and_artifacts_read_back(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    rows = _run(tmp_path, ("mlflow",))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("eoskit").experiment_id])
    assert run.info.status == "FINISHED"
    want = numeric_cells(rows)
    assert set(run.data.metrics) == set(want)
    for key, pairs in want.items():
        got = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert got == pairs, key  # MLflow stores float64: exact
    assert run.data.params["optimizer"] == "sgd" and run.data.params["neigs"] == "2"
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.csv", "summary.json", "config.json", "plots"} <= names
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/sharpness.png" in plots
