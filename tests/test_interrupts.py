"""Ctrl-C and SIGTERM end a command with exit 130 wherever they land; a save they cut off
leaves nothing that a resume reports as damaged, and the CLI reports eoskit's warnings in
one line."""

import signal
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from eoskit import store
from eoskit.interrupts import Interrupted, install_cli_handlers
from eoskit.store import CheckpointWarning

# A command whose signal lands inside an embedded PyRun_String (what a Cython module runs
# while it imports: pandas and scikit-learn do), caught, then exit_interrupted(): CPython
# remembers a plain KeyboardInterrupt there and ends the process by SIGINT instead of 130.
_CHILD = textwrap.dedent("""
    import ctypes, sys
    from eoskit.cli.app import exit_interrupted
    from eoskit.interrupts import install_cli_handlers

    install_cli_handlers()
    run_string = ctypes.pythonapi.PyRun_String
    run_string.restype = ctypes.py_object
    run_string.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.py_object, ctypes.py_object]
    code = b"import os, time\\nos.kill(os.getpid(), %d)\\ntime.sleep(30)"
    try:
        run_string(code % int(sys.argv[1]), 257, {}, {})  # 257: Py_file_input
    except KeyboardInterrupt:
        exit_interrupted()
    """)


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="CPython's embedding API")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_inside_an_embedded_run_string_still_exits_130(tmp_path, sig):
    (tmp_path / "signalled_child.py").write_text(_CHILD)
    # -m as `python -m eoskit` runs: CPython's SIGINT exit applies to a module run that way
    r = subprocess.run([sys.executable, "-m", "signalled_child", str(int(sig))],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       # a suite started in the background inherits SIGINT ignored
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert r.returncode == 130, r.stderr
    assert r.stderr.splitlines() == ["eoskit: interrupted"]


@pytest.fixture
def cli_handlers():
    """install_cli_handlers() in this process, undone afterwards."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    install_cli_handlers()
    yield
    for s, handler in old.items():
        signal.signal(s, handler)


def test_cli_handlers_raise_the_subclass_and_leave_an_ignored_sigint_alone(cli_handlers):
    for sig in (signal.SIGINT, signal.SIGTERM):
        with pytest.raises(Interrupted, match=signal.Signals(sig).name):
            signal.raise_signal(sig)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `nohup` or `cmd &` hands down
    install_cli_handlers()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_cli_prints_eoskits_warnings_as_one_line_and_others_as_python_does(monkeypatch):
    from eoskit.cli.app import one_line_warnings

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    one_line_warnings()
    ours = warnings.formatwarning(CheckpointWarning("ckpt-3.pt is unusable"),
                                  CheckpointWarning, "/x/checkpoints.py", 60, "warn(...)")
    assert ours == "eoskit: warning: ckpt-3.pt is unusable\n"
    theirs = warnings.formatwarning(UserWarning("u"), UserWarning, "/x/lib.py", 7, "warn(u)")
    assert theirs.startswith("/x/lib.py:7: UserWarning: u") and "warn(u)" in theirs


def test_a_save_cut_off_between_its_files_leaves_the_previous_checkpoint_silent(
        tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    store.save_checkpoint(folder, 4, {"step": 4, "x": torch.zeros(3)})
    written = []

    def cut_off_after_one(real):  # Ctrl-C once the first of the save's two files is down
        def write(path, data):
            if path.stem == "ckpt-000000008" and written:
                raise Interrupted("SIGINT")
            real(path, data)
            written.extend([path] if path.stem == "ckpt-000000008" else [])
        return write

    for name in ("atomic_write_bytes", "write_json"):
        monkeypatch.setattr(store.checkpoints, name,
                            cut_off_after_one(getattr(store.checkpoints, name)))
    with pytest.raises(Interrupted):
        store.save_checkpoint(folder, 8, {"step": 8, "x": torch.ones(3)})
    assert len(written) == 1
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)  # no 'unusable' report
        state, path = store.load_latest_checkpoint(folder)
    assert state["step"] == 4 and path.name == "ckpt-000000004.pt"
    # the resumed run saves again past it: the cut-off save's record goes
    store.save_checkpoint(folder, 12, {"step": 12, "x": torch.ones(3)})
    assert sorted(p.name for p in folder.iterdir()) == [
        "ckpt-000000004.json", "ckpt-000000004.pt", "ckpt-000000012.json", "ckpt-000000012.pt"]
