"""A Weights & Biases run: the config as its run config, one metric per metrics column,
the figures as images; files under ``RUN/wandb`` (offline) or synced (online).

``WANDB_MODE=offline`` (W&B's own setting) keeps everything on disk, to be sent later
with ``wandb sync RUN/wandb/offline-run-*``; online needs ``wandb login`` first.
A resumed eoskit run continues the same W&B run id (kept in ``RUN/loggers.json``).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from eoskit.loggers.sink import NamedSink, scalars

# a run's status as the process exit code W&B records for it
_EXIT_CODE = {"completed": 0, "diverged": 3, "failed": 1}
_FLUSH_SECONDS = 0.1


class WandbSink(NamedSink):
    """One W&B run: config = the run's, metrics = columns at ``step``, plots as images.

    ``run_id``: continue that W&B run (a resumed eoskit run) instead of starting one.
    ``project`` defaults to ``$WANDB_PROJECT``, else ``eoskit``. The run is W&B's
    ``reinit="create_new"`` kind: it is not the global ``wandb.run`` the caller may own.
    """

    name = "wandb"

    def __init__(self, run_dir: str | Path, project: str | None = None,
                 run_name: str | None = None, run_id: str | None = None):
        import wandb
        import wandb.errors

        self.run_dir = Path(run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # no console capture (it would wrap eoskit's own output), no system-metrics sampler;
        # W&B's service buffers the run file and writes it every flush interval (15 s by
        # default): a killed run loses what the buffer held, so the interval is short
        settings = wandb.Settings(console="off", x_disable_stats=True, silent=True,
                                  disable_git=True, disable_code=True,
                                  x_transaction_log_flush_interval=_FLUSH_SECONDS)
        try:
            self.run = wandb.init(project=project or os.environ.get("WANDB_PROJECT", "eoskit"),
                                  dir=str(self.run_dir), id=run_id, name=run_name,
                                  resume="allow" if run_id else None, reinit="create_new",
                                  settings=settings)
        except wandb.errors.CommError as err:  # no answer from the server: I/O
            raise OSError(errno.EHOSTUNREACH, f"W&B server: {err}") from None
        except (wandb.errors.Error, ValueError) as err:  # no login, a bad WANDB_* setting
            raise ValueError(f"W&B could not start a run: {str(err).splitlines()[0]} "
                             "(or set WANDB_MODE=offline)") from None
        self.run_id = self.run.id

    @classmethod
    def open(cls, out, options=None, saved=None, start=0) -> WandbSink:
        """A W&B run named after ``out``: the saved one if the log goes on from ``start``
        > 0, else a new one."""
        options, saved = options or {}, saved or {}
        run_id = saved.get("wandb_run_id") if start > 0 else None
        sink = cls(out, options.get("wandb_project"), run_name=Path(out).name, run_id=run_id)
        sink.continued = run_id is not None
        return sink

    def saved_state(self) -> dict:
        return {"wandb_run_id": self.run_id}

    def log_params(self, config: dict) -> None:
        self.run.config.update(config, allow_val_change=True)

    def log_row(self, row: dict) -> None:
        # committed at once: a row handed over is in W&B's file even if the run is killed
        self.run.log(scalars(row), step=int(row["step"]), commit=True)

    def log_artifact(self, path: Path) -> None:
        """A figure as an image (in one history entry after the last row); other files
        into the run's files folder, which W&B uploads with the run."""
        import wandb

        path = Path(path)
        if path.suffix == ".png":
            self.run.log({f"plots/{path.stem}": wandb.Image(str(path))}, commit=False)
        else:
            shutil.copy2(path, Path(self.run.dir) / path.name)

    def close(self, status: str = "completed") -> None:
        """W&B's exit code: 0 completed, 3 diverged, 1 failed, 130 interrupted (a resume
        continues the run); summary ``eoskit.status`` = ours."""
        self.run.summary["eoskit.status"] = status
        self.run.finish(exit_code=_EXIT_CODE.get(status, 130))
