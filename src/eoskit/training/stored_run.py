"""A stored run read back: configuration, summary, final parameters and objective.

Also a directory written by :class:`eoskit.Monitor` (``config.json`` says
``"source": "monitor"``): its model and data are the user's and are not
stored, so ``objective`` and ``x_final`` are None and ``config`` is the
Monitor's ``config`` table (a dict: model class, loss, optimiser, lr, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from eoskit.objective import ModelObjective
from eoskit.store.checkpoints import load_latest_checkpoint
from eoskit.store.files import read_json
from eoskit.store.tables import read_rows
from eoskit.training.config import RunConfig
from eoskit.training.run_problem import build_problem

MONITOR_SOURCE = "monitor"  # eoskit.monitor.monitor_dir.SOURCE (not imported: no import circle)


@dataclass
class StoredRun:
    """A run directory read back.

    For an ``eoskit run`` directory ``config`` is its :class:`RunConfig`,
    ``objective`` the training objective and ``x_final`` the final (or latest
    checkpointed) parameters. For a Monitor's directory (``source ==
    "monitor"``) ``config`` is the dict the Monitor wrote, and ``objective``
    and ``x_final`` are None: the user's model and data are not in it.
    """

    path: Path
    config: RunConfig | dict
    summary: dict
    x_final: torch.Tensor | None
    objective: ModelObjective | None  # on the training data; None for a Monitor run
    source: str = "run"  # "run" (eoskit run) or "monitor" (eoskit.Monitor)

    @property
    def metrics(self):
        """``metrics.csv`` as a pandas DataFrame: numbers as floats (``step`` as int),
        empty cells as NaN, booleans as booleans."""
        import pandas as pd

        rows = self.metric_rows
        columns = list(rows[0]) if rows else []
        frame = pd.DataFrame(rows, columns=columns)
        for name in columns:
            if name != "step" and frame[name].map(lambda v: v is None or isinstance(v, (int, float))
                                                  and not isinstance(v, bool)).all():
                frame[name] = frame[name].astype(float)
        return frame

    @property
    def metric_rows(self) -> list[dict]:
        """Rows of ``metrics.csv`` as typed dicts (see :func:`read_rows`)."""
        return read_rows(self.path / "metrics.csv")


def load_run(run_dir: str | Path, device: str | None = None) -> StoredRun:
    """A finished (or interrupted) run: its config, summary, final parameters and objective.

    A Monitor's directory gives a :class:`StoredRun` without objective or parameters."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise ValueError(f"{run_dir} is not an eoskit run directory (no config.json)")
    raw = read_json(run_dir / "config.json")
    summary = read_json(run_dir / "summary.json") if (run_dir / "summary.json").exists() else {}
    if raw.get("source") == MONITOR_SOURCE:
        return StoredRun(run_dir, raw["config"], summary, None, None, MONITOR_SOURCE)
    cfg = RunConfig(**raw["config"])
    if device is not None:
        cfg = cfg.model_copy(update={"device": device})
    problem = build_problem(cfg, raw.get("components"))
    x_final = None
    if (run_dir / "params_final.pt").exists():
        x_final = torch.load(run_dir / "params_final.pt", map_location=cfg.device)
    else:
        latest = load_latest_checkpoint(run_dir / "checkpoints")
        if latest is not None:
            x_final = latest[0]["x"].to(cfg.device)
    return StoredRun(run_dir, cfg, summary, x_final, problem.train)
