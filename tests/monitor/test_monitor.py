"""eoskit.Monitor: sharpness of a user's model in a user's loop, checked against dense Hessians."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from eoskit import store
from eoskit.monitor import (
    Monitor,
    load_monitor_run,
    measurement_set,
    optimizer_kind,
    optimizer_threshold,
)
from eoskit.objective import ModelObjective
from eoskit.training.stored_run import load_run
from tests import references as R


def mlp(dtype=torch.float64, seed=0, width=8, extra=()):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, width), nn.Tanh(), *extra, nn.Linear(width, 2)).to(dtype)


def data(n=40, dtype=torch.float64, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, dtype=dtype, generator=gen), torch.randn(n, 2, dtype=dtype,
                                                                      generator=gen)


def dense_top(model, loss_fn, X, Y, k=1):
    """Top-k eigenvalues of the dense Hessian of loss_fn(model(X), Y) in the flat parameters,
    by double backward (tests/references.py): independent of every eoskit code path."""
    model = copy.deepcopy(model).double()
    x, params_of = R.flat_parameters(model)

    def f(x):
        return loss_fn(functional_call(model, params_of(x), (X.double(),)), Y.double())

    H = R.dense_hessian(f, x)
    return torch.linalg.eigvalsh((H + H.T) / 2).flip(0)[:k].tolist()


def gd_steps(model, opt, X, Y, mon, steps, loss_fn=F.mse_loss):
    rows = []
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(X), Y).backward()
        opt.step()
        row = mon.step()
        if row is not None:
            rows.append(row)
    return rows


# ---------------------------------------------------------------- the objective
def test_loss_fn_objective_is_the_mean_loss_whatever_the_chunks():
    model, (X, Y) = mlp(), data(n=23)
    whole = ModelObjective(model, F.mse_loss, X, Y)
    x = whole.x0()
    ref = F.mse_loss(model(X), Y)
    for chunks in (None, 5, [3, 20], 1):
        obj = ModelObjective(model, F.mse_loss, X, Y, physical_batch=chunks)
        assert torch.allclose(obj.value(x), ref, rtol=1e-13, atol=0)
        assert torch.allclose(obj.grad(x), whole.grad(x), rtol=1e-11, atol=1e-14)
    # the same number as eoskit's own ModelObjective (whose mse is ½‖·‖² summed over outputs)
    mo = ModelObjective(model, "mse", X, Y)
    half_sq = ModelObjective(model, lambda o, y: 0.5 * ((o - y) ** 2).sum(1).mean(), X, Y,
                              physical_batch=7)
    assert torch.allclose(half_sq.value(x), mo.value(x), rtol=1e-13)


def test_loss_fn_objective_takes_dict_inputs_and_no_targets():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2).double()

        def forward(self, x, labels):
            return {"loss": F.mse_loss(self.lin(x), labels)}

    model, (X, Y) = Model(), data(n=12)
    obj = ModelObjective(model, lambda out, _: out["loss"], {"x": X, "labels": Y},
                          physical_batch=5)
    assert torch.allclose(obj.value(obj.x0()), F.mse_loss(model.lin(X), Y), rtol=1e-13)


def test_measurement_set_reads_a_loader_in_order_and_subsets_by_seed():
    X, Y = data(n=30)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=7)
    xs, ys = measurement_set(loader)
    assert torch.equal(xs, X) and torch.equal(ys, Y)
    a, b = measurement_set(loader, probe_size=10, seed=3), measurement_set((X, Y), 10, seed=3)
    assert torch.equal(a[0], b[0]) and len(a[0]) == 10
    assert not torch.equal(measurement_set((X, Y), 10, seed=4)[0], a[0])


# ---------------------------------------------------------------- thresholds
def test_thresholds_of_torch_optimisers():
    p = [nn.Parameter(torch.zeros(3))]
    sgd = torch.optim.SGD
    assert optimizer_threshold(sgd(p, lr=0.1)) == pytest.approx(20.0)
    assert optimizer_threshold(sgd(p, lr=0.1, momentum=0.9)) == pytest.approx(3.8 / 0.1)
    assert optimizer_threshold(sgd(p, lr=0.1, momentum=0.9, nesterov=True)) == pytest.approx(
        3.8 / (2.8 * 0.1))
    assert optimizer_threshold(sgd(p, lr=0.1, momentum=0.5, dampening=0.5)) == pytest.approx(
        3.0 / 0.05)
    assert optimizer_threshold(sgd(p, lr=0.1, weight_decay=0.5)) == pytest.approx(19.5)
    # adaptive: on the preconditioned sharpness (tests/monitor/test_preconditioned_sharpness.py)
    assert optimizer_threshold(torch.optim.Adam(p, lr=0.1)) == pytest.approx(3.8 / 0.01)
    assert optimizer_threshold(torch.optim.RMSprop(p, lr=0.1)) == pytest.approx(20.0)
    assert optimizer_threshold(torch.optim.Adagrad(p, lr=0.1)) is None
    assert optimizer_threshold(torch.optim.Adam(p, lr=0.1, amsgrad=True)) is None
    assert optimizer_threshold(None) is None
    assert [optimizer_kind(o) for o in (sgd(p, lr=1), sgd(p, lr=1, momentum=0.5),
                                        torch.optim.Adam(p), None)] == [
        "sgd", "polyak", "adam", "none"]


# ---------------------------------------------------------------- measurements
def test_sharpness_matches_the_dense_hessian_along_sgd():
    model, (X, Y) = mlp(), data()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    mon = Monitor(model, F.mse_loss, (X, Y), every=5, neigs=2, optimizer=opt, tol=1e-8)
    rows = gd_steps(model, opt, X, Y, mon, 10)
    assert [r["step"] for r in rows] == [5, 10]
    top = dense_top(model, F.mse_loss, X, Y, k=2)
    assert rows[-1]["sharpness"] == pytest.approx(top[0], rel=1e-6)
    assert [rows[-1]["eig_1"], rows[-1]["eig_2"]] == pytest.approx(top, rel=1e-6)
    assert rows[-1]["threshold"] == pytest.approx(10.0) and rows[-1]["lr"] == 0.2
    assert rows[-1]["loss"] == pytest.approx(float(F.mse_loss(model(X), Y).detach()), rel=1e-12)


def test_float64_measurement_of_a_float32_model_leaves_it_float32():
    model, (X, Y) = mlp(dtype=torch.float32), data(dtype=torch.float32)
    mon = Monitor(model, F.mse_loss, (X, Y), every=1, tol=1e-9, dtype=torch.float64)
    row = mon.step()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert row["sharpness"] == pytest.approx(dense_top(model, F.mse_loss, X, Y)[0],
                                             rel=1e-7)


def test_measuring_changes_nothing_in_the_model_or_the_rng():
    extra = (nn.BatchNorm1d(8), nn.Dropout(0.3))
    model, (X, Y) = mlp(extra=extra), data()
    model.train()
    model(X).sum().backward()  # leave .grad fields to check they survive
    before = copy.deepcopy(model.state_dict())
    grads = [p.grad.clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    mon = Monitor(model, F.mse_loss, (X, Y), every=1, neigs=2)
    mon.step()
    mon.step()  # κ of the step: one more forward pass
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics too
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))
    assert all(p.dtype == torch.float64 and p.requires_grad for p in model.parameters())
    mon_eval = Monitor(model.eval(), F.mse_loss, (X, Y), every=1)
    mon_eval.step()
    assert not model.training


@pytest.mark.parametrize("mode", ["lean", "shared"])
def test_fd_measurements_give_the_parameters_back_bit_for_bit(mode):
    # float32: fd products displace the model's own parameters; signed zeros and powers of
    # two are where a plain subtraction would not give the bits back. The monitored loop
    # must follow the unmonitored one to the bit.
    def bits(model):
        return [p.detach().clone().view(torch.int32) for p in model.parameters()]

    model, (X, Y) = mlp(dtype=torch.float32), data(dtype=torch.float32)
    with torch.no_grad():
        model[0].weight[:, 0] = torch.tensor([-0.0, 1.0, 0.5, -2.0, 0.0, -0.0, 0.25, 4.0])
        model[2].bias.fill_(-0.0)
    twin = copy.deepcopy(model)
    opt, twin_opt = (torch.optim.Adam(m.parameters(), lr=0.01) for m in (model, twin))
    mon = Monitor(model, F.mse_loss, (X, Y), every=1, optimizer=opt, mode=mode)
    assert mon.objective.hvp_method == "fd"
    before = bits(model)
    mon.measure()
    assert all(torch.equal(a, b) for a, b in zip(before, bits(model), strict=True))
    gd_steps(model, opt, X, Y, mon, 4)
    for _ in range(4):
        twin_opt.zero_grad()
        F.mse_loss(twin(X), Y).backward()
        twin_opt.step()
    assert all(torch.equal(a, b) for a, b in zip(bits(twin), bits(model), strict=True))


def test_measuring_under_no_grad_still_works():
    model, (X, Y) = mlp(), data()
    mon = Monitor(model, F.mse_loss, (X, Y), every=1)
    with torch.no_grad():
        row = mon.step()
    assert row["sharpness"] > 0


def test_eff_curvature_is_the_exact_curvature_along_the_step_on_a_quadratic():
    # linear least squares: L is quadratic, so κ_t = sᵀHs/|s|² exactly
    torch.manual_seed(0)
    model, (X, Y) = nn.Linear(4, 2).double(), data()
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.5)
    mon = Monitor(model, F.mse_loss, (X, Y), every=3, optimizer=opt)
    obj = ModelObjective(model, F.mse_loss, X, Y)
    H = obj.hessian(obj.x0())  # constant
    xs = []
    for _ in range(8):
        opt.zero_grad()
        F.mse_loss(model(X), Y).backward()
        opt.step()
        xs.append(obj.x0())
        mon.step()
    mon.close()
    rows = mon.rows
    assert [r["step"] for r in rows] == [3, 6]
    s = xs[3] - xs[2]  # the step after the measurement at step 3
    assert rows[0]["eff_curvature"] == pytest.approx(float(s @ H @ s / (s @ s)), rel=1e-8)
    assert rows[0]["step_norm"] == pytest.approx(float(s.norm()), rel=1e-12)
    s = xs[6] - xs[5]
    assert rows[1]["eff_curvature"] == pytest.approx(float(s @ H @ s / (s @ s)), rel=1e-8)


def test_eff_curvature_needs_the_next_step():
    model, (X, Y) = mlp(), data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, F.mse_loss, (X, Y), every=2, optimizer=opt)
    mon.step(step=2)
    mon.step(step=5)  # not the step after 2: no κ can be had
    assert mon.rows[0]["eff_curvature"] is None and mon.rows[0]["step_norm"] is None
    every_step = Monitor(model, F.mse_loss, (X, Y), every=1, optimizer=opt)
    gd_steps(model, opt, X, Y, every_step, 3)
    assert every_step.rows[0]["eff_curvature"] is not None  # from the next measurement


def test_warm_start_needs_few_products_per_measurement():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 3)).double()
    X, Y = torch.randn(128, 10, dtype=torch.float64), torch.randn(128, 3, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    mon = Monitor(model, F.mse_loss, (X, Y), every=10, optimizer=opt, tol=1e-3)
    rows = gd_steps(model, opt, X, Y, mon, 300)
    steady = [r["hvps"] for r in rows[5:]]  # after the first, fast-moving measurements
    assert sum(steady) / len(steady) <= 4.0, steady
    assert sum(r["hvps"] for r in rows[1:]) / (len(rows) - 1) <= 4.0
    assert rows[0]["hvps"] > 4  # the cold start
    assert rows[-1]["sharpness"] == pytest.approx(dense_top(model, F.mse_loss, X, Y)[0],
                                                  rel=1e-3)


# ---------------------------------------------------------------- the run directory
def test_run_directory_contract_and_report(tmp_path):
    from eoskit.report import write_report

    model, (X, Y) = mlp(), data()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    out = tmp_path / "run"
    with Monitor(model, F.mse_loss, (X, Y), every=2, neigs=2, optimizer=opt, out=out) as mon:
        assert store.read_json(out / "summary.json")["status"] == "running"
        gd_steps(model, opt, X, Y, mon, 9)
    summary = store.read_json(out / "summary.json")
    assert summary["status"] == "completed" and summary["measurements"] == 4
    assert summary["threshold"] == pytest.approx(10.0)
    assert summary["hvps_total"] == sum(r["hvps"] for r in mon.rows)
    rows = store.read_rows(out / "metrics.csv")
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    assert rows == [{c: r.get(c) for c in mon.columns} for r in mon.rows]
    assert rows[0]["eff_curvature"] is not None and rows[-1]["eff_curvature"] is not None
    conf = json.loads((out / "config.json").read_text())
    assert conf["source"] == "monitor" and conf["config"]["optimizer"] == "sgd"
    assert conf["n_params"] == sum(p.numel() for p in model.parameters())
    assert (out / "plots" / "sharpness.png").exists()
    page = write_report(out).read_text()
    assert "eoskit run" in page and "completed" in page
    run = load_monitor_run(out)
    assert run.metrics == rows and run.summary["status"] == "completed"
    # load_run reads it too, without objective or parameters (monitor/test_monitor_load_run.py)
    assert load_run(out).objective is None
    with pytest.raises(store.RunDirError):
        Monitor(model, F.mse_loss, (X, Y), out=out)


def test_an_optimiser_without_threshold_still_reports(tmp_path):
    from eoskit.report import write_report

    model, (X, Y) = mlp(), data()
    opt = torch.optim.Adagrad(model.parameters(), lr=1e-2)
    with Monitor(model, F.mse_loss, (X, Y), every=3, optimizer=opt, out=tmp_path) as mon:
        rows = gd_steps(model, opt, X, Y, mon, 6)
    assert all(r["threshold"] is None for r in rows)
    summary = store.read_json(tmp_path / "summary.json")
    assert summary["threshold"] is None and summary["eos_onset_step"] is None
    assert summary["final_sharpness"] == rows[-1]["sharpness"]
    assert write_report(tmp_path).exists()


def test_adam_run_directory_summarises_the_preconditioned_series(tmp_path):
    model, (X, Y) = mlp(), data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with Monitor(model, F.mse_loss, (X, Y), every=3, optimizer=opt, out=tmp_path) as mon:
        rows = gd_steps(model, opt, X, Y, mon, 6)
    assert all(r["threshold"] == pytest.approx(3.8 / 1e-3) for r in rows)
    summary = store.read_json(tmp_path / "summary.json")
    assert summary["sharpness_series"] == "precond_sharpness"
    assert summary["final_sharpness"] == rows[-1]["precond_sharpness"] != rows[-1]["sharpness"]


def test_a_failing_loop_marks_the_run_failed(tmp_path):
    model, (X, Y) = mlp(), data()
    with pytest.raises(RuntimeError), Monitor(model, F.mse_loss, (X, Y), every=1,
                                              out=tmp_path) as mon:
        mon.step()
        raise RuntimeError("the loop broke")
    assert store.read_json(tmp_path / "summary.json")["status"] == "failed"
    assert len(store.read_rows(tmp_path / "metrics.csv")) == 1


def test_sink_objects_receive_the_completed_rows():
    class Sink:
        def __init__(self):
            self.params, self.rows, self.closed = None, [], False

        def log_params(self, config):
            self.params = config

        def log_row(self, row):
            self.rows.append(dict(row))

        def log_artifact(self, path):
            pass

        def close(self):
            self.closed = True

    model, (X, Y) = mlp(), data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sink = Sink()
    mon = Monitor(model, F.mse_loss, (X, Y), every=2, optimizer=opt, loggers=[sink])
    gd_steps(model, opt, X, Y, mon, 5)
    assert len(sink.rows) == 2 and sink.rows[0]["eff_curvature"] is not None  # completed rows
    mon.close()
    assert sink.closed and sink.rows == mon.rows and sink.params["n_params"] == 58
    with pytest.raises(ValueError, match="out="):
        Monitor(model, F.mse_loss, (X, Y), loggers=("mlflow",))
    with pytest.raises(TypeError, match="not a sink"):
        Monitor(model, F.mse_loss, (X, Y), loggers=[object()])


def test_integration_modules_name_their_missing_framework():
    import subprocess
    import sys

    code = ("import importlib, sys\n"
            "for m in ('lightning', 'lightning.pytorch', 'transformers', 'mlflow',"
            " 'torch.utils.tensorboard'):\n"
            "    sys.modules[m] = None\n"
            "import eoskit, eoskit.integrations, eoskit.loggers, eoskit.monitor\n"
            "for name, extra in (('lightning', 'lightning'), ('transformers', 'transformers')):\n"
            "    try:\n"
            "        importlib.import_module('eoskit.integrations.' + name)\n"
            "    except ImportError as err:\n"
            "        assert f\"eoskit[{extra}]\" in str(err), err\n"
            "    else:\n"
            "        raise SystemExit('imported a missing framework')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
