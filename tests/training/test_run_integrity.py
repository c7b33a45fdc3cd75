"""A run directory has one owner and one history; every failure is a clear end.

One test per way a user can lose or mix a run's data (issue 11): runs are
tiny float64 ``digits`` runs, through the CLI in-process where no second
process or real signal is needed.
"""

import builtins
import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings

import pytest
import torch

from eoskit import store
from eoskit.training.config import RunConfig
from eoskit.training.loop import train
from tests.cli_runner import invoke, one_line

TINY = dict(dataset="digits", n_train=64, n_test=0, width=8, depth=1, dtype="float64",
            steps=12, lr=0.05, checkpoint_every=4, keep_checkpoints=5, eval_every=0)
ARGS = ["--dataset", "digits", "--n-train", "64", "--n-test", "0", "--width", "8",
        "--depth", "1", "--dtype", "float64", "--checkpoint-every", "4"]




def _rows(path):
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in store.read_csv(path)]


def _temp_files(folder):
    return [p for p in folder.rglob("*") if ".tmp-" in p.name]


def _killed_copy(src, dst):
    """A finished run directory made to look killed before its end."""
    shutil.copytree(src, dst)
    store.write_json(dst / "summary.json", {"status": "running", "steps": 0})
    (dst / "params_final.pt").unlink()
    return dst


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: checkpoints at 4, 8, 12, diagnostics every 5 steps."""
    out = tmp_path_factory.mktemp("ref") / "ref"
    train(RunConfig(**TINY, diagnose_every=5), out, progress=False)
    return out


# ---------------------------------------------------------------- one owner
def test_out_on_a_run_refuses_and_overwrite_replaces_it(tmp_path, reference):
    run = _killed_copy(reference, tmp_path / "run")
    before = (run / "metrics.csv").read_bytes()
    r = invoke("run", *ARGS, "--steps", "3", "--out", run)
    assert r.exit_code == 2
    line = one_line(r)
    assert str(run) in line and "--resume" in line and "--overwrite" in line
    assert (run / "metrics.csv").read_bytes() == before

    r = invoke("run", *ARGS, "--steps", "3", "--checkpoint-every", "0", "--out", run,
             "--overwrite")
    assert r.exit_code == 0, r.stderr
    assert len(store.read_csv(run / "metrics.csv")) == 3
    # the old checkpoints went too: nothing of the old run can be resumed into the new one
    assert not (run / "checkpoints").exists() and not (run / "diagnostics.csv").exists()
    assert store.read_json(run / "config.json")["config"]["steps"] == 3


def test_a_live_lock_holder_is_named(tmp_path, reference):
    run = _killed_copy(reference, tmp_path / "run")
    with store.RunLock(run):  # another open file description: flock refuses it too
        for args in (["--resume", run], [*ARGS, "--out", run, "--overwrite"]):
            r = invoke("run", *args)
            assert r.exit_code == 2
            assert f"PID {os.getpid()}" in one_line(r)
    assert store.read_json(run / "summary.json")["status"] == "running"


def test_a_stale_lock_of_a_killed_process_never_blocks(tmp_path, reference):
    run = _killed_copy(reference, tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); os.write(fd, b'%d' % os.getpid())\n"
        "print('held', flush=True); time.sleep(120)\n"), str(run / ".eoskit.lock")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    holder.stdout.close()
    assert (run / ".eoskit.lock").read_text().strip() == str(holder.pid)  # dead holder's PID
    r = invoke("run", "--resume", run)
    assert r.exit_code == 0, r.stderr
    assert _rows(run / "metrics.csv") == _rows(reference / "metrics.csv")


@pytest.fixture(autouse=True)
def _ctrl_c_raises():
    """SIGINT as Python's KeyboardInterrupt, as in a terminal: a suite started in the
    background (``cmd &``, nohup) inherits SIGINT *ignored*, and then a test's Ctrl-C was
    lost and its 100,000-step run never ended."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def _interrupt_when(path, rows):
    """Ctrl-C this process once ``path`` has ``rows`` rows (a thread watches the file)."""
    def watch():
        while not (path.exists() and len(store.read_csv(path)) >= rows):
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_two_concurrent_resumes(tmp_path):
    run = tmp_path / "run"
    cfg = RunConfig(**{**TINY, "steps": 100_000, "checkpoint_every": 3})
    watcher = _interrupt_when(run / "metrics.csv", 5)
    assert train(cfg, run, progress=False)["status"] == "interrupted"  # a real Ctrl-C
    watcher.join()
    first = subprocess.Popen([sys.executable, "-m", "eoskit", "run", "--resume", str(run)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while (run / ".eoskit.lock").read_text().strip() != str(first.pid):
            if first.poll() is not None:
                pytest.fail(f"the first resume ended: {first.stderr.read()}")
            assert time.monotonic() - t0 < 120, "the first resume never took the lock"
            time.sleep(0.02)
        r = invoke("run", "--resume", run)
        assert r.exit_code == 2
        assert f"PID {first.pid}" in one_line(r)
    finally:
        first.send_signal(signal.SIGTERM)  # a scheduler stopping the job: like Ctrl-C
        _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    assert err.splitlines()[-1].startswith("eoskit: interrupted") and "Traceback" not in err


# ---------------------------------------------------------------- one history
def test_truncated_metrics_and_a_torn_line_are_restored_on_resume(tmp_path, reference, capsys):
    run = _killed_copy(reference, tmp_path / "run")
    lines = (run / "metrics.csv").read_text().splitlines(keepends=True)
    (run / "metrics.csv").write_text("".join(lines[:11]) + "10,0.12")  # 10 rows, a torn line
    diag = (run / "diagnostics.csv").read_text().splitlines(keepends=True)
    (run / "diagnostics.csv").write_text("".join(diag[:2]))  # step 5's row lost
    summary = train(None, run, resume=True, progress=False)
    assert "metrics.csv: restored from the checkpoint" in capsys.readouterr().err
    assert _rows(run / "metrics.csv") == _rows(reference / "metrics.csv")
    assert _rows(run / "diagnostics.csv") == _rows(reference / "diagnostics.csv")
    assert summary["status"] == "completed" and summary["steps"] == TINY["steps"]


def test_checkpoints_without_table_snapshots_resume_the_old_way(tmp_path, reference):
    run = _killed_copy(reference, tmp_path / "run")
    for path in sorted((run / "checkpoints").glob("ckpt-*.pt")):
        state = torch.load(path, weights_only=False)
        del state["record"]  # as written before records existed
        store.save_checkpoint(run / "checkpoints", state["step"], state, keep=5)
    train(None, run, resume=True, progress=False)
    assert _rows(run / "metrics.csv") == _rows(reference / "metrics.csv")
    assert _rows(run / "diagnostics.csv") == _rows(reference / "diagnostics.csv")


def test_edited_config_is_refused_on_resume(tmp_path, reference):
    run = _killed_copy(reference, tmp_path / "run")
    conf = store.read_json(run / "config.json")
    conf["config"]["lr"] = 0.2
    store.write_json(run / "config.json", conf)
    before = (run / "metrics.csv").read_bytes()
    r = invoke("run", "--resume", run)
    assert r.exit_code == 2
    assert "changed: lr)" in one_line(r)
    assert (run / "metrics.csv").read_bytes() == before


# ---------------------------------------------------------------- clear ends
def test_infinite_lr_is_bad_input_and_a_huge_one_diverges(tmp_path):
    r = invoke("run", *ARGS, "--steps", "3", "--lr", "inf", "--out", tmp_path / "inf")
    assert r.exit_code == 2 and "lr" in one_line(r)
    assert not (tmp_path / "inf").exists()
    r = invoke("run", *ARGS, "--steps", "3", "--lr", "1e300", "--out", tmp_path / "huge")
    assert r.exit_code == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert store.read_json(tmp_path / "huge" / "summary.json")["status"] == "diverged"
    assert store.read_json(tmp_path / "huge" / "config.json")["config"]["lr"] == 1e300
    assert len(store.read_csv(tmp_path / "huge" / "metrics.csv")) == 2  # x_1 blew up


def test_non_finite_parameters_mid_run_diverge_before_any_eigensolver(tmp_path, monkeypatch):
    from eoskit.optim import GD

    real_step, calls = GD.step, []

    def step(self, g, x=None):  # step 4 overflows one parameter (as a momentum buffer might)
        s = real_step(self, g, x)
        calls.append(1)
        return s.index_fill(0, torch.tensor([0]), float("nan")) if len(calls) == 5 else s

    monkeypatch.setattr(GD, "step", step)
    r = invoke("run", *ARGS, "--steps", "10", "--sharpness-every", "1", "--diagnose-every", "2",
             "--out", tmp_path)
    assert r.exit_code == 3, r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    rows = store.read_csv(tmp_path / "metrics.csv")
    # step 4's diagnostics (pending, its s_4 non-finite) and x_5's sharpness never ran
    assert [int(x["step"]) for x in rows] == [0, 1, 2, 3, 4, 5]
    assert rows[-1]["sharpness"] == "" and rows[-2]["sharpness"] != ""
    assert [int(x["step"]) for x in store.read_csv(tmp_path / "diagnostics.csv")] == [0, 2]
    assert store.read_json(tmp_path / "summary.json")["status"] == "diverged"


def _fail_writes(monkeypatch, root, matches=lambda path: True):
    """The disk under ``root`` refuses writes (read-only): opening, creating, making folders."""
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def check(path):
        path = os.path.abspath(os.fspath(path))
        if path.startswith(str(root)) and matches(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    def fake_open(file, mode="r", *args, **kw):
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+"):
            check(file)
        return real_open(file, mode, *args, **kw)

    def fake_os_open(path, flags, *args, **kw):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            check(path)
        return real_os_open(path, flags, *args, **kw)

    def fake_mkdir(path, *args, **kw):
        check(path)
        return real_mkdir(path, *args, **kw)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


def test_read_only_folder_is_exit_4_in_one_line(tmp_path, reference, monkeypatch):
    run = _killed_copy(reference, tmp_path / "ro" / "run")
    _fail_writes(monkeypatch, tmp_path / "ro")
    for args, path in ((["--resume", run], run / ".eoskit.lock"),
                       ([*ARGS, "--out", tmp_path / "ro" / "new"], tmp_path / "ro" / "new")):
        r = invoke("run", *args)
        assert r.exit_code == 4, (r.exit_code, r.stderr, r.exception)
        line = one_line(r)
        assert str(path) in line and "EROFS" in line, line
    assert not _temp_files(tmp_path)


def _full_disk(monkeypatch, matches=lambda path: True):
    """fsync of matching files fails with ENOSPC: the disk filled up under the run."""
    real_fsync = os.fsync

    def fsync(fd):
        if matches(os.readlink(f"/proc/self/fd/{fd}")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_full_disk_at_start_is_exit_4_and_leaves_no_temp_file(tmp_path, monkeypatch):
    _full_disk(monkeypatch)
    r = invoke("run", *ARGS, "--steps", "3", "--out", tmp_path)
    assert r.exit_code == 4, (r.stderr, r.exception)
    line = one_line(r)
    # the owner record is the first file a run writes
    assert str(tmp_path / ".eoskit-owner.json") in line and "ENOSPC" in line, line
    assert not _temp_files(tmp_path) and not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("victim", ["metrics.csv", "ckpt-000000008.pt"])
def test_full_disk_mid_run_is_status_failed_then_resumable(tmp_path, reference, monkeypatch,
                                                          victim):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        seen = []  # the table fails at its second sync (step 8), the checkpoint when written

        def matches(path):
            seen.append(path)
            return victim in path and (victim != "metrics.csv" or seen.count(path) > 1)

        _full_disk(m, matches)
        r = invoke("run", *ARGS, "--steps", "12", "--diagnose-every", "5", "--out", run)
    assert r.exit_code == 4, (r.stderr, r.exception)
    assert victim in one_line(r) and "ENOSPC" in r.stderr
    summary = store.read_json(run / "summary.json")
    assert summary["status"] == "failed" and "No space left" in summary["error"]
    assert not _temp_files(run)
    r = invoke("run", "--resume", run)
    assert r.exit_code == 0, r.stderr
    assert _rows(run / "metrics.csv") == _rows(reference / "metrics.csv")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_start_up_is_exit_130_in_one_line(monkeypatch, capsys, sig):
    import eoskit.cli as cli

    real_register = cli._register

    def register():  # the signal arrives while the commands are being imported
        os.kill(os.getpid(), sig)
        real_register()

    monkeypatch.setattr(cli, "_register", register)
    monkeypatch.setattr(sys, "argv", ["eoskit", "run", "--help"])
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # main sets it
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as exc:
            cli.main()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    assert exc.value.code == 130
    assert capsys.readouterr().err.splitlines() == ["eoskit: interrupted"]


def test_ctrl_c_mid_run_is_exit_130_in_one_line(tmp_path):
    watcher = _interrupt_when(tmp_path / "metrics.csv", 3)
    r = invoke("run", *ARGS, "--steps", "100000", "--out", tmp_path)
    watcher.join()
    assert r.exit_code == 130
    assert f"eoskit run --resume {tmp_path}" in one_line(r)
    assert store.read_json(tmp_path / "summary.json")["status"] == "interrupted"


def test_data_dir_for_a_dataset_that_reads_no_files_is_bad_input(tmp_path):
    r = invoke("run", *ARGS, "--steps", "2", "--data-dir", "/nonexistent", "--out", tmp_path)
    assert r.exit_code == 2
    assert "data_dir" in one_line(r) and "digits" in r.stderr
