"""Resume: a run killed (SIGKILL) at random points and resumed equals an uninterrupted run.

Both the reference and the killed runs are ``eoskit run`` subprocesses (same
environment, so the same thread counts and float64 arithmetic); rows are
compared on every column except ``wall_time``.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings

import pytest

from eoskit import store
from eoskit.store import CheckpointWarning
from eoskit.training.config import RunConfig
from eoskit.training.loop import train

# diagnose_every=19: step 19's diagnostics are pending in the checkpoint at step 20
BASE = ["--dataset", "digits", "--n-train", "48", "--n-test", "16", "--width", "8",
        "--depth", "1", "--dtype", "float64", "--steps", "40", "--checkpoint-every", "5",
        "--sharpness-every", "2", "--eval-every", "4", "--diagnose-every", "19"]
CASES = {
    "gd": ["--lr", "0.5"],
    "sgd": ["--optimizer", "sgd", "--batch-size", "16", "--lr", "0.2"],
}


def _eoskit(*args):
    return [sys.executable, "-m", "eoskit", *args]


def _rows(path, drop=("wall_time",)):
    return [{k: v for k, v in r.items() if k not in drop} for r in store.read_csv(path)]


def _same_rows(a, b, name="metrics.csv"):
    ra, rb = _rows(a / name), _rows(b / name)
    assert len(ra) == len(rb), (name, len(ra), len(rb))
    for i, (x, y) in enumerate(zip(ra, rb, strict=True)):
        assert x == y, (name, i, {k: (x[k], y[k]) for k in x if x[k] != y[k]})


def _kill_when(cmd, run_dir, rows_wanted, timeout=120.0):
    """Start ``cmd``; SIGKILL it once metrics.csv has ``rows_wanted`` rows. Returns (rc, rows)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics, n, t0 = run_dir / "metrics.csv", 0, time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < timeout:
        n = len(store.read_csv(metrics)) if metrics.exists() else 0
        if n >= rows_wanted:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait()
    proc.stderr.close()
    return proc.returncode, n


@pytest.mark.parametrize("case", list(CASES))
def test_sigkill_at_random_points_then_resume_equals_uninterrupted(tmp_path, case):
    args = BASE + CASES[case]
    ref, run = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(_eoskit("run", *args, "--out", str(ref)), check=True, capture_output=True,
                   timeout=300)
    rng = random.Random(f"resume-{case}")  # seeded: the same kill points every time
    targets = sorted(rng.sample(range(2, 38), 3 if case == "gd" else 2))
    kills = []
    for i, k in enumerate(targets):
        cmd = _eoskit("run", *args, "--out", str(run)) if i == 0 else _eoskit(
            "run", "--resume", str(run))
        rc, n = _kill_when(cmd, run, k)
        kills.append((k, n, rc))
        assert store.read_json(run / "summary.json")["status"] != "completed" or rc == 0
    assert any(rc == -signal.SIGKILL for _, _, rc in kills), kills
    r = subprocess.run(_eoskit("run", "--resume", str(run)), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    _same_rows(ref, run)
    _same_rows(ref, run, "diagnostics.csv")
    s_ref, s_run = (store.read_json(d / "summary.json") for d in (ref, run))
    for key in ("status", "steps", "final_loss", "eos_onset_step", "forcing_weighted_gap",
                "hvps_total", "sharpness_after_onset_median"):
        assert s_ref[key] == s_run[key], key
    print(f"{case}: killed at rows (target, seen, rc) {kills}")


TINY = dict(dataset="digits", n_train=48, n_test=0, width=6, depth=1, dtype="float64",
            steps=20, checkpoint_every=5, keep_checkpoints=3, optimizer="polyak", beta=0.5,
            lr=0.2, eval_every=0)


def _interrupted_copy(src, dst):
    """A completed run dir made to look killed near its end (summary 'running')."""
    shutil.copytree(src, dst)
    store.write_json(dst / "summary.json", {"status": "running", "steps": 0})
    (dst / "params_final.pt").unlink()
    return dst


def test_corrupted_and_truncated_checkpoints_are_reported_and_skipped(tmp_path):
    ref = tmp_path / "ref"
    train(RunConfig(**TINY), ref, progress=False)
    ckpts = sorted((ref / "checkpoints").glob("ckpt-*.pt"))
    assert [p.name for p in ckpts] == [f"ckpt-{s:09d}.pt" for s in (10, 15, 20)]

    run = _interrupted_copy(ref, tmp_path / "run")
    newest, middle = sorted((run / "checkpoints").glob("ckpt-*.pt"))[::-1][:2]
    data = bytearray(newest.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 8):
        data[i] ^= 0xFF  # flip bytes
    newest.write_bytes(bytes(data))
    middle.write_bytes(middle.read_bytes()[: len(middle.read_bytes()) // 3])  # truncate
    with pytest.warns(CheckpointWarning) as rec:
        summary = train(None, run, resume=True, progress=False)
    msgs = [str(w.message) for w in rec]
    assert any(newest.name in m and "checksum mismatch" in m for m in msgs), msgs
    assert any(middle.name in m and "truncated" in m for m in msgs), msgs
    assert summary["status"] == "completed"
    _same_rows(ref, run)  # resumed from ckpt 10 (polyak: momentum buffer restored)

    # no checksum records at all: every checkpoint is refused and the run starts over
    run2 = _interrupted_copy(ref, tmp_path / "run2")
    for p in (run2 / "checkpoints").glob("ckpt-*.json"):
        p.unlink()
    with pytest.warns(CheckpointWarning, match="no checksum record") as rec:
        train(None, run2, resume=True, progress=False)
    assert "starting over" in str(rec[-1].message)
    _same_rows(ref, run2)


def test_resume_of_completed_run_is_a_noop(tmp_path):
    from typer.testing import CliRunner

    from eoskit.cli import _register, app

    run = tmp_path / "run"
    train(RunConfig(**{**TINY, "steps": 5}), run, progress=False)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}
    _register()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no checkpoint is even looked at
        r = CliRunner().invoke(app, ["run", "--resume", str(run)])
    assert r.exit_code == 0, r.output
    assert "completed" in r.output
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}
    assert after == before


def test_resume_refuses_a_different_configuration(tmp_path):
    run = tmp_path / "run"
    cfg = RunConfig(**{**TINY, "steps": 5})
    train(cfg, run, progress=False)
    with pytest.raises(ValueError, match=r"different configuration \(lr\)"):
        train(cfg.model_copy(update={"lr": 0.3}), run, resume=True, progress=False)


def test_checkpoint_record_problems_are_named(tmp_path):
    folder = tmp_path / "ck"
    store.save_checkpoint(folder, 1, {"step": 1})
    store.save_checkpoint(folder, 2, {"step": 2})
    (folder / "ckpt-000000002.json").write_text("{not json")
    with pytest.warns(CheckpointWarning, match=r"ckpt-000000002.pt is unusable \(checksum "
                      r"record ckpt-000000002.json unreadable"):
        state, path = store.load_latest_checkpoint(folder)
    assert state["step"] == 1 and path.name == "ckpt-000000001.pt"
    assert os.path.exists(folder / "ckpt-000000001.json")
