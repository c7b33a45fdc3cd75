"""What a sink is, and the row and config forms every sink shares.

A sink is any object with four methods, called in this order by
:class:`eoskit.Monitor` (and by any training loop that wants them)::

    sink.log_params(config: dict)    # once, at the start
    sink.log_row(row: dict)          # each completed metrics row ("step" is the step)
    sink.log_artifact(path: Path)    # files at the end (metrics.csv, summary.json, plots)
    sink.close()                     # once

Rows are the ``metrics.csv`` rows: every numeric cell except ``step`` is one
scalar at ``step = row["step"]``; None, non-finite and non-numeric cells are
skipped.

A sink that ``eoskit run --log NAME`` and ``Monitor(loggers=("NAME",))`` can
open by name is a :class:`NamedSink`: it also says how it is opened in a run
directory and what it keeps to continue there after a resume.

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
from pathlib import Path
from typing import ClassVar, Protocol

SINK_METHODS = ("log_params", "log_row", "log_artifact", "close")


class Sink(Protocol):
    def log_params(self, config: dict) -> None: ...
    def log_row(self, row: dict) -> None: ...
    def log_artifact(self, path: Path) -> None: ...
    def close(self) -> None: ...


class NamedSink:
    """A sink found by name in :data:`eoskit.loggers.SINKS`."""

    name: ClassVar[str]  # its --log name
    continued: bool = False  # opened onto the log an earlier session of the run began

    @classmethod
    def open(cls, out: Path, options: dict | None = None, saved: dict | None = None,
             start: int = 0) -> NamedSink:
        """The sink of the run directory ``out``.

        ``options``: the run's ``[log]`` table (e.g. ``mlflow_uri``); ``saved``: the
        run's logger state from the session a resume continues (None: the sink is new
        to the run), holding what :meth:`saved_state` returned; ``start``: the first
        step it will be given. A sink that does not continue its log (``continued``
        False) is given the run's params and every row from step 0.
        """
        raise NotImplementedError

    def saved_state(self) -> dict:
        """What a resume needs to continue this sink's log (keys prefixed by its name)."""
        return {}

    def log_params(self, config: dict) -> None:
        raise NotImplementedError

    def log_row(self, row: dict) -> None:
        raise NotImplementedError

    def log_artifact(self, path: Path) -> None:
        raise NotImplementedError

    def close(self, status: str = "completed") -> None:
        """Close at the run's end; ``status``: the run's (completed, diverged, interrupted...)."""
        raise NotImplementedError


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
