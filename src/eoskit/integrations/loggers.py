"""Sinks: where a run's rows go besides ``metrics.csv``.

A sink is any object with four methods, called in this order by
:class:`eoskit.Monitor` (and by any training loop that wants them)::

    sink.log_params(config: dict)    # once, at the start
    sink.log_row(row: dict)          # each completed metrics row ("step" is the step)
    sink.log_artifact(path: Path)    # files at the end (metrics.csv, summary.json, plots)
    sink.close()                     # once

Rows are the ``metrics.csv`` rows: every numeric cell except ``step`` is one
scalar at ``step = row["step"]``; None, non-finite and non-numeric cells are
skipped. Two sinks ship here, each an optional extra:

* :class:`TensorBoardSink`: event files (``torch.utils.tensorboard``, which
  needs the ``tensorboard`` package), one scalar tag per column.
* :class:`MLflowSink`: an MLflow run in ``sqlite:///RUN/mlflow.db`` by default
  (MLflow 3 refuses its old file store), artifacts in ``RUN/mlartifacts``.

Example:
    >>> class Printer:
    ...     def log_params(self, config): pass
    ...     def log_row(self, row): print(row["step"], scalars(row))
    ...     def log_artifact(self, path): pass
    ...     def close(self): pass
    >>> Printer().log_row({"step": 10, "loss": 0.5, "sharpness": 3.0, "eff_curvature": None})
    10 {'loss': 0.5, 'sharpness': 3.0}
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol


class Sink(Protocol):
    def log_params(self, config: dict) -> None: ...
    def log_row(self, row: dict) -> None: ...
    def log_artifact(self, path: Path) -> None: ...
    def close(self) -> None: ...


def scalars(row: dict) -> dict[str, float]:
    """The row's finite numeric cells except ``step``, as floats."""
    out = {}
    for key, value in row.items():
        if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


def flat_params(config: dict, prefix: str = "") -> dict[str, str]:
    """A nested config as ``{"a.b": "text"}`` (MLflow params are strings)."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params(value, name + "."))
        else:
            out[name] = value if isinstance(value, str) else json.dumps(value)
    return out


class TensorBoardSink:
    """TensorBoard event files in ``log_dir``: one scalar tag per metrics column."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None):
        # purge_step: a resumed run's first re-logged step; TensorBoard hides the
        # events at and after it that an earlier session wrote
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)

    def log_params(self, config: dict) -> None:
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=1, default=str)
                             + "\n```", 0)

    def log_row(self, row: dict) -> None:
        for key, value in scalars(row).items():
            self.writer.add_scalar(key, value, global_step=int(row["step"]))

    def log_artifact(self, path: Path) -> None:
        pass  # event files hold scalars; the run directory holds the files

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class MLflowSink:
    """One MLflow run: params = config, metrics = columns at ``step``, files as artifacts.

    ``uri`` defaults to ``sqlite:///RUN_DIR/mlflow.db``, and a new experiment's
    artifacts then go to ``RUN_DIR/mlartifacts`` (a server's URI keeps its own
    artifact store). ``run_id``: continue that MLflow run (a resumed run) instead
    of creating one. Uses an ``MlflowClient`` (no global active run is started,
    so the caller's own MLflow state is untouched).
    """

    def __init__(self, run_dir: str | Path, uri: str | None = None,
                 experiment: str = "eoskit", run_name: str | None = None,
                 run_id: str | None = None):
        from mlflow.tracking import MlflowClient

        self.run_dir = Path(run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.uri = uri or f"sqlite:///{self.run_dir / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri)
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            self.run_id = run_id
            return
        found = self.client.get_experiment_by_name(experiment)
        where = None if uri else (self.run_dir / "mlartifacts").as_uri()
        exp_id = found.experiment_id if found is not None else self.client.create_experiment(
            experiment, artifact_location=where)
        self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id

    def log_params(self, config: dict) -> None:
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in flat_params(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log_row(self, row: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, int(row["step"])) for k, v in scalars(row).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def log_artifact(self, path: Path) -> None:
        path = Path(path)
        folder = "plots" if path.suffix == ".png" else None
        self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def close(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


SINKS = {"tensorboard": lambda out: TensorBoardSink(Path(out) / "tensorboard"),
         "mlflow": lambda out: MLflowSink(out)}


def make_sinks(loggers: Sequence, out: str | Path | None) -> list:
    """Sink objects from names (``"tensorboard"``, ``"mlflow"``: inside ``out``) or objects."""
    if isinstance(loggers, str):
        loggers = [loggers]
    sinks = []
    for item in loggers:
        if isinstance(item, str):
            if item not in SINKS:
                raise ValueError(f"unknown logger {item!r}; choose from {', '.join(SINKS)} "
                                 "or pass a sink object")
            if out is None:
                raise ValueError(f"the {item!r} logger writes inside the run directory: pass out=")
            sinks.append(SINKS[item](out))
        else:
            missing = [m for m in ("log_params", "log_row", "log_artifact", "close")
                       if not callable(getattr(item, m, None))]
            if missing:
                raise TypeError(f"{type(item).__name__} is not a sink (no {', '.join(missing)})")
            sinks.append(item)
    return sinks
