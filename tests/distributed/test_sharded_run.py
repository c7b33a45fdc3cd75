"""One run over several processes (CPU, gloo): the same numbers as one process.

* shards are contiguous, cover the data and keep one process's chunks;
* the sharded objective (2 spawned ranks) equals the whole one: value, gradient,
  Hessian-vector products (single, block, at a point), Gauss–Newton products, d3, d4,
  to 1e-12;
* ``eoskit run --nproc 2`` writes the rows of one process (≤ 1e-10 relative:
  sums reordered, nothing else) and a run resumes with the other N;
* a rank SIGKILLed mid-run ends the run within seconds, status failed, one line
  naming the rank; ``--resume`` with one process then continues the same rows.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as tmp

from eoskit import store
from eoskit.distributed.shards import shard_bounds, shard_samples
from eoskit.objective.model import chunk_bounds
from eoskit.training.config import RunConfig
from eoskit.training.loop import train

pytestmark = pytest.mark.timeout(300)

TINY = dict(dataset="digits", n_train=64, n_test=32, width=8, depth=1, dtype="float64",
            steps=24, checkpoint_every=4, keep_checkpoints=3, sharpness_every=2,
            eval_every=4, diagnose_every=7, lr=0.5, physical_batch=16)
RTOL = 1e-10


def _args(cfg: dict) -> list[str]:
    return [a for k, v in cfg.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def _eoskit(*args):
    return [sys.executable, "-m", "eoskit", *args]


def _close(u, v, rtol=RTOL, atol=0.0) -> bool:
    if u is None or v is None or isinstance(u, (bool, str)):
        return u == v
    return abs(u - v) <= rtol * max(abs(u), abs(v)) + atol


def _same_rows(a: Path, b: Path, name="metrics.csv", atol=None, skip=("wall_time",)):
    ra, rb = store.read_rows(a / name), store.read_rows(b / name)
    assert len(ra) == len(rb), (name, len(ra), len(rb))
    atol = atol or {}
    for x, y in zip(ra, rb, strict=True):
        bad = {k: (x[k], y[k]) for k in x
               if k not in skip and not _close(x[k], y[k], atol=atol.get(k, 0.0))}
        assert not bad, (name, x["step"], bad)


# residuals are rounding noise (≈1e-15, compared absolutely; smoothness_ratio is the
# largest of them over a 1e-6 threshold), and a converged solver's iteration count may
# differ by one (hvps, not compared)
NOISE = {"recurrence_residual": 1e-12, "loss_change_residual": 1e-12, "kappa_mismatch": 1e-12,
         "grad_diff_residual": 1e-12, "grad_x_residual": 1e-12, "smoothness_ratio": 1e-6}


def _same_run(a: Path, b: Path):
    _same_rows(a, b)
    _same_rows(a, b, "diagnostics.csv", atol=NOISE, skip=("wall_time", "hvps"))


def _interrupted_copy(src: Path, dst: Path, keep_upto: int) -> Path:
    """A finished run made to look killed: checkpoints after ``keep_upto`` gone."""
    shutil.copytree(src, dst)
    store.write_json(dst / "summary.json", {"status": "running", "steps": 0})
    (dst / "params_final.pt").unlink()
    for p in (dst / "checkpoints").glob("ckpt-*"):
        if int(p.stem.split("-")[1]) > keep_upto:
            p.unlink()
    return dst


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The tiny run in one process (in this one) and with ``--nproc 2``."""
    root = tmp_path_factory.mktemp("dist")
    train(RunConfig(**TINY), root / "one", progress=False)
    r = subprocess.run(_eoskit("run", *_args(TINY), "--out", str(root / "two"), "--nproc", "2",
                               "--no-progress"), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    return root / "one", root / "two"


# ---------------------------------------------------------------- shards
@pytest.mark.parametrize("n,world", [(10, 3), (7, 7), (1000, 4), (5, 2)])
def test_shards_are_contiguous_and_cover(n, world):
    bounds = [shard_bounds(n, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_shards_keep_one_process_chunks():
    whole = chunk_bounds(100, 16)  # 16 × 6 + 4
    for world in (2, 3, 7):
        got = []
        for r in range(world):
            lo, hi, sizes = shard_samples(100, 16, r, world)
            got += [(lo + a, lo + b) for a, b in chunk_bounds(hi - lo, sizes)]
        assert got == whole, world
    with pytest.raises(ValueError, match="cannot be shared"):
        shard_samples(1, None, 1, 2)


# ---------------------------------------------------------------- the objective
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _objective_rank(rank: int, world: int, port: int, result: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from eoskit.distributed.group import init_from_env, shutdown
    from eoskit.distributed.sharded_problem import shard_problem
    from eoskit.training.run_problem import build_problem

    init_from_env("cpu", timeout_s=30)
    cfg = RunConfig(**{**TINY, "n_train": 60})  # chunks 16, 16, 16, 12
    whole = build_problem(cfg)
    full, part = whole.train, shard_problem(whole, rank, world).train
    g = torch.Generator().manual_seed(0)
    x = whole.x0 + 0.1 * torch.randn(full.dim, generator=g, dtype=torch.float64)
    u, v = (torch.randn(full.dim, generator=g, dtype=torch.float64) for _ in range(2))
    V = torch.randn(full.dim, 3, generator=g, dtype=torch.float64)  # (d, 3)
    pairs = [(full.value(x), part.value(x)), (full.grad(x), part.grad(x)),
             (full.hvp(x, v), part.hvp(x, v)), (full.hvp(x, V), part.hvp(x, V)),
             (full.product(x, V), part.product(x, V)),
             (full.d3(x, u, v), part.d3(x, u, v)), (full.d4(x, v), part.d4(x, v)),
             (full.gauss_newton(x)(v), part.gauss_newton(x)(v)),
             (torch.tensor(full.loss_and_accuracy(x)), torch.tensor(part.loss_and_accuracy(x)))]
    with full.at(x) as p, part.at(x) as q:
        pairs += [(p.value, q.value), (p.grad, q.grad), (p.aux, q.aux), (p.hvp(V), q.hvp(V))]
    worst = max(float(((a - b).abs() / a.abs().max().clamp_min(1e-300)).max()) for a, b in pairs)
    shutdown()
    if rank == 0:
        Path(result).write_text(repr(worst))


def test_sharded_objective_equals_the_whole_one(tmp_path):
    result = tmp_path / "worst.txt"
    tmp.spawn(_objective_rank, args=(2, _free_port(), str(result)), nprocs=2, join=True)
    worst = float(result.read_text())
    assert worst <= 1e-12, worst


# ---------------------------------------------------------------- whole runs
def test_nproc_2_writes_the_rows_of_one_process(runs):
    one, two = runs
    _same_run(one, two)
    s1, s2 = (store.read_json(d / "summary.json") for d in runs)
    assert s2["status"] == "completed" and s1["steps"] == s2["steps"] == TINY["steps"]
    assert store.read_json(two / "config.json")["n_train"] == TINY["n_train"]


def test_resume_with_the_other_number_of_processes(runs, tmp_path):
    one, two = runs
    # started with 2, resumed with 1
    run = _interrupted_copy(two, tmp_path / "two_then_one", keep_upto=12)
    assert train(None, run, resume=True, progress=False)["status"] == "completed"
    _same_run(one, run)
    # started with 1, resumed with 2
    run = _interrupted_copy(one, tmp_path / "one_then_two", keep_upto=8)
    r = subprocess.run(_eoskit("run", "--resume", str(run), "--nproc", "2", "--no-progress"),
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    _same_run(one, run)


def _rank_pid(parent: int, rank: int, timeout=60.0) -> int:
    """The PID of the ``--nproc`` child with RANK=rank (its environment from the start)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for d in Path("/proc").iterdir():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                env = (d / "environ").read_bytes().split(b"\0") if ppid == parent else []
            except (OSError, ValueError, IndexError):
                continue
            if f"RANK={rank}".encode() in env:
                return int(d.name)
        time.sleep(0.05)
    raise AssertionError(f"no rank {rank} child of {parent}")


def test_sigkill_of_one_rank_fails_the_run_fast_then_resume(runs, tmp_path):
    one, _ = runs
    run = tmp_path / "killed"
    proc = subprocess.Popen(_eoskit("run", *_args(TINY), "--out", str(run), "--nproc", "2",
                                    "--no-progress"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = _rank_pid(proc.pid, 1)
    metrics, t0 = run / "metrics.csv", time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < 120:
        if metrics.exists() and len(store.read_csv(metrics)) >= 6:  # checkpoint 4 written
            break
        time.sleep(0.002)
    assert proc.poll() is None, "the run ended before the kill"
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    _, err = proc.communicate(timeout=60)
    ended_in = time.monotonic() - killed_at
    assert ended_in < 10, ended_in
    assert proc.returncode == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("eoskit: error:")]
    assert len(lines) == 1 and "rank 1 died (signal SIGKILL)" in lines[0], err
    summary = store.read_json(run / "summary.json")
    assert summary["status"] == "failed" and "rank 1" in summary["error"]
    print(f"rank 1 SIGKILLed: the run ended {ended_in:.2f} s later; {lines[0]}")
    assert train(None, run, resume=True, progress=False)["status"] == "completed"
    _same_run(one, run)
