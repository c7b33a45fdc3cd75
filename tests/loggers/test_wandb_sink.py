"""The W&B sink, offline: what its run files hold reads back equal to metrics.csv.

The values are read from the ``run-*.wandb`` files themselves (:mod:`wandb_records`), so
they are what ``wandb sync`` would upload: each step once, after a SIGKILL and a
``--resume`` too, into the same W&B run id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from eoskit import store

pytest.importorskip("wandb")
from tests.loggers import wandb_records  # noqa: E402  (a test helper beside this file)
from tests.loggers.expected_cells import numeric_cells


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")



def _wandb_metrics(run_dir):
    """(run ids, {metric: [(step, value)]}) from every session's ``.wandb`` file."""
    import wandb

    wandb.teardown()  # W&B's service may still be writing a finished run's file
    files = wandb_records.run_files(run_dir)
    assert files, f"no W&B run files under {run_dir}"
    out: dict[str, list] = {}
    for row in wandb_records.history(files):
        for k, v in row.items():
            if not k.startswith("_") and not k.startswith("plots/"):
                out.setdefault(k, []).append((row["_step"], float(v)))
    return wandb_records.run_ids(files), files, out


def _check_equal(run_dir):
    want = numeric_cells(store.read_rows(run_dir / "metrics.csv"))
    ids, files, got = _wandb_metrics(run_dir)
    assert set(got) == set(want)
    for key in want:
        assert got[key] == want[key], key  # float64 JSON: equal, each step once
    return ids, files


def test_monitor_logs_to_three_trackers_at_once(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from eoskit.monitor import Monitor

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    X, Y = torch.randn(24, 3, dtype=torch.float64), torch.randn(24, 1, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, F.mse_loss, (X, Y), every=2, neigs=2, optimizer=opt, out=tmp_path,
                 loggers=("tensorboard", "mlflow", "wandb")) as mon:
        for _ in range(7):
            opt.zero_grad()
            F.mse_loss(model(X), Y).backward()
            opt.step()
            mon.step()
    want = numeric_cells(store.read_rows(tmp_path / "metrics.csv"))
    assert want["sharpness"]
    ids, _ = _check_equal(tmp_path)
    assert len(ids) == 1
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert {t: [e.step for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]} == \
        {k: [s for s, _ in v] for k, v in want.items()}
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {k: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, k))
            for k in run.data.metrics} == want


def test_run_config_and_figures_reach_wandb(tmp_path):
    from eoskit.training.config import RunConfig
    from eoskit.training.loop import train

    cfg = RunConfig(dataset="digits", n_train=32, n_test=0, width=4, steps=6,
                    dtype="float64", lr=0.1, checkpoint_every=2, neigs=2)
    train(cfg, tmp_path, progress=False, log={"loggers": ["wandb"]})
    ids, files = _check_equal(tmp_path)
    assert ids == {store.read_json(tmp_path / "loggers.json")["wandb_run_id"]}
    config = wandb_records.config(files)
    assert config["lr"] == 0.1 and config["dataset"] == "digits" and config["steps"] == 6
    images = {k.removesuffix("/_type") for row in wandb_records.history(files)
              for k, v in row.items() if k.startswith("plots/") and v == "image-file"}
    assert images == {f"plots/{p.stem}" for p in (tmp_path / "plots").glob("*.png")}
    assert (files[0].parent / "files" / "metrics.csv").read_bytes() == \
        (tmp_path / "metrics.csv").read_bytes()


ARGS = ["--dataset", "digits", "--n-train", "48", "--n-test", "0", "--width", "6",
        "--depth", "1", "--dtype", "float64", "--steps", "40", "--checkpoint-every", "5",
        "--lr", "0.5", "--log", "wandb"]


def test_wandb_run_after_sigkill_and_resume_holds_each_step_once(tmp_path):
    run = tmp_path / "r"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "eoskit", "run", *ARGS, "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    t0, metrics = time.monotonic(), run / "metrics.csv"
    while proc.poll() is None and time.monotonic() - t0 < 300:
        if metrics.exists() and len(store.read_csv(metrics)) >= 23:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    first_id = store.read_json(run / "loggers.json")["wandb_run_id"]
    r = subprocess.run([sys.executable, "-m", "eoskit", "run", "--resume", str(run)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [row["step"] for row in store.read_rows(metrics)] == list(range(40))
    ids, files = _check_equal(run)
    assert ids == {first_id} and len(files) == 2  # one W&B run, a file per session


def test_online_without_a_login_is_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from eoskit.cli import _register, app

    _register()
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no W&B settings file
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "cfg"))
    res = CliRunner().invoke(app, ["run", *ARGS[:-2], "--steps", "2", "--out",
                                   str(tmp_path / "r"), "--log", "wandb"])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "W&B could not start a run" in lines[0] and "WANDB_MODE=offline" in lines[0]
