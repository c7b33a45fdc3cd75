"""The training loop and the run-directory contract, on tiny float64 runs."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from eoskit import store
from eoskit.training.config import RunConfig
from eoskit.training.loop import train
from eoskit.training.run_problem import build_problem

TINY = dict(dataset="digits", n_train=48, n_test=24, width=6, depth=1, dtype="float64",
            steps=12, lr=0.5, checkpoint_every=0, eval_every=4)


def _run(tmp_path, **kw):
    cfg = RunConfig(**{**TINY, **kw})
    return cfg, train(cfg, tmp_path, progress=False)


@pytest.mark.parametrize("model,loss", [("fc-tanh", "mse"), ("fc-tanh", "ce"),
                                        ("cnn-tanh", "mse"), ("cnn-tanh", "ce")])
def test_in_run_eigenvalues_match_dense_hessian(tmp_path, model, loss):
    kw = dict(model=model, loss=loss, neigs=3, eig_tol=1e-10, steps=1,
              width=2 if model.startswith("cnn") else 6)
    cfg, _ = _run(tmp_path, **kw)
    row = store.read_csv(tmp_path / "metrics.csv")[0]
    problem = build_problem(cfg)
    dense = torch.linalg.eigvalsh(problem.train.hessian(problem.x0)).flip(0).numpy()[:3]
    got = np.array([float(row[f"eig_{i}"]) for i in (1, 2, 3)])
    assert np.max(np.abs(got - dense) / np.abs(dense)) <= 1e-8
    assert float(row["sharpness"]) == got[0]


def test_run_directory_contract(tmp_path):
    cfg, summary = _run(tmp_path)
    for name in ("config.json", "metrics.csv", "summary.json", "params_final.pt",
                 "plots/loss.png", "plots/sharpness.png", "plots/eff_curvature.png"):
        assert (tmp_path / name).exists(), name
    rows = store.read_csv(tmp_path / "metrics.csv")
    required = ["step", "loss", "accuracy", "test_loss", "test_accuracy", "grad_norm",
                "step_norm", "eff_curvature", "sharpness", "threshold", "hvps", "wall_time"]
    assert set(required) <= set(rows[0])
    assert [int(r["step"]) for r in rows] == list(range(cfg.steps))
    assert rows[1]["test_loss"] == "" and rows[4]["test_loss"] != ""  # eval_every=4
    conf = json.loads((tmp_path / "config.json").read_text())
    assert conf["config"]["lr"] == cfg.lr and conf["torch_version"] == torch.__version__
    for key in ("status", "steps", "final_loss", "threshold", "initial_sharpness",
                "eos_onset_step", "sharpness_after_onset_median", "sharpness_after_onset_max",
                "eff_curvature_weighted_mean"):
        assert key in summary
    assert summary["status"] == "completed" and summary["threshold"] == 2 / cfg.lr


def test_effective_curvature_and_forcing_identity(tmp_path):
    cfg, summary = _run(tmp_path, steps=60, sharpness_every=0)
    rows = store.read_csv(tmp_path / "metrics.csv")
    loss = np.array([float(r["loss"]) for r in rows])
    s2 = np.array([float(r["step_norm"]) ** 2 for r in rows])
    kappa = np.array([float(r["eff_curvature"]) for r in rows])
    # κ_t = 2/η + 2 (L_{t+1} − L_t)/|s_t|² on every interior row
    assert np.allclose(kappa[:-1], 2 / cfg.lr + 2 * np.diff(loss) / s2[:-1], rtol=1e-12)
    # telescoping over the whole run; L_T is the loss after the last step
    final = float(build_problem(cfg).train.value(torch.load(tmp_path / "params_final.pt")))
    lhs = np.sum(s2 * (2 / cfg.lr - kappa)) / s2.sum()
    rhs = 2 * (loss[0] - final) / s2.sum()
    assert abs(lhs - rhs) <= 1e-10 * abs(rhs)
    assert summary["forcing_bookkeeping_error"] <= 1e-10
    assert summary["eff_curvature_weighted_mean"] == pytest.approx(
        np.sum(s2 * kappa) / s2.sum(), rel=1e-10)


@pytest.mark.parametrize("optimizer,beta,batch", [("polyak", 0.5, None), ("nesterov", 0.5, None),
                                                  ("sgd", 0.0, 16)])
def test_other_optimisers_record_their_threshold(tmp_path, optimizer, beta, batch):
    cfg, summary = _run(tmp_path, optimizer=optimizer, beta=beta, batch_size=batch, lr=0.2)
    rows = store.read_csv(tmp_path / "metrics.csv")
    assert float(rows[0]["threshold"]) == pytest.approx(cfg.threshold)
    assert summary["status"] == "completed"
    assert all(r["eff_curvature"] != "" for r in rows)
    if optimizer == "sgd":
        assert rows[0]["full_loss"] != ""


def test_onset_and_plateau_summary():
    from eoskit.metrics.summary import summarize

    rows = [{"step": str(t), "loss": "1", "sharpness": str(v)}
            for t, v in enumerate([1.0, 5.0, 9.4, 9.6, 10.2, 9.9])]
    s = summarize(rows, 10.0, "completed")
    assert s["eos_onset_step"] == 3  # first ≥ 0.95 × threshold
    assert s["sharpness_after_onset_median"] == pytest.approx(9.9 / 2 + 9.6 / 4 + 10.2 / 4,
                                                              rel=0.02)
    assert s["sharpness_after_onset_max"] == 10.2
    assert s["initial_sharpness"] == 1.0


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "eoskit", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def _cli_inproc(*args):
    from typer.testing import CliRunner

    from eoskit.cli import _register, app

    _register()
    return CliRunner().invoke(app, list(args))


def test_cli_diverged_exit_3_keeps_metrics(tmp_path):
    r = _cli("run", "--dataset", "digits", "--n-train", "32", "--n-test", "0", "--width", "4",
             "--lr", "400", "--steps", "50", "--dtype", "float64", "--out", str(tmp_path))
    assert r.returncode == 3, r.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert len(store.read_csv(tmp_path / "metrics.csv")) >= 1


@pytest.mark.parametrize("args,needle", [
    (["--lr", "-0.1"], "lr"),
    (["--lr", "0"], "lr"),
    (["--model", "resnet-50"], "unknown model 'resnet-50'"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--neigs", "100000"], "exceeds the number of parameters"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent"], "/nonexistent"),
    (["--optimizer", "sgd"], "batch_size"),
    (["--classes", "a,b"], "--classes"),
    (["--dtype", "float16"], "dtype"),
])
def test_cli_bad_input_exit_2_one_message(tmp_path, args, needle):
    r = _cli_inproc("run", "--dataset", "digits", "--n-train", "32", "--steps", "2",
                    "--out", str(tmp_path / "r"), *args)
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_cli_bad_input_subprocess_has_no_traceback(tmp_path):
    r = _cli("run", "--lr", "-1", "--out", str(tmp_path))
    assert r.returncode == 2 and "lr" in r.stderr and "Traceback" not in r.stderr


def test_diagnostics_written_along_a_float64_run(tmp_path):
    cfg, summary = _run(tmp_path, steps=9, diagnose_every=4, model="fc-tanh")
    rows = store.read_csv(tmp_path / "diagnostics.csv")
    assert [int(r["step"]) for r in rows] == [0, 4, 8]
    for r in rows:
        assert float(r["recurrence_residual"]) <= 1e-10
        assert float(r["loss_change_residual"]) <= 1e-10
        assert float(r["kappa_mismatch"]) <= 1e-10
        assert 0 <= float(r["tau_bar"]) <= 1 and 0 <= float(r["tau_tilde"]) <= 1
    assert summary["diagnostics"]["diagnosed_steps"] == 3
    assert (tmp_path / "plots" / "diag_curvatures.png").exists()


def test_the_progress_bar_writes_to_stderr_and_keeps_stdout_for_results(capfd):
    from eoskit.training.progress import progress_bar

    with progress_bar(4, 0, True, "flows") as update:
        update(2, 0.5, 3.0)
        update(4, 0.25, None)
    out, err = capfd.readouterr()
    assert out == "" and "flows" in err and "4/4" in err and "sharpness 3" in err
