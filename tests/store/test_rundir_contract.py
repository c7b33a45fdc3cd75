"""One run-directory contract for every writer (issue 25): ``eoskit run``, ``eoskit flow``,
the Monitor and sweeps each own their directory, lock it, verify a resume, and refuse to
take over another kind's; their failures are one line and the README's exit code."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from eoskit import store
from eoskit.flows.flow_run import FlowSettings, run_flows
from eoskit.objective import FunctionObjective
from tests.cli_runner import invoke, one_line

F64 = torch.float64
START = ["flow", "--objective", "double-well", "--x0", "1.3", "--lr", "1.01", "--flows",
         "gradient"]
FLOW = [*START, "--steps", "12", "--checkpoint-every", "4"]
RUN = ["run", "--dataset", "digits", "--n-train", "32", "--n-test", "0", "--width", "4",
       "--depth", "1", "--dtype", "float64", "--steps", "3", "--checkpoint-every", "0"]




def _flows(tmp_path, name="flows", *extra):
    out = tmp_path / name
    r = invoke(*FLOW, "--out", out, *extra)
    assert r.exit_code == 0, (r.stderr, r.exception)
    return out


# ---------------------------------------------------------------- 1, 8: no takeover
def test_flow_refuses_a_run_directory_and_run_refuses_a_flows_directory(tmp_path):
    run = tmp_path / "run"
    assert invoke(*RUN, "--out", run).exit_code == 0
    summary = (run / "summary.json").read_bytes()
    r = invoke(*FLOW, "--out", run, "--overwrite")
    assert r.exit_code == 2 and "holds an eoskit run (status completed" in one_line(r), r.stderr
    assert (run / "summary.json").read_bytes() == summary and not (run / "flows.csv").exists()
    flows = _flows(tmp_path)
    r = invoke(*RUN, "--out", flows, "--overwrite")  # case 8: it left the flows files inside
    assert r.exit_code == 2 and "holds an eoskit flows run" in one_line(r), r.stderr
    assert (flows / "flows.csv").exists() and not (flows / "metrics.csv").exists()
    r = invoke("run", "--resume", flows)
    assert r.exit_code == 2 and "holds an eoskit flows run" in one_line(r), r.stderr


def test_flow_refuses_a_flows_directory_unless_overwrite_which_removes_it_all(tmp_path):
    out = _flows(tmp_path)
    r = invoke(*FLOW, "--out", out)
    assert r.exit_code == 2 and "already holds an eoskit flows run" in one_line(r)
    assert "eoskit flow --resume" in r.stderr
    r = invoke(*START, "--steps", "6", "--out", out, "--overwrite")
    assert r.exit_code == 0, r.stderr
    # the old run's checkpoints went: a later --resume cannot continue the old run
    assert not (out / "checkpoints").exists()
    assert max(int(row["step"]) for row in store.read_csv(out / "flows.csv")) == 6


# ---------------------------------------------------------------- 2, 5, 6: one writer
def test_a_locked_directory_stops_flow_and_its_resume(tmp_path):
    out = _flows(tmp_path)
    # as if killed: a finished run's resume reads its summary and needs no lock (below)
    store.write_json(out / "summary.json", {"status": "interrupted"})
    with store.RunLock(out):
        for args in ([*FLOW, "--out", out, "--overwrite"], ["flow", "--resume", out]):
            r = invoke(*args)
            assert r.exit_code == 2 and "in use by another eoskit process (PID" in one_line(r)


def test_flow_resume_of_a_finished_run_prints_its_summary_and_touches_nothing(tmp_path,
                                                                              monkeypatch):
    from eoskit.cli import flow

    out = _flows(tmp_path)

    def built(*_):  # a finished run has nothing to run: its data and model are not built
        raise AssertionError("the problem of a finished run was built")

    monkeypatch.setattr(flow, "_problem", built)
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()
             and p.name != ".eoskit.lock"}  # the test's own lock below touches that one
    stamps = {p: p.stat().st_mtime_ns for p in files}
    with store.RunLock(out):  # read-only: another process may hold it
        r = invoke("flow", "--resume", out)
    assert r.exit_code == 0, r.stderr
    assert f"flows: {out}  (status completed" in r.stdout
    assert files == {p: p.read_bytes() for p in files}
    assert stamps == {p: p.stat().st_mtime_ns for p in files}


def test_a_monitor_holds_its_directory_against_run_overwrite(tmp_path):
    from eoskit import Monitor

    model = torch.nn.Linear(3, 1).double()
    X, Y = torch.randn(6, 3, dtype=F64), torch.randn(6, 1, dtype=F64)
    out = tmp_path / "mon"
    mon = Monitor(model, F.mse_loss, (X, Y), every=1, out=out)
    mon.step()
    r = invoke(*RUN, "--out", out, "--overwrite")
    assert r.exit_code == 2 and "in use by another eoskit process" in one_line(r)
    mon.step()
    mon.close()
    assert len(store.read_csv(out / "metrics.csv")) == 2
    r = invoke(*RUN, "--out", out, "--overwrite")  # unlocked now, still not a run's
    assert r.exit_code == 2 and "holds an eoskit Monitor run" in one_line(r)
    with pytest.raises(store.RunDirError, match="already holds an eoskit Monitor run"):
        Monitor(model, F.mse_loss, (X, Y), every=1, out=out)


def test_a_second_sweep_on_a_locked_sweep_directory_stops_at_once(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('[run]\ndataset = "digits"\nn_train = 32\nn_test = 0\nwidth = 4\n'
                    'depth = 1\ndtype = "float64"\nsteps = 3\n\n[grid]\nlr = [0.1]\n')
    out = tmp_path / "sweep"
    with store.RunLock(out):
        r = invoke("sweep", "--config", grid, "--out", out)
    assert r.exit_code == 2 and "in use by another eoskit process" in one_line(r)
    assert not (out / "runs.csv").exists()
    r = invoke("sweep", "--config", grid, "--out", _flows(tmp_path))
    assert r.exit_code == 2 and "holds an eoskit flows run" in one_line(r)


# ---------------------------------------------------------------- 3, 4: verified resume
def _objective():
    return FunctionObjective(lambda x: ((x[0] ** 2 - 1) ** 2 / 4 + x[1] ** 2 / 2), 2)


def test_flow_resume_repairs_its_tables(tmp_path, capsys):
    settings = FlowSettings(lr=1.01, steps=12, flows=("gradient",), checkpoint_every=4)
    x0 = torch.tensor([1.3, 0.5], dtype=F64)
    whole = tmp_path / "whole"
    run_flows(_objective(), x0, settings, whole)
    out = tmp_path / "cut"
    run_flows(_objective(), x0, settings, out, stop_at=10)
    flows = (out / "flows.csv").read_text().splitlines()
    (out / "flows.csv").write_text("\n".join(flows[:3] + flows[5:]) + "\n")  # rows lost
    gd = (out / "gd_steps.csv").read_text().replace("\n2,", "\n2,9", 1)  # a value edited
    (out / "gd_steps.csv").write_text(gd)
    capsys.readouterr()
    run_flows(_objective(), x0, settings, out, resume=True)
    err = capsys.readouterr().err
    assert "flows.csv: restored from the checkpoint" in err
    assert "gd_steps.csv: restored from the checkpoint" in err
    for name in ("flows.csv", "gd_steps.csv"):
        assert (out / name).read_bytes() == (whole / name).read_bytes(), name


def test_flow_resume_refuses_an_edited_flow_config(tmp_path):
    out = _flows(tmp_path)
    stored = store.read_json(out / "flow_config.json")
    stored["settings"]["lr"] = 1.2
    store.write_json(out / "flow_config.json", stored)
    before = (out / "flows.csv").read_bytes()
    r = invoke("flow", "--resume", out)
    assert r.exit_code == 2, r.stderr
    assert "flow_config.json no longer matches the checkpoint at step 12 (changed: " \
           "settings.lr)" in one_line(r)
    assert (out / "flows.csv").read_bytes() == before


# ---------------------------------------------------------------- 10, 13, 14: exit codes
def test_flow_steps_zero_is_bad_input_not_200_steps(tmp_path):
    r = invoke(*START, "--steps", "0", "--out", tmp_path / "z")
    assert r.exit_code == 2 and "steps and every must be at least 1" in one_line(r)


def test_a_diverging_flow_exits_3_with_one_line(tmp_path):
    r = invoke("flow", "--objective", "double-well", "--x0", "3", "--lr", "5", "--steps",
             "40", "--flows", "gradient", "--out", tmp_path / "d")
    assert r.exit_code == 3, (r.stderr, r.exception)
    assert "diverged" in one_line(r)
    assert store.read_json(tmp_path / "d" / "summary.json")["status"] == "diverged"


def test_a_central_flow_that_blows_up_ends_diverged_not_in_an_eigensolver(tmp_path):
    # the central flow's Euler iterate overflows first here: no eigensolver may run on it
    r = invoke("flow", "--objective", "double-well", "--x0", "3", "--lr", "5", "--steps", "20",
             "--out", tmp_path / "d")
    assert r.exit_code == 3, (r.stderr, r.exception)
    assert "diverged" in one_line(r)
    assert store.read_json(tmp_path / "d" / "summary.json")["status"] == "diverged"


def test_an_interrupted_flow_exits_130_and_resumes(tmp_path, monkeypatch):
    from eoskit.flows.tracks import GDTrack

    calls = {"n": 0}
    advance = GDTrack.advance

    def interrupted(self, n):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return advance(self, n)

    monkeypatch.setattr(GDTrack, "advance", interrupted)
    out = tmp_path / "i"
    r = invoke(*FLOW, "--out", out)
    assert r.exit_code == 130 and "interrupted" in one_line(r), r.stderr
    assert store.read_json(out / "summary.json")["status"] == "interrupted"
    monkeypatch.setattr(GDTrack, "advance", advance)
    assert invoke("flow", "--resume", out).exit_code == 0
    assert (out / "flows.csv").read_bytes() == _flows(tmp_path).joinpath("flows.csv").read_bytes()


@pytest.mark.parametrize("edit,needle", [
    (lambda c: c["settings"].update(surprise=1), "settings eoskit does not know (surprise)"),
    (lambda c: c.pop("source"), "lacks its 'settings' or 'source'"),
])
def test_a_broken_flow_config_is_one_line_exit_2(tmp_path, edit, needle):
    out = _flows(tmp_path)
    stored = store.read_json(out / "flow_config.json")
    edit(stored)
    store.write_json(out / "flow_config.json", stored)
    r = invoke("flow", "--resume", out)
    assert r.exit_code == 2 and needle in one_line(r), r.stderr


def test_a_diverging_run_says_so_on_stderr(tmp_path):
    r = invoke(*RUN[:-4], "--steps", "30", "--lr", "50", "--out", tmp_path / "d")
    assert r.exit_code == 3 and "diverged at step" in one_line(r), r.stderr


USER = '''import torch


def points(n_train, seed):
    x = torch.randn(n_train, 3, dtype=torch.float64)
    x[2, 1] = float("nan")
    return {"x_train": x, "y_train": x[:, :1].clone()}


def clean(n_train, seed):
    x = torch.randn(n_train, 3, generator=torch.Generator().manual_seed(seed))
    return {"x_train": x.double(), "y_train": x[:, :1].double()}


def wide(input_shape, n_outputs, width):
    return torch.nn.Linear(input_shape[0] + 1, n_outputs)  # a wrong input shape
'''


def test_nan_in_user_data_is_bad_input_and_sys_exit_at_import_is_reported(tmp_path):
    (tmp_path / "user.py").write_text(USER)
    args = ["run", "--loss", "mse", "--n-train", "8", "--dtype", "float64", "--steps", "2"]
    r = invoke(*args, "--dataset", f"{tmp_path / 'user.py'}:points", "--out", tmp_path / "a")
    assert r.exit_code == 2 and "x_train holds NaN or infinite values" in one_line(r)
    (tmp_path / "quits.py").write_text("import sys\nsys.exit(0)\n")
    r = invoke(*args, "--dataset", f"{tmp_path / 'quits.py'}:points", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "failed: SystemExit" in one_line(r), r.stderr


def test_a_sweep_with_a_failing_user_component_refuses_before_any_run(tmp_path):
    (tmp_path / "user.py").write_text(USER)
    grid = tmp_path / "grid.toml"
    grid.write_text(f'[run]\ndataset = "{tmp_path / "user.py"}:clean"\nloss = "mse"\n'
                    f'n_train = 8\ndtype = "float64"\nsteps = 2\n\n[grid]\nmodel = ["fc-tanh", '
                    f'"{tmp_path / "user.py"}:wide"]\n')
    out = tmp_path / "sweep"
    r = invoke("sweep", "--config", grid, "--out", out, "--backend", "local", "--workers", "1")
    assert r.exit_code == 2 and "grid point model=" in one_line(r), r.stderr
    assert not out.exists() or not any(p.is_dir() for p in out.iterdir())


def test_a_shuffled_loader_gives_the_monitor_the_same_probe(tmp_path):
    """Case 12: the probe subset is drawn over the dataset, not over the iteration."""
    from torch.utils.data import DataLoader, TensorDataset

    from eoskit.monitor.data import measurement_set

    X = torch.arange(40, dtype=F64)[:, None]
    ds = TensorDataset(X, X[:, 0] * 2)
    probes = [measurement_set(DataLoader(ds, batch_size=8, shuffle=True,
                                         generator=torch.Generator().manual_seed(s)),
                              probe_size=6, seed=3)[0] for s in (0, 1)]
    plain = measurement_set(DataLoader(ds, batch_size=8), probe_size=6, seed=3)[0]
    assert torch.equal(probes[0], probes[1]) and torch.equal(probes[0], plain)
    assert probes[0].shape == (6, 1) and bool((probes[0][1:] > probes[0][:-1]).all())


def _tanh_net():
    """A 3-6-1 tanh net on 8 points; at η = 1.2 the central flow constrains two directions."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(8, 3, generator=gen, dtype=F64)
    y = torch.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2]

    def loss(x):
        h = torch.tanh(X @ x[:18].reshape(6, 3).T + x[18:24])
        return 0.5 * ((h @ x[24:30] + x[-1] - y) ** 2).mean()

    return FunctionObjective(loss, 31), torch.randn(31, generator=gen, dtype=F64) * 0.5


def test_a_resumed_central_flow_with_two_constrained_directions_is_bitwise(tmp_path):
    """Case 11: cvxpy's warm start made X depend on the solves before it."""
    settings = FlowSettings(lr=1.2, steps=24, flows=("central",), neigs=2, checkpoint_every=8)
    obj, x0 = _tanh_net()
    run_flows(obj, x0, settings, tmp_path / "whole")
    run_flows(obj, x0, settings, tmp_path / "cut", stop_at=16)
    run_flows(_tanh_net()[0], x0, settings, tmp_path / "cut", resume=True)
    rows = store.read_rows(tmp_path / "whole" / "flows.csv")
    assert max(r["n_constrained"] for r in rows if r["flow"] == "central") == 2
    for name in ("flows.csv", "gd_steps.csv"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
