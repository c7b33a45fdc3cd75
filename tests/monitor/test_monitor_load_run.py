"""``eoskit.load_run`` and ``eoskit report`` on a directory a Monitor wrote."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from typer.testing import CliRunner

import eoskit
from eoskit import store
from eoskit.monitor import Monitor


def _monitor_run(out):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    X, Y = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, F.mse_loss, (X, Y), every=2, neigs=2, optimizer=opt, out=out) as mon:
        for _ in range(6):
            opt.zero_grad()
            F.mse_loss(model(X), Y).backward()
            opt.step()
            mon.step()
    return mon.rows


def test_load_run_reads_a_monitor_directory(tmp_path):
    rows = _monitor_run(tmp_path)
    run = eoskit.load_run(tmp_path)
    assert run.source == "monitor" and run.objective is None and run.x_final is None
    assert run.config["model"] == "Sequential" and run.config["lr"] == 0.1
    assert run.summary["status"] == "completed"
    frame = run.metrics
    assert list(frame["step"]) == [r["step"] for r in rows] == [2, 4, 6]
    assert frame["sharpness"].dtype == float
    assert list(frame["sharpness"]) == [r["sharpness"] for r in rows]
    # the last measurement's κ has no next step: an empty cell, NaN
    assert math.isnan(frame["eff_curvature"].iloc[-1])
    assert run.metric_rows == store.read_rows(tmp_path / "metrics.csv")


def test_report_and_orbits_cli_on_a_monitor_directory(tmp_path):
    from eoskit.cli import _register, app

    _register()
    _monitor_run(tmp_path / "m")
    res = CliRunner().invoke(app, ["report", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "report.html").read_text().count("sharpness") > 0
    res = CliRunner().invoke(app, ["orbits", "--run", str(tmp_path / "m"), "--lr", "0.1"])
    assert res.exit_code == 2 and "written by eoskit.Monitor" in res.output
