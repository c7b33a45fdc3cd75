"""One rank of a distributed run: join the group, train on the rank's shard, leave.

Every rank runs the same loop from the same seed (so the eigensolvers and
trackers, replicated, agree bit for bit); rank 0 alone writes the run
directory. A rank that cannot go on (a peer vanished, a collective timed
out) raises; rank 0 first marks the run ``failed`` with a one-line message.
Resuming reads the run directory on every rank, so across machines it must
be on a shared file system.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eoskit import store
from eoskit.distributed.group import Rank, assert_same_params, init_from_env, shutdown
from eoskit.distributed.sharded_problem import shard_problem
from eoskit.metrics.summary import summarize
from eoskit.training.config import RunConfig
from eoskit.training.run_problem import Problem


@dataclass(frozen=True)
class RankGroup:
    """What :func:`eoskit.training.loop.train` needs to know of its rank (its ``parallel=``)."""

    me: Rank

    @property
    def is_main(self) -> bool:
        return self.me.is_main

    def wrap(self, problem: Problem) -> Problem:
        return shard_problem(problem, self.me.rank, self.me.world)

    def check(self, x, step: int) -> None:
        assert_same_params(x, step)

    def open_log(self, path: Path, columns: list[str], keep_below: int | None = None):
        """The run's CSV log on rank 0; on the others a log that writes nothing."""
        return store.CsvLog(path, columns, keep_below) if self.is_main else _NoLog()


class _NoLog:
    """A rank other than 0 computes every row and writes none."""

    def write(self, row: dict) -> None:
        pass

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


def stored_device(out: Path) -> str:
    """The device of the run stored in ``out`` (a resume chooses its backend from it)."""
    return store.read_json(Path(out) / "config.json")["config"]["device"]


def run_rank(cfg: RunConfig | None, out: str | Path, *, resume: bool = False,
             progress: bool = True, **train_kw) -> dict | None:
    """Train as the rank the environment names; rank 0's summary (None on the others)."""
    from eoskit.training.loop import train

    device = cfg.device if cfg is not None else stored_device(Path(out))
    me = init_from_env(device)
    try:
        summary = train(cfg, out, resume=resume, progress=progress and me.is_main,
                        parallel=RankGroup(me), **train_kw)
    except Exception as err:
        if me.is_main:
            mark_failed(Path(out), f"rank {me.rank}: {one_line(err)}")
        raise
    finally:
        shutdown()
    return summary if me.is_main else None


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def mark_failed(out: Path, message: str) -> dict:
    """Write ``summary.json`` of a run that ended in failure (its rows so far summarised)."""
    summary = {"status": "failed", "steps": 0}
    if (out / "config.json").exists():
        threshold = store.read_json(out / "config.json").get("threshold")
        rows = store.read_rows(out / "metrics.csv") if (out / "metrics.csv").exists() else []
        if threshold is not None:
            summary = summarize(rows, threshold, "failed")
    summary["error"] = message
    store.write_json(out / "summary.json", summary)
    return summary
