"""A Monitor's run directory: the same contract as ``eoskit run --out DIR``.

``config.json`` (what a Monitor can say: the model's class, the loss function's
name, the optimiser's kind and learning rate, the measurement settings;
``"source": "monitor"`` marks it), ``metrics.csv`` (eoskit's column names,
one row per measurement) and ``summary.json`` (``running`` until
:meth:`MonitorRunDir.finish`, then ``completed`` or the status given, with
:func:`eoskit.metrics.summary.monitor_summary`'s fields). ``eoskit report DIR`` reads it.
:func:`eoskit.load_run` reads it too, as a ``StoredRun`` whose ``objective`` and
``x_final`` are None (a user's model and data are not in it) and whose
``config`` is the dict below; :func:`load_monitor_run` reads the same.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from eoskit import store
from eoskit._version import __version__
from eoskit.metrics.summary import monitor_summary

SOURCE = "monitor"


class MonitorRunDir:
    """Writes ``config.json`` and a ``running`` summary at once, rows as they complete.

    A ``monitor`` run directory (:mod:`eoskit.store.rundir`), locked from here to
    :meth:`finish`.
    """

    def __init__(self, out: str | Path, config: dict, meta: dict, columns: list[str]):
        self.out = Path(out)
        # held until finish (or the process ends): no other eoskit writer can take the
        # directory over meanwhile, as `eoskit run --overwrite` otherwise would
        self.lock = store.RunLock(self.out).acquire()
        try:
            store.claim(self.out, "monitor", overwrite=False)
        except BaseException:
            self.lock.release()
            raise
        self.columns = columns
        store.write_json(self.out / "config.json", {
            "config": config, "source": SOURCE, "eoskit_version": __version__,
            "torch_version": torch.__version__, "python_version": platform.python_version(),
            "metrics_columns": columns, **meta})
        store.write_json(self.out / "summary.json", {"status": "running", "steps": 0})
        self.metrics = store.CsvLog(self.out / "metrics.csv", columns)

    def write(self, row: dict) -> None:
        self.metrics.write(row)

    def finish(self, rows: list[dict], status: str, extra: dict) -> dict:
        """Close ``metrics.csv`` and write the final ``summary.json``."""
        if status not in store.STATUSES:
            raise ValueError(f"status must be one of {store.STATUSES}, got {status!r}")
        self.metrics.close()
        summary = monitor_summary(rows, status)
        summary.update(extra)
        store.write_json(self.out / "summary.json", summary)
        self.lock.release()
        return summary


@dataclass
class MonitorRun:
    """A Monitor's run directory read back."""

    path: Path
    config: dict  # config.json as written (its "config" table and the metadata)
    summary: dict

    @property
    def metrics(self) -> list[dict]:
        return store.read_rows(self.path / "metrics.csv")


def load_monitor_run(run_dir: str | Path) -> MonitorRun:
    """Config, summary and typed metrics of a directory written by a Monitor."""
    run_dir = Path(run_dir)
    config = store.read_json(run_dir / "config.json")
    if config.get("source") != SOURCE:
        raise ValueError(f"{run_dir} was not written by eoskit.Monitor; use eoskit.load_run")
    summary = store.read_json(run_dir / "summary.json") if (
        run_dir / "summary.json").exists() else {}
    return MonitorRun(run_dir, config, summary)
