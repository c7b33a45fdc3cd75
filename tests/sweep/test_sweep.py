"""Sweeps: grid expansion, validation before anything starts, faults, resume, local vs Ray."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from eoskit import store
from eoskit.sweep import INDEX_COLUMNS, SweepError, parse_sweep, point_name, run_sweep
from tests.cli_runner import invoke

# (0.5, 1) completes; (50, 1) diverges; neigs=100000 exceeds the parameter count, which only
# shows once the model is built: those two runs raise inside the worker and are 'failed'.
GRID_TOML = """[run]
dataset = "digits"
n_train = 48
n_test = 0
width = 8
depth = 1
dtype = "float64"
steps = 60
sharpness_every = 2
eval_every = 0
checkpoint_every = 5

[grid]
lr = [0.5, 50.0]
neigs = [1, 100000]
"""
NAMES = ["lr=0.5_neigs=1", "lr=0.5_neigs=100000", "lr=50.0_neigs=1", "lr=50.0_neigs=100000"]
NEIGS_ERROR = "ValueError: neigs=100000 exceeds the number of parameters (610)"



def _index(path):
    return store.read_csv(path / "runs.csv")


def _strip_paths(rows):
    return [{k: v for k, v in r.items() if k != "run_dir"} for r in rows]


def _metrics(run_dir):
    return [{k: v for k, v in r.items() if k != "wall_time"}
            for r in store.read_csv(run_dir / "metrics.csv")]


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "sweep.toml"
    path.write_text(GRID_TOML)
    return path


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory, grid_file):
    out = tmp_path_factory.mktemp("local") / "sweep"
    r = invoke("sweep", "--config", grid_file, "--out", out, "--workers", "2")
    assert r.exit_code == 1, r.output  # failed runs make the exit status 1
    return out


def test_grid_names_and_order():
    spec = parse_sweep({"run": {"dataset": "digits"},
                        "grid": {"lr": [0.05, 0.1], "seed": [1, 0], "classes": [[0, 1]]}})
    assert [p.name for p in spec.points] == [
        "lr=0.05_seed=1_classes=0-1", "lr=0.05_seed=0_classes=0-1",
        "lr=0.1_seed=1_classes=0-1", "lr=0.1_seed=0_classes=0-1"]
    assert spec.points[2].config.lr == 0.1 and spec.points[2].config.classes == (0, 1)
    assert point_name({"dtype": "float64", "stop_loss": None, "deterministic": True}) == \
        "dtype=float64_stop_loss=none_deterministic=true"


def test_local_sweep_records_completed_diverged_failed(local_sweep):
    rows = _index(local_sweep)
    assert list(rows[0]) == ["lr", "neigs", *INDEX_COLUMNS]
    assert [os.path.basename(r["run_dir"]) for r in rows] == NAMES  # grid order
    assert [r["status"] for r in rows] == ["completed", "failed", "diverged", "failed"]
    assert rows[1]["error"] == rows[3]["error"] == NEIGS_ERROR
    assert rows[0]["error"] == rows[2]["error"] == ""
    assert float(rows[0]["final_loss"]) > 0 and rows[0]["eos_onset_step"] != ""
    assert "Traceback" in (local_sweep / NAMES[1] / "error.txt").read_text()
    for f in ("sweep.json", "sweep.toml", "plots/sharpness.png", "plots/plateau.png"):
        assert (local_sweep / f).exists(), f
    assert store.read_json(local_sweep / NAMES[0] / "summary.json")["status"] == "completed"


def test_sweep_resume_skips_finished_and_resumes_the_rest(local_sweep, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(local_sweep, out)
    done = out / NAMES[0]
    store.write_json(done / "summary.json", {"status": "interrupted", "steps": 0})
    for step in (55, 60):  # resume from ckpt-50
        (done / "checkpoints" / f"ckpt-{step:09d}.pt").unlink()
    diverged = out / NAMES[2]
    stamp = (diverged / "summary.json").stat().st_mtime_ns
    r = invoke("sweep", "--resume", "--out", out, "--workers", "2")
    assert r.exit_code == 1, r.output
    assert _strip_paths(_index(out)) == _strip_paths(_index(local_sweep))
    assert _metrics(done) == _metrics(local_sweep / NAMES[0])
    assert store.read_json(done / "worker.json")["attempts"] == 2
    assert store.read_json(diverged / "worker.json")["attempts"] == 1  # skipped
    assert (diverged / "summary.json").stat().st_mtime_ns == stamp
    assert store.read_json(out / NAMES[1] / "worker.json")["attempts"] == 2  # failed: re-run
    assert all(r["run_dir"].startswith(str(out.resolve())) for r in _index(out))


def test_ray_sweep_equals_local_and_retries_a_killed_worker(local_sweep, grid_file, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    proc = subprocess.Popen([sys.executable, "-m", "eoskit", "sweep", "--config", str(grid_file),
                             "--out", str(out), "--backend", "ray", "--workers", "2", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim, killed, t0 = out / NAMES[0], None, time.monotonic()
    while proc.poll() is None and killed is None and time.monotonic() - t0 < 240:
        m = victim / "metrics.csv"
        if m.exists() and len(store.read_csv(m)) >= 12 and (victim / "worker.json").exists():
            pid = store.read_json(victim / "worker.json")["pid"]
            os.kill(pid, signal.SIGKILL)  # the Ray worker process running this task
            killed = pid
        time.sleep(0.003)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr  # the two failed runs
    assert killed is not None, "the run finished before it could be killed"
    assert store.read_json(victim / "worker.json")["attempts"] == 2  # Ray retried it ...
    assert _metrics(victim) == _metrics(local_sweep / NAMES[0])  # ... and it resumed exactly
    assert _strip_paths(_index(out)) == _strip_paths(_index(local_sweep))


def test_sweep_overwrite_replaces_the_sweep_and_keeps_what_eoskit_did_not_write(tmp_path):
    run = {"dataset": "digits", "n_train": 32, "n_test": 0, "width": 4, "steps": 3,
           "dtype": "float64", "checkpoint_every": 0}
    out = tmp_path / "s"
    run_sweep(parse_sweep({"run": run, "grid": {"lr": [0.1, 0.2]}}), out, backend="inline")
    (out / "lr=0.1" / "notes.txt").write_text("mine")
    (out / "mine.txt").write_text("mine")
    new = parse_sweep({"run": run, "grid": {"lr": [0.3]}})
    with pytest.raises(SweepError, match="already holds a sweep"):
        run_sweep(new, out, backend="inline")
    assert (out / "lr=0.2" / "metrics.csv").exists()  # a refused start removes nothing
    rows = run_sweep(new, out, backend="inline", overwrite=True)
    assert [r["status"] for r in rows] == ["completed"]
    assert [r["lr"] for r in _index(out)] == ["0.3"]  # the index holds the new grid only
    assert store.read_json(out / "sweep.json")["grid"] == {"lr": [0.3]}
    assert not (out / "lr=0.2").exists()  # an old point's folder goes with its run ...
    assert [p.name for p in (out / "lr=0.1").iterdir()] == ["notes.txt"]  # ... unless not empty
    assert (out / "mine.txt").read_text() == "mine"
    # the command line's --overwrite reaches the runner
    toml = tmp_path / "again.toml"
    toml.write_text('[run]\ndataset = "digits"\nn_train = 32\nn_test = 0\nwidth = 4\n'
                    'steps = 3\ndtype = "float64"\ncheckpoint_every = 0\n[grid]\nlr = [0.4]\n')
    r = invoke("sweep", "--config", toml, "--out", out, "--overwrite", "--workers", "1",
               "--quiet")
    assert r.exit_code == 0, r.output
    assert [r["lr"] for r in _index(out)] == ["0.4"] and not (out / "lr=0.3").exists()
    # a sweep whose record cannot be read is not guessed at
    store.write_json(out / "sweep.json", {"run": {}})
    with pytest.raises(SweepError, match="cannot tell which runs belong to the sweep"):
        run_sweep(new, out, backend="inline", overwrite=True)
    assert (out / "lr=0.4" / "metrics.csv").exists()


def test_sweep_runs_inline_for_debugging(tmp_path):
    spec = parse_sweep({"run": {"dataset": "digits", "n_train": 32, "n_test": 0, "width": 4,
                                "steps": 3, "dtype": "float64", "checkpoint_every": 0},
                        "grid": {"lr": [0.1]}})
    rows = run_sweep(spec, tmp_path / "s", backend="inline")
    assert [r["status"] for r in rows] == ["completed"]


# ---------------------------------------------------------------- bad input: exit 2, one message
RUN = '[run]\ndataset = "digits"\n'
BAD_FILES = [
    ("type", RUN + 'steps = "many"\n[grid]\nlr = [0.1]\n',
     "{p}: invalid configuration at grid point lr=0.1: steps (from [run]): Input should be a "
     "valid integer, unable to parse string as an integer"),
    ("negative_lr", RUN + "[grid]\nlr = [0.1, -0.05]\n",
     "{p}: invalid configuration at grid point lr=-0.05: lr (from [grid]): Input should be "
     "greater than 0"),
    ("zero_lr", RUN + "lr = 0\n[grid]\nseed = [0, 1]\n",
     "{p}: invalid configuration at grid point seed=0: lr (from [run]): Input should be greater "
     "than 0 (and 1 more grid point)"),
    ("unknown_run_key", '[run]\ndatset = "digits"\n[grid]\nlr = [0.1]\n',
     "{p}: unknown option 'datset' in [run]; did you mean 'dataset'?"),
    ("unknown_grid_key", RUN + "[grid]\nlearning_rate = [0.1]\n",
     "{p}: unknown option 'learning_rate' in [grid]"),
    ("unknown_table", RUN + "[grids]\nlr = [0.1]\n",
     "{p}: unknown table 'grids' (a sweep file has a [run] table and a [grid] table)"),
    ("top_level_key", "lr = 0.1\n[grid]\nseed = [0]\n",
     "{p}: unknown top-level key 'lr'; did you mean [grid] lr or [run] lr?"),
    ("no_grid", RUN,
     "{p}: no [grid] table; a sweep needs at least one grid key whose value is a list, "
     "e.g. lr = [0.05, 0.1]"),
    ("empty_grid", RUN + "[grid]\n",
     "{p}: the [grid] table is empty; give at least one key whose value is a list, "
     "e.g. lr = [0.05, 0.1]"),
    ("duplicate_grid_key", RUN + "[grid]\nlr = [0.1]\nseed = [0]\nlr = [0.2]\n",
     "sweep config {p}: not valid TOML: Cannot overwrite a value (at line 6, column 11)"),
    ("duplicate_run_key", RUN + 'dataset = "mnist-5k"\n[grid]\nlr = [0.1]\n',
     "sweep config {p}: not valid TOML: Cannot overwrite a value (at line 3, column 21)"),
    ("duplicate_table", "[grid]\nlr = [0.1]\n[run]\nsteps = 3\n[grid]\nseed = [0]\n",
     "sweep config {p}: not valid TOML: Cannot declare ('grid',) twice (at line 5, column 6)"),
    ("grid_key_in_run", RUN + "lr = 0.1\n[grid]\nlr = [0.1, 0.2]\n",
     "{p}: 'lr' is in both [run] and [grid]; keep it in one"),
    ("grid_not_a_list", RUN + "[grid]\nlr = 0.1\n",
     "{p}: [grid] lr must be a non-empty list, got 0.1 (write lr = [0.1] for one value)"),
    ("grid_empty_list", RUN + "[grid]\nlr = []\n",
     "{p}: [grid] lr is an empty list; give at least one value"),
    ("grid_repeated_value", RUN + "[grid]\nlr = [0.1, 0.1]\n",
     "{p}: [grid] lr repeats the value 0.1"),
    ("missing_data_dir", '[run]\ndataset = "cifar10"\ndata_dir = "/nonexistent/cifar"\n'
     "[grid]\nlr = [0.1]\n",
     "{p}: invalid configuration at grid point lr=0.1: data_dir: /nonexistent/cifar does not "
     "exist"),
    ("no_data_dir", '[run]\ndataset = "mnist"\n[grid]\nlr = [0.1]\n',
     "{p}: invalid configuration at grid point lr=0.1: data_dir: dataset 'mnist' is read from "
     "files; give data_dir"),
    ("unknown_model", RUN + '[grid]\nmodel = ["fc-tanh", "resnet-50"]\n',
     "{p}: invalid configuration at grid point model=resnet-50: model (from [grid]): unknown "
     "model 'resnet-50'; choose one of fc-tanh, fc-relu, fc-elu, fc-gelu, fc-softplus, "
     "cnn-relu, cnn-tanh, transformer, transformer-causal, resnet, resnet-relu, resnet-tanh, "
     "or give FILE.py:NAME or package.module:NAME"),
    ("sgd_without_batch", RUN + 'optimizer = "sgd"\n[grid]\nlr = [0.1]\n',
     "{p}: invalid configuration at grid point lr=0.1: optimizer 'sgd' needs batch_size"),
    ("bad_toml", '[run]\ndataset = "digits\n[grid]\nlr = [0.1]\n',
     "sweep config {p}: not valid TOML: Illegal character '\\n' (at line 2, column 18)"),
]


@pytest.mark.parametrize("name,text,message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_sweep_file_exit_2_before_anything_starts(tmp_path, name, text, message):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    out = tmp_path / "out"
    r = invoke("sweep", "--config", path, "--out", out)
    assert r.exit_code == 2, r.output
    assert r.stderr.strip() == "eoskit: error: " + message.format(p=path)
    assert not out.exists()


def test_bad_sweep_options_exit_2(tmp_path, local_sweep, grid_file):
    good = tmp_path / "ok.toml"
    good.write_text(RUN + "steps = 2\n[grid]\nlr = [0.1]\n")
    other = tmp_path / "other.toml"
    other.write_text(GRID_TOML.replace("steps = 60", "steps = 61"))
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--config", good, "--out", tmp_path / "a", "--backend", "slurm"],
         "--backend must be local or ray, got 'slurm'"),
        (["--config", good, "--out", tmp_path / "a", "--workers", "0"],
         "--workers must be at least 1, got 0"),
        (["--config", good, "--out", tmp_path / "a", "--ray-address", "auto"],
         "--ray-address needs --backend ray"),
        (["--config", good], "--out DIR is required"),
        (["--out", tmp_path / "a"], "--config FILE is required (or --resume with --out DIR)"),
        (["--config", tmp_path / "nope.toml", "--out", tmp_path / "a"],
         f"sweep config not found: {tmp_path / 'nope.toml'}"),
        (["--config", grid_file, "--out", local_sweep],
         f"{local_sweep} already holds a sweep; pass --resume to continue it, --overwrite to "
         "replace it, or choose another --out"),
        (["--resume", "--overwrite", "--out", local_sweep],
         "--resume continues the sweep in --out; --overwrite replaces it"),
        (["--resume", "--out", empty],
         f"nothing to resume: {empty} has no sweep.json (pass --config to start)"),
        (["--resume", "--config", other, "--out", local_sweep],
         f"the sweep in {local_sweep} was made from a different [run]/[grid]; resume it without "
         "--config, or choose another --out"),
    ]
    for args, message in cases:
        r = invoke("sweep", *args)
        assert r.exit_code == 2, (args, r.output)
        assert r.stderr.strip() == f"eoskit: error: {message}", args
    assert not (tmp_path / "a").exists()
