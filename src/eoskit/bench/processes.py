"""``eoskit bench scaling``: one run over 1, 2, … processes (data-parallel, torch.distributed).

For each setting (:data:`SETTINGS`) and each process count N, N ranks are
spawned on this machine, each with ONE thread (torch, OpenMP and BLAS), each
holding its shard of the data (:func:`eoskit.distributed.shard_problem`). Rank
0 reports, per step (medians over the timed steps):

* ``gd``: a full-batch GD step (value and gradient, one all-reduce of d + 1 floats);
* ``tracked``: a GD step with the top Hessian eigenvalue tracked to tol 1e-4
  (:class:`eoskit.eigs.SharpnessTracker`, criterion ``eigenvalue``), the
  eigensolver replicated on every rank (what ``eoskit run --nproc`` does);
* ``tracked-rank0``: the same with the eigensolver on rank 0 alone, every HVP's
  vector broadcast to the others and the products reduced to rank 0;
* the all-reduce seconds and bytes of each (the seconds include waiting for the
  slowest rank), and the eigenvalue and loss of every tracked step, so the rows
  of N processes can be compared with those of one.

N = 1 is the plain one-process objective (no reduction at all). Each
measurement runs ``repeats`` times, alternating N (the medians of the repeats
are reported), so a load change on a shared machine hits every N alike.
"""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from eoskit import store

TRACK_TOL = 1e-4
WARM_STEPS = 3  # the first steps from init turn the eigenvector fast: not timed


@dataclass(frozen=True)
class ProcSetting:
    """One problem of the process-scaling benchmark."""

    name: str
    dataset: str = "mnist-5k"
    n_train: int = 2000
    width: int = 200
    depth: int = 2
    dtype: str = "float64"
    lr: float = 0.05
    gd_steps: int = 10
    tracked_steps: int = 10


DEMO = ProcSetting("demo")  # the demo: fc-tanh 784-200-200-10 on 2,000 images
LARGE = ProcSetting("large", n_train=4000, width=400, gd_steps=6, tracked_steps=6)
TINY = ProcSetting("tiny", dataset="digits", n_train=64, width=8, depth=1, gd_steps=3,
                   tracked_steps=3)
SETTINGS = {s.name: s for s in (DEMO, LARGE, TINY)}


class TimedReduce:
    """``all_reduce_sum`` that counts its calls, bytes and seconds."""

    def __init__(self):
        self.calls, self.bytes, self.seconds = 0, 0, 0.0

    def __call__(self, t):
        from eoskit.distributed.group import all_reduce_sum

        t0 = time.perf_counter()
        out = all_reduce_sum(t)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        self.bytes += out.numel() * out.element_size()
        return out

    def snapshot(self) -> tuple[int, int, float]:
        return self.calls, self.bytes, self.seconds


def _objective(s: ProcSetting, rank: int, world: int, reduce):
    from eoskit.distributed.sharded_problem import shard_objective
    from eoskit.training.config import RunConfig
    from eoskit.training.run_problem import build_problem

    cfg = RunConfig(dataset=s.dataset, n_train=s.n_train, n_test=0, width=s.width,
                    depth=s.depth, dtype=s.dtype, lr=s.lr)
    problem = build_problem(cfg)
    obj = problem.train if world == 1 else shard_objective(problem.train, rank, world, reduce)
    return obj, problem.x0


def _per_step(times: list[float], before_after: list[tuple]) -> dict:
    calls = [b[0] - a[0] for a, b in before_after]
    nbytes = [b[1] - a[1] for a, b in before_after]
    secs = [b[2] - a[2] for a, b in before_after]
    return {"seconds": statistics.median(times), "allreduce_calls": statistics.median(calls),
            "allreduce_bytes": statistics.median(nbytes),
            "allreduce_seconds": statistics.median(secs)}


