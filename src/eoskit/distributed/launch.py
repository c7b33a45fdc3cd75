"""``eoskit run --nproc N``: N local worker processes for one run, watched by the parent.

The parent only launches and watches: it picks a free port on 127.0.0.1, starts
the ranks (``spawn``; each sees ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/
``MASTER_ADDR``/``MASTER_PORT`` from its first instruction, as under
``torchrun``), and waits on their exits. The first rank to fail ends the
others (SIGTERM, then SIGKILL after a grace period) and the run is marked
``failed`` with one line naming it — a dead rank never leaves a hang.

Under ``torchrun`` (``RANK`` and ``WORLD_SIZE`` already set) ``eoskit run`` is
itself a rank: :func:`train_parallel` runs it as one.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from pathlib import Path

import torch

from eoskit import store
from eoskit.distributed.group import env_rank
from eoskit.distributed.worker import mark_failed, one_line, run_rank
from eoskit.training.config import RunConfig

GRACE_S = 3.0  # how long the other ranks get to stop after one failed


def train_parallel(cfg: RunConfig | None, out: str | Path, *, resume: bool = False,
                   progress: bool = True, nproc: int = 1, **train_kw) -> dict | None:
    """:func:`eoskit.training.loop.train` as this rank of a ``torchrun`` launch, over ``nproc``
    local processes, or in this process; the summary (None on a rank other than 0)."""
    if env_rank() is not None:
        if nproc != 1:
            raise ValueError("--nproc is for a local launch; under torchrun the launcher "
                             "starts the processes (drop --nproc)")
        return run_rank(cfg, out, resume=resume, progress=progress, **train_kw)
    if nproc == 1:
        from eoskit.training.loop import train

        return train(cfg, out, resume=resume, progress=progress, **train_kw)
    return launch(cfg, out, nproc, resume=resume, progress=progress, **train_kw)


def launch(cfg: RunConfig | None, out: str | Path, nproc: int, *, resume: bool = False,
           progress: bool = True, threads: int | None = None, **train_kw) -> dict:
    """Run ``nproc`` ranks on this machine; rank 0's summary (status failed if a rank died)."""
    out = Path(out)
    threads = threads or max(1, torch.get_num_threads() // nproc)
    payload = None if cfg is None else cfg.model_dump(mode="json")
    ctx = multiprocessing.get_context("spawn")
    base = {"WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": str(threads)}
    procs = []
    for rank in range(nproc):
        env = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}
        p = ctx.Process(target=_rank_main, name=f"eoskit-rank-{rank}",
                        args=(env, payload, str(out), resume, progress, threads, train_kw))
        with _environ(env):  # visible from the child's first instruction (and in /proc)
            p.start()
        procs.append(p)
    failure = _watch(procs)
    if failure is not None:
        message = f"rank {failure[0]} {failure[1]}; the run failed"
        print(f"eoskit: error: {message}", file=sys.stderr)
        return mark_failed(out, message)
    return store.read_json(out / "summary.json")


def _rank_main(env: dict, payload: dict | None, out: str, resume: bool, progress: bool,
               threads: int, train_kw: dict) -> None:
    os.environ.update(env)
    torch.set_num_threads(threads)
    cfg = None if payload is None else RunConfig(**payload)
    try:
        run_rank(cfg, out, resume=resume, progress=progress, **train_kw)
    except Exception as err:
        print(f"eoskit: rank {env['RANK']}: {one_line(err)}", file=sys.stderr)
        sys.exit(1)


def _watch(procs: list) -> tuple[int, str] | None:
    """Wait for every rank; on the first abnormal exit stop the rest. (rank, what) or None."""
    alive = dict(enumerate(procs))
    try:
        while alive:
            multiprocessing.connection.wait([p.sentinel for p in alive.values()])
            done = {r: p.exitcode for r, p in alive.items() if p.exitcode is not None}
            for r in done:
                alive.pop(r)
            bad = {r: code for r, code in done.items() if code != 0}
            if bad:
                _stop(list(alive.values()))
                return _root_cause(bad)
    except KeyboardInterrupt:  # the ranks got the Ctrl-C too: let them write 'interrupted'
        _stop(list(alive.values()), grace=2 * GRACE_S, signal_first=False)
        raise
    return None


def _root_cause(bad: dict[int, int]) -> tuple[int, str]:
    """A rank killed by a signal is the cause; the ones that lost it merely exited 1."""
    killed = {r: c for r, c in bad.items() if c < 0}
    rank, code = min((killed or bad).items())
    if code < 0:
        return rank, f"died (signal {signal.Signals(-code).name})"
    return rank, f"exited with status {code}"


def _stop(procs: list, grace: float = GRACE_S, signal_first: bool = True) -> None:
    if signal_first:
        for p in procs:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.exitcode is None:
            p.kill()
            p.join()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _environ:
    def __init__(self, env: dict):
        self.env, self.old = env, {}

    def __enter__(self):
        self.old = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)

    def __exit__(self, *exc):
        for k, v in self.old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
