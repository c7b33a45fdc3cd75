"""Frozen parameters (``requires_grad=False``) are constants of the loss (issue 25, case 9):
the flat vector, every step and every Hessian are over the trainable parameters only.
References: a hand-written loss of the trainable parameters with the frozen layer fixed,
its dense Hessian by double-backward columns (tests/references.py)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from eoskit import Monitor, store
from eoskit.objective import ModelObjective
from tests.references import dense_hessian, eigh_top

F64 = torch.float64
MODEL = '''import torch


def frozen_first(input_shape, n_outputs, width, seed):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(input_shape[0], width), torch.nn.Tanh(),
                            torch.nn.Linear(width, width), torch.nn.Tanh(),
                            torch.nn.Linear(width, n_outputs))
    m[0].requires_grad_(False)  # a frozen embedding
    return m


def points(n_train, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train, 3, generator=g, dtype=torch.float64)
    return {"x_train": x, "y_train": torch.sin(x[:, :1]) + x[:, 1:2] * x[:, 2:3]}
'''


def _model(seed=0, width=5):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.Tanh(),
                            torch.nn.Linear(width, width), torch.nn.Tanh(),
                            torch.nn.Linear(width, 1)).double()
    m[0].requires_grad_(False)
    return m


def _reference(model, X, Y):
    """The mean-squared loss of the trainable layers (2 and 4) with layer 0 fixed, written
    out by hand, and its flat start."""
    W0, b0 = model[0].weight.detach(), model[0].bias.detach()
    shapes = [model[2].weight.shape, model[2].bias.shape, model[4].weight.shape,
              model[4].bias.shape]
    sizes = [s.numel() for s in shapes]

    def f(x):
        W2, b2, W4, b4 = (c.view(s) for c, s in zip(torch.split(x, sizes), shapes, strict=True))
        h = torch.tanh(torch.tanh(X @ W0.T + b0) @ W2.T + b2)
        return ((h @ W4.T + b4 - Y) ** 2).mean()

    x = torch.cat([model[i].weight.detach().reshape(-1) for i in (2,)] +
                  [model[2].bias.detach(), model[4].weight.detach().reshape(-1),
                   model[4].bias.detach()])
    return f, x


def _data():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(16, 3, generator=g, dtype=F64)
    return X, torch.sin(X[:, :1]) + X[:, 1:2] * X[:, 2:3]


def test_objective_and_monitor_hessian_are_over_the_trainable_parameters():
    model, (X, Y) = _model(), _data()
    f, x = _reference(model, X, Y)
    obj = ModelObjective(model, F.mse_loss, X, Y)
    assert obj.dim == x.numel() == 36  # 5·5 + 5 + 5 + 1: layer 0's 20 are not in it
    assert torch.equal(obj.x0(), x)
    H = dense_hessian(f, x)
    top = eigh_top(H, 2)[0]
    assert float((obj.hvp(x, torch.eye(36, dtype=F64)[7]) - H[:, 7]).norm()) < 1e-12
    mon = Monitor(model, F.mse_loss, (X, Y), every=1, neigs=2, tol=1e-10, dtype=F64)
    row = mon.measure()
    assert [row["eig_1"], row["eig_2"]] == pytest.approx(top.tolist(), rel=1e-8)


def test_adam_with_a_frozen_layer_measures_the_preconditioned_sharpness():
    model, (X, Y) = _model(), _data()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    mon = Monitor(model, F.mse_loss, (X, Y), every=1, optimizer=opt, tol=1e-8, dtype=F64)
    for _ in range(3):
        opt.zero_grad()
        F.mse_loss(model(X), Y).backward()
        opt.step()
        row = mon.step()
    assert row["precond_sharpness"] is not None and row["precond_sharpness"] > 0
    mon.close()


def test_eoskit_run_never_moves_a_frozen_layer(tmp_path):
    from typer.testing import CliRunner

    from eoskit.cli import _register, app

    (tmp_path / "user.py").write_text(MODEL)
    _register()
    out = tmp_path / "run"
    r = CliRunner().invoke(app, [
        "run", "--model", f"{tmp_path / 'user.py'}:frozen_first", "--dataset",
        f"{tmp_path / 'user.py'}:points", "--loss", "mse", "--n-train", "16", "--width", "5",
        "--dtype", "float64", "--lr", "0.3", "--steps", "5", "--out", str(out)])
    assert r.exit_code == 0, (r.stderr, r.exception)
    config = json.loads((out / "config.json").read_text())
    assert config["n_params"] == 36  # the trainable ones
    x_final = torch.load(out / "params_final.pt")
    assert x_final.numel() == 36
    rows = store.read_csv(out / "metrics.csv")
    assert len(rows) == 5 and float(rows[-1]["loss"]) < float(rows[0]["loss"])
