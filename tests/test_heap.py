"""``release_free_heap`` gives the heap's free pages back (resident memory read from
``/proc``, independently of it), and the Monitor and ``eoskit run`` call it before each CPU
measurement."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys

import pytest
import torch

import eoskit._heap as heap
import eoskit.monitor.sharpness_meter as sharpness_meter
from eoskit.monitor import Monitor

GLIBC = hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "malloc_trim") if (
    ctypes.util.find_library("c")) else False

# In a fresh process: 64 MB in 64 KB heap blocks (below glibc's mmap threshold), touched,
# then freed except one block above them that keeps the heap's top in place (so free()
# cannot trim it on its own); prints the resident MB after the frees and after the call.
CHILD = """
import ctypes, ctypes.util, os, sys
sys.path.insert(0, {src!r})
from eoskit._heap import release_free_heap
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
page = os.sysconf("SC_PAGE_SIZE")
def resident():
    return int(open("/proc/self/statm").read().split()[1]) * page / 2**20
blocks = [libc.malloc(1 << 16) for _ in range(1024)]
for b in blocks:
    ctypes.memset(b, 1, 1 << 16)
pin = libc.malloc(1 << 16)
for b in blocks:
    libc.free(b)
before = resident()
given = release_free_heap()
print(before, resident(), given)
"""


def _child(env_trim: str) -> tuple[float, float, str]:
    src = os.path.dirname(os.path.dirname(heap.__file__))
    env = {**os.environ, "EOSKIT_TRIM_HEAP": env_trim}
    out = subprocess.run([sys.executable, "-c", CHILD.format(src=src)], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), out[2]


@pytest.mark.skipif(not GLIBC or not os.path.exists("/proc/self/statm"),
                    reason="malloc_trim is glibc's; resident memory is read from /proc")
def test_free_heap_pages_leave_the_resident_set():
    before, after, given = _child("1")
    assert given == "True"
    assert before - after > 48  # of the 64 MB freed


@pytest.mark.skipif(not GLIBC or not os.path.exists("/proc/self/statm"),
                    reason="malloc_trim is glibc's; resident memory is read from /proc")
def test_eoskit_trim_heap_0_leaves_the_heap_alone():
    before, after, given = _child("0")
    assert given == "False"
    assert abs(before - after) < 4


def test_only_a_cpu_measurement_trims_the_heap(monkeypatch):
    """A GPU measurement's memory is not the C heap's: ``malloc_trim`` runs for the CPU only."""
    trimmed = []
    monkeypatch.setattr(heap, "_trim", lambda pad: trimmed.append(pad) or 1)
    monkeypatch.delenv("EOSKIT_TRIM_HEAP", raising=False)
    assert heap.release_free_heap(torch.device("cuda", 0)) is False
    assert heap.release_free_heap("meta") is False and trimmed == []
    assert heap.release_free_heap(torch.device("cpu")) is True and trimmed == [0]


def test_the_monitor_releases_the_heap_before_each_cpu_measurement(monkeypatch):
    calls = []
    monkeypatch.setattr(sharpness_meter, "release_free_heap",
                        lambda device: calls.append(torch.device(device).type))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    mon = Monitor(model, torch.nn.functional.mse_loss, (x, y), every=2, curvature=False)
    for _ in range(4):
        mon.step()
    assert calls == ["cpu", "cpu"] and len(mon.rows) == 2


def test_a_run_releases_the_heap_before_each_cpu_measurement(monkeypatch, tmp_path):
    from eoskit import store
    from eoskit.training import loop
    from eoskit.training.config import RunConfig

    calls = []
    monkeypatch.setattr(loop, "release_free_heap",
                        lambda device: calls.append(torch.device(device).type))
    cfg = RunConfig(dataset="digits", n_train=32, n_test=0, width=4, depth=1, dtype="float64",
                    steps=5, sharpness_every=2, eval_every=0)
    assert loop.train(cfg, tmp_path / "run", progress=False)["status"] == "completed"
    rows = store.read_rows(tmp_path / "run" / "metrics.csv")
    measured = [r["step"] for r in rows if r["sharpness"] is not None]
    assert len(calls) == len(measured) >= 3, (calls, measured)