def _gd(obj, x, s: ProcSetting, reduce: TimedReduce) -> dict:
    times, snaps = [], []
    for i in range(s.gd_steps + 1):  # the first step is not timed
        a, t0 = reduce.snapshot(), time.perf_counter()
        _, g, _ = obj.value_grad_aux(x)
        x = (x - s.lr * g).detach()
        if i:
            times.append(time.perf_counter() - t0)
            snaps.append((a, reduce.snapshot()))
    return _per_step(times, snaps)


def _rank0_hvp(point, obj, reduce: TimedReduce):
    """Rank 0's HVP when the eigensolver runs there alone: broadcast v, reduce H v to rank 0.

    Its communication (two broadcasts and a reduce) is counted in ``reduce``."""
    def hvp(v):
        obj.hvp_count += 1 if v.ndim == 1 else v.shape[1]
        t0 = time.perf_counter()
        dist.broadcast(torch.tensor([1, 0 if v.ndim == 1 else v.shape[1]]), 0)
        v = v.contiguous()
        dist.broadcast(v, 0)
        t1 = time.perf_counter()
        out = point.local.hvp(v)
        t2 = time.perf_counter()
        dist.reduce(out, 0)
        reduce.seconds += (t1 - t0) + (time.perf_counter() - t2)
        reduce.calls += 3
        reduce.bytes += 2 * out.numel() * out.element_size() + 16
        return out
    return hvp


def _serve_hvps(point, dim: int, dtype) -> None:
    """A rank other than 0 while rank 0 solves: compute local products until told to stop."""
    while True:
        head = torch.zeros(2, dtype=torch.int64)
        dist.broadcast(head, 0)
        if int(head[0]) == 0:
            return
        k = int(head[1])
        v = torch.empty((dim,) if k == 0 else (dim, k), dtype=dtype)
        dist.broadcast(v, 0)
        dist.reduce(point.local.hvp(v), 0)


def _tracked(obj, x, s: ProcSetting, reduce: TimedReduce, rank: int, world: int,
             on_rank0: bool) -> dict:
    from eoskit.eigs import LanczosTracker

    tr = LanczosTracker(1, TRACK_TOL, 0, criterion="eigenvalue")
    times, snaps, hvps, eigs, losses = [], [], [], [], []
    for i in range(s.tracked_steps + WARM_STEPS + 1):  # step 0: the cold solve
        a, h0, t0 = reduce.snapshot(), obj.hvp_count, time.perf_counter()
        with obj.at(x) as point:
            lam = _measure(tr, point, obj, reduce, rank, on_rank0)
            x = (x - s.lr * point.grad).detach()
            loss = float(point.value)
        if i > WARM_STEPS:
            times.append(time.perf_counter() - t0)
            snaps.append((a, reduce.snapshot()))
            hvps.append(obj.hvp_count - h0)
        eigs.append(lam)
        losses.append(loss)
    out = _per_step(times, snaps)
    out.update(hvps=statistics.median(hvps) if hvps else None, eigenvalues=eigs, losses=losses)
    return out


def _measure(tr, point, obj, reduce, rank: int, on_rank0: bool) -> float | None:
    if not on_rank0:
        return float(tr.measure(point.hvp, obj.dim, obj.dtype, obj.device).eigenvalues[0])
    if rank != 0:
        _serve_hvps(point, obj.dim, obj.dtype)
        return None
    lam = float(tr.measure(_rank0_hvp(point, obj, reduce), obj.dim, obj.dtype,
                           obj.device).eigenvalues[0])
    dist.broadcast(torch.zeros(2, dtype=torch.int64), 0)  # stop serving
    return lam


