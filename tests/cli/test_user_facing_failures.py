"""Where users meet eoskit: list options, ``eoskit flow`` with the run options, and each
failure a new user ran into as one line with its documented exit code (issue 24)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from typer.testing import CliRunner

from eoskit import store
from eoskit.cli import _register, app

_register()

TINY = ["--dataset", "digits", "--n-train", "16", "--n-test", "0", "--width", "3",
        "--steps", "3", "--dtype", "float64", "--lr", "0.1"]


def _invoke(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def _one_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("eoskit: error: "), output
    return lines[0]


# ------------------------------------------------------------------ list options
def test_log_repeated_and_comma_separated_alike(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    for name, log in (("repeated", ["--log", "tensorboard", "--log", "mlflow"]),
                      ("commas", ["--log", "tensorboard,mlflow"])):
        code, out = _invoke("run", *TINY, "--out", tmp_path / name, *log)
        assert code == 0, out
        assert list((tmp_path / name / "tensorboard").glob("events.out.tfevents.*")), name
        assert (tmp_path / name / "mlflow.db").exists(), name
        assert store.read_json(tmp_path / name / "loggers.json")["loggers"] == \
            ["tensorboard", "mlflow"]


def test_log_option_adds_to_the_toml_log_table(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    toml = tmp_path / "c.toml"
    toml.write_text('[run]\ndataset = "digits"\nn_train = 16\nn_test = 0\nwidth = 3\n'
                    'steps = 3\ndtype = "float64"\nlr = 0.1\n[log]\nloggers = ["tensorboard"]\n')
    code, out = _invoke("run", "--config", toml, "--out", tmp_path / "r", "--log", "mlflow")
    assert code == 0, out
    assert store.read_json(tmp_path / "r" / "loggers.json")["loggers"] == \
        ["tensorboard", "mlflow"]


def test_tuple_options_repeated_and_comma_separated_alike():
    from eoskit.cli._common import option_values
    from eoskit.training.config import RunConfig

    assert option_values(RunConfig, {"classes": ["0,1", "2"]})["classes"] == (0, 1, 2)
    assert option_values(RunConfig, {"classes": ["0", "1", "2"]})["classes"] == (0, 1, 2)


# ------------------------------------------------------------------ MLflow URI
def test_mlflow_uri_to_a_folder_is_bad_input(tmp_path):
    code, out = _invoke("run", *TINY, "--out", tmp_path / "r", "--log", "mlflow",
                        "--mlflow-uri", tmp_path / "folder")
    assert code == 2 and "not a folder" in _one_line(out)


def test_mlflow_uri_to_a_server_that_does_not_answer_is_an_io_failure(tmp_path):
    code, out = _invoke("run", *TINY, "--out", tmp_path / "r", "--log", "mlflow",
                        "--mlflow-uri", "http://127.0.0.1:9")  # discard port: nothing listens
    assert code == 4 and "does not answer" in _one_line(out)
    assert not (tmp_path / "r" / "metrics.csv").exists()  # refused before the run


def test_mlflow_uri_without_the_mlflow_logger_is_refused(tmp_path):
    code, out = _invoke("run", *TINY, "--out", tmp_path / "r",
                        "--mlflow-uri", f"sqlite:///{tmp_path}/m.db")
    assert code == 2 and "add --log mlflow" in _one_line(out)


# ------------------------------------------------------------------ eoskit flow
def test_flow_takes_the_run_options_and_writes_what_the_config_does(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[run]\ndataset = "digits"\nn_train = 24\nn_test = 0\nwidth = 4\n'
                    'lr = 0.5\nsteps = 6\ndtype = "float64"\n')
    flow = ["--neigs", "1", "--substeps", "1"]
    code, out = _invoke("flow", "--config", toml, "--out", tmp_path / "a", *flow)
    assert code == 0, out
    code, out = _invoke("flow", "--dataset", "digits", "--n-train", "24", "--n-test", "0",
                        "--width", "4", "--lr", "0.5", "--steps", "6", "--dtype", "float64",
                        "--out", tmp_path / "b", "--flows", "gradient", "--flows", "central",
                        *flow)
    assert code == 0, out
    a, b = ((tmp_path / d / "flows.csv").read_text() for d in "ab")
    assert a == b and a.count("\n") > 6


def test_flow_validates_the_run_options_as_run_does(tmp_path):
    code, out = _invoke("flow", "--dataset", "digits", "--depth", "-1", "--out", tmp_path)
    assert code == 2 and "depth" in _one_line(out)
    code, out = _invoke("flow", "--objective", "theory-example", "--dataset", "digits",
                        "--out", tmp_path / "o")
    assert code == 2 and "--dataset" in _one_line(out)


# ------------------------------------------------------------------ run directories
def _monitor_dir(out):
    model = nn.Linear(3, 1).double()
    X, Y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    from eoskit.monitor import Monitor

    with Monitor(model, F.mse_loss, (X, Y), every=1, neigs=1, out=out) as mon:
        mon.step()
    return out


def test_run_resume_on_a_monitor_directory_says_what_it_is(tmp_path):
    run = _monitor_dir(tmp_path / "m")
    code, out = _invoke("run", "--resume", run)
    line = _one_line(out)
    assert code == 2 and "holds an eoskit Monitor run" in line and "not continued" in line


def test_run_out_on_a_flows_directory_names_eoskit_flow(tmp_path):
    code, out = _invoke("flow", "--objective", "theory-example", "--lr", "0.5", "--steps", "5",
                        "--out", tmp_path / "f")
    assert code == 0, out
    code, out = _invoke("run", *TINY, "--out", tmp_path / "f")
    line = _one_line(out)
    assert code == 2 and f"eoskit flow --resume {tmp_path / 'f'}" in line
    assert "eoskit run --resume" not in line


def test_a_bad_step_cell_is_named_with_its_file_and_line(tmp_path):
    code, out = _invoke("run", *TINY, "--out", tmp_path / "r")
    assert code == 0, out
    path = tmp_path / "r" / "metrics.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = "two" + lines[2][1:]
    path.write_text("".join(lines))
    with pytest.raises(ValueError, match=rf"{path}: line 3: step 'two' is not a whole number"):
        store.read_rows(path)


# ------------------------------------------------------------------ the Monitor, objectives
def test_a_model_without_parameters_is_one_clear_error():
    from eoskit.monitor import Monitor

    class Crop(nn.Module):
        def forward(self, x):
            return x[:, :1]

    X, Y = torch.randn(8, 3), torch.randn(8, 1)
    with pytest.raises(ValueError, match="Crop has no parameters"):
        Monitor(Crop(), F.mse_loss, (X, Y))


def test_a_nan_loss_in_the_monitor_is_one_clear_error():
    from eoskit.monitor import Monitor

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    X, Y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    for neigs in (1, 3):  # Lanczos, then LOBPCG, failed inside torch and scipy
        with Monitor(model, F.mse_loss, (X, Y), every=1, neigs=neigs) as mon:
            mon.step()
            with torch.no_grad():
                model[0].weight[0, 0] = float("nan")
            with pytest.raises(ValueError, match="the loss is nan at step"):
                mon.step()
        with torch.no_grad():
            model[0].weight[0, 0] = 0.1


def test_regression_targets_get_no_accuracy():
    from eoskit.objective import ModelObjective

    torch.manual_seed(0)
    X = torch.randn(10, 3, dtype=torch.float64)
    for width in (1, 2):
        model = nn.Linear(3, width).double()
        obj = ModelObjective(model, "mse", X, torch.randn(10, width, dtype=torch.float64))
        assert obj.loss_and_accuracy(obj.x0())[1] is None, width
    onehot = F.one_hot(torch.arange(10) % 3, 3).double()
    obj = ModelObjective(nn.Linear(3, 3).double(), "mse", X, onehot)
    assert obj.loss_and_accuracy(obj.x0())[1] is not None  # class labels keep theirs


def test_a_lightning_module_without_forward_is_one_clear_error():
    pl = pytest.importorskip("lightning.pytorch")
    from eoskit.integrations.lightning import SharpnessCallback

    X, Y = torch.randn(8, 3), torch.randn(8, 1)

    class StepOnly(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(3, 1)
            self.loss_fn = F.mse_loss

        def training_step(self, batch, _):
            x, y = batch
            return F.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=8)
    trainer = pl.Trainer(max_steps=1, callbacks=[SharpnessCallback((X, Y), every_n_steps=1)],
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    with pytest.raises(ValueError, match="StepOnly defines no forward: add def forward"):
        trainer.fit(StepOnly(), loader)



def test_bench_list_options_repeated_and_comma_separated_alike():
    for nproc in (["--nproc", "1", "--nproc", "x"], ["--nproc", "1,x"]):
        code, out = _invoke("bench", "scaling", *nproc)
        assert code == 2 and "'1,x'" in _one_line(out), nproc
    code, out = _invoke("bench", "scaling", "--nproc", "1", "--nproc", "2", "--settings",
                        "demo", "--settings", "huge")
    assert code == 2 and "unknown setting(s) ['huge']" in _one_line(out)
    # bench monitor: its list options too (checked before any model is built)
    for opts in (["--settings", "gpt-small", "--settings", "huge"],
                 ["--settings", "gpt-small,huge"]):
        code, out = _invoke("bench", "monitor", *opts)
        assert code == 2 and "['huge']" in _one_line(out), opts
    code, out = _invoke("bench", "monitor", "--every", "10", "--every", "0")
    assert code == 2 and "at least 1, got [10, 0]" in _one_line(out)
    code, out = _invoke("bench", "monitor", "--hvp-method", "fdd")
    assert code == 2 and "--hvp-method must be one of" in _one_line(out) and "'fdd'" in (
        _one_line(out))
    code, out = _invoke("bench", "monitor", "--image-dtype", "float16")  # its range overflows
    assert code == 2 and "bfloat16 or float32, got 'float16'" in _one_line(out)
    for tol in ("0", "1.5"):
        code, out = _invoke("bench", "monitor", "--tol", tol)
        assert code == 2 and f"--tol must be between 0 and 1, got {float(tol)}" in _one_line(out)
    code, out = _invoke("bench", "monitor", "--mode", "lanczos")
    assert code == 2 and "--mode must be auto, shared or lean, got 'lanczos'" in _one_line(out)
    code, out = _invoke("bench", "monitor", "--mode", "lean", "--image-dtype", "bfloat16")
    assert code == 2 and "not with --mode lean" in _one_line(out)
    # the lean tracker's two searches take a product each: caught before any model is built
    code, out = _invoke("bench", "monitor", "--optimizers", "adamw", "--max-warm-products", "1")
    assert code == 2 and "--max-warm-products 1 under AdamW needs --mode shared" in (
        _one_line(out))
