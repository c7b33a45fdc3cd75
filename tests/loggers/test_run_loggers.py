"""``eoskit run --log tensorboard,mlflow``: what the loggers hold equals metrics.csv.

Also across a resume that cuts metrics.csv back to a checkpoint: the rows the
first session wrote after it must not stay in the loggers twice.
"""

from __future__ import annotations

import json

import pytest

from eoskit import store
from eoskit.training.config import RunConfig
from tests.loggers.expected_cells import numeric_cells

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")


def _cfg(**kw):
    base = dict(dataset="digits", n_train=32, n_test=0, width=4, steps=6, dtype="float64",
                lr=0.1, checkpoint_every=2, neigs=2)
    return RunConfig(**{**base, **kw})



def _tensorboard(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _mlflow(run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run.resolve() / 'mlflow.db'}")
    run_id = store.read_json(run / "loggers.json")["mlflow_run_id"]
    info = client.get_run(run_id)
    hist = {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k))
            for k in info.data.metrics}
    return client, run_id, info, hist


def _check_equal(run):
    want = numeric_cells(store.read_rows(run / "metrics.csv"))
    tb = _tensorboard(run)
    assert set(tb) == set(want)
    for tag, pairs in want.items():
        assert [s for s, _ in tb[tag]] == [s for s, _ in pairs], tag
        # event files hold float32
        assert [v for _, v in tb[tag]] == pytest.approx([v for _, v in pairs], rel=1e-6), tag
    client, run_id, info, hist = _mlflow(run)
    assert hist == want  # float64, each step once
    return client, run_id, info


def test_run_loggers_equal_metrics_csv(tmp_path):
    from eoskit.training.loop import train

    run = tmp_path / "r"
    train(_cfg(), run, progress=False, log={"loggers": ["tensorboard", "mlflow"]})
    client, run_id, info = _check_equal(run)
    assert info.info.status == "FINISHED"
    assert info.data.params["lr"] == "0.1" and info.data.params["dataset"] == "digits"
    arts = {a.path for a in client.list_artifacts(run_id)}
    assert {"metrics.csv", "summary.json", "config.json", "plots"} <= arts
    # the loggers are no part of the run's configuration
    assert "log" not in json.loads((run / "config.json").read_text())["config"]


def test_resume_after_a_crash_past_a_checkpoint_continues_the_same_mlflow_run(
        tmp_path, monkeypatch):
    from eoskit.training import loop as train_mod

    run = tmp_path / "r"
    real = train_mod.Trainer._take_step

    def crash_at_5(self, t, ev, row):
        if t == 5:  # rows 0..4 are in metrics.csv, the checkpoint at step 4 covers 0..2
            raise KeyboardInterrupt
        return real(self, t, ev, row)

    monkeypatch.setattr(train_mod.Trainer, "_take_step", crash_at_5)
    first = train_mod.train(_cfg(), run, progress=False,
                            log={"loggers": ["tensorboard", "mlflow"]})
    assert first["status"] == "interrupted"
    assert [r["step"] for r in store.read_rows(run / "metrics.csv")] == [0, 1, 2, 3, 4]
    run_id = store.read_json(run / "loggers.json")["mlflow_run_id"]
    monkeypatch.setattr(train_mod.Trainer, "_take_step", real)
    # the resume names no logger: it goes on with the run's own
    train_mod.train(None, run, resume=True, progress=False)
    assert [r["step"] for r in store.read_rows(run / "metrics.csv")] == list(range(6))
    _, resumed_id, info = _check_equal(run)
    assert resumed_id == run_id and info.info.status == "FINISHED"


def test_a_kill_before_loggers_json_never_logs_a_step_twice_in_mlflow(tmp_path, monkeypatch):
    """SIGKILL after the MLflow rows of a checkpoint were logged but before loggers.json
    recorded it (issue 25, case 7): the resume logs those rows again; MLflow skips them."""
    from eoskit.training import loop as train_mod

    run = tmp_path / "r"
    real = train_mod.Trainer._take_step

    def crash_at_5(self, t, ev, row):
        if t == 5:
            raise KeyboardInterrupt
        return real(self, t, ev, row)

    monkeypatch.setattr(train_mod.Trainer, "_take_step", crash_at_5)
    train_mod.train(_cfg(), run, progress=False, log={"loggers": ["tensorboard", "mlflow"]})
    state = store.read_json(run / "loggers.json")
    assert state["logged_below"] == 3  # rows 0..2 went to MLflow at the checkpoint at step 4
    # as a kill during that flush leaves it: rows 1, 2 logged, loggers.json not yet written
    store.write_json(run / "loggers.json", {**state, "logged_below": 1})
    monkeypatch.setattr(train_mod.Trainer, "_take_step", real)
    train_mod.train(None, run, resume=True, progress=False)
    _check_equal(run)


def test_cli_log_option_and_toml_table(tmp_path):
    from typer.testing import CliRunner

    from eoskit.cli import _register, app

    _register()
    toml = tmp_path / "c.toml"
    toml.write_text('[run]\ndataset = "digits"\nn_train = 16\nn_test = 0\nwidth = 3\n'
                    'steps = 3\ndtype = "float64"\nlr = 0.1\n[log]\nloggers = ["tensorboard"]\n')
    res = CliRunner().invoke(app, ["run", "--config", str(toml), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert list((tmp_path / "a" / "tensorboard").glob("events.out.tfevents.*"))
    assert not (tmp_path / "a" / "mlflow.db").exists()
    res = CliRunner().invoke(app, ["run", "--config", str(toml), "--out", str(tmp_path / "b"),
                                   "--log", "neptune"])
    assert res.exit_code == 2 and "unknown logger 'neptune'" in res.output


def test_a_logger_added_at_resume_gets_every_row(tmp_path, monkeypatch):
    from eoskit.training import loop as train_mod

    run = tmp_path / "r"
    real = train_mod.Trainer._take_step

    def crash_at_5(self, t, ev, row):
        if t == 5:
            raise KeyboardInterrupt
        return real(self, t, ev, row)

    monkeypatch.setattr(train_mod.Trainer, "_take_step", crash_at_5)
    train_mod.train(_cfg(), run, progress=False, log={"loggers": ["mlflow"]})
    assert not (run / "tensorboard").exists()
    monkeypatch.setattr(train_mod.Trainer, "_take_step", real)
    train_mod.train(None, run, resume=True, progress=False,
                    log={"loggers": ["tensorboard", "mlflow"]})
    _, _, info = _check_equal(run)  # TensorBoard from step 0, MLflow each step once
    assert info.data.tags["eoskit.status"] == "completed"