def _rank_main(rank: int, world: int, port: int, setting: dict, result: str) -> None:
    """One rank: measure every section, rank 0 writes the result as JSON."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from eoskit._threads import limit_blas_threads
    from eoskit.distributed.group import init_from_env, shutdown

    limit_blas_threads()
    s = ProcSetting(**setting)
    if world > 1:
        init_from_env("cpu")
    reduce = TimedReduce()
    obj, x0 = _objective(s, rank, world, reduce)
    out = {"params": obj.dim, "gd": _gd(obj, x0, s, reduce),
           "tracked": _tracked(obj, x0, s, reduce, rank, world, on_rank0=False)}
    if world > 1:
        out["tracked-rank0"] = _tracked(obj, x0, s, reduce, rank, world, on_rank0=True)
        shutdown()
    if rank == 0:
        store.write_json(Path(result), out)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure_once(setting: ProcSetting, nproc: int) -> dict:
    """Spawn ``nproc`` one-thread ranks for ``setting``; rank 0's measurements."""
    import torch.multiprocessing as tmp

    old = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                          "OPENBLAS_NUM_THREADS")}
    os.environ.update({k: "1" for k in old})  # the children's pools start with one thread
    try:
        with tempfile.TemporaryDirectory() as tmpdir:
            result = os.path.join(tmpdir, "rank0.json")
            tmp.spawn(_rank_main, args=(nproc, _free_port(), asdict(setting), result),
                      nprocs=nproc, join=True)
            return store.read_json(Path(result))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


SECTIONS = ("gd", "tracked", "tracked-rank0")


def _max_rel_diff(a: list, b: list) -> float | None:
    pairs = [(u, v) for u, v in zip(a, b, strict=True) if u is not None and v is not None]
    if not pairs:
        return None
    return max(abs(u - v) / max(abs(u), abs(v), 1e-300) for u, v in pairs)


def _summarise(setting: ProcSetting, nproc: int, results: list[dict], base: dict | None) -> dict:
    """One row: the medians over the repeats; speed-ups and row differences against N = 1."""
    med = lambda sec, key: statistics.median(r[sec][key] for r in results)  # noqa: E731
    row = {"setting": setting.name, "nproc": nproc, "params": results[0]["params"],
           "n_train": setting.n_train, "width": setting.width, "depth": setting.depth,
           "dtype": setting.dtype, "repeats": len(results), "threads_per_process": 1}
    for sec in SECTIONS:
        if sec not in results[0]:
            continue
        row[sec] = {k: med(sec, k) for k in ("seconds", "allreduce_calls", "allreduce_bytes",
                                              "allreduce_seconds")}
        row[sec]["all_seconds"] = [r[sec]["seconds"] for r in results]
        if sec != "gd":
            row[sec]["hvps"] = med(sec, "hvps")
    if base is not None:
        row["speedup"] = {sec: base[sec]["seconds"] / row[sec]["seconds"]
                          for sec in ("gd", "tracked") if sec in row}
        mine, ref = results[0]["tracked"], base["_first"]["tracked"]
        row["max_rel_diff_eigenvalue"] = _max_rel_diff(mine["eigenvalues"], ref["eigenvalues"])
        row["max_rel_diff_loss"] = _max_rel_diff(mine["losses"], ref["losses"])
        if "tracked-rank0" in results[0]:
            row["max_rel_diff_eigenvalue_rank0"] = _max_rel_diff(
                results[0]["tracked-rank0"]["eigenvalues"], ref["eigenvalues"])
    return row


def bench_processes(settings: list[ProcSetting], nprocs: list[int], repeats: int = 3,
                    log=print) -> list[dict]:
    """Rows ``{setting, nproc, gd, tracked, tracked-rank0, speedup, …}`` (see the module)."""
    rows = []
    for s in settings:
        results: dict[int, list[dict]] = {n: [] for n in nprocs}
        for rep in range(repeats):
            for n in nprocs:  # alternate: a load change hits every N alike
                r = measure_once(s, n)
                results[n].append(r)
                log(f"  {s.name} N={n} repeat {rep + 1}/{repeats}: GD step "
                    f"{r['gd']['seconds'] * 1e3:.1f} ms, tracked step "
                    f"{r['tracked']['seconds'] * 1e3:.1f} ms")
        base = None
        for n in nprocs:
            row = _summarise(s, n, results[n], base if n != 1 else None)
            if n == 1:
                base = {**row, "_first": results[1][0]}
            rows.append(row)
    return rows
