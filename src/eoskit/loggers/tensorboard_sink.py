"""TensorBoard event files (``torch.utils.tensorboard``, which needs the ``tensorboard``
package), one scalar tag per metrics column."""

from __future__ import annotations

import json
from pathlib import Path

from eoskit.loggers.sink import NamedSink, scalars


class TensorBoardSink(NamedSink):
    """TensorBoard event files in ``log_dir``: one scalar tag per metrics column."""

    name = "tensorboard"

    def __init__(self, log_dir: str | Path, purge_step: int | None = None):
        # purge_step: a resumed run's first re-logged step; TensorBoard hides the
        # events at and after it that an earlier session wrote
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)

    @classmethod
    def open(cls, out, options=None, saved=None, start=0) -> TensorBoardSink:
        """``out/tensorboard``, its events from ``start`` on hidden (they are logged again)."""
        sink = cls(Path(out) / "tensorboard", purge_step=start)
        sink.continued = saved is not None and start > 0
        return sink

    def log_params(self, config: dict) -> None:
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=1, default=str)
                             + "\n```", 0)

    def log_row(self, row: dict) -> None:
        for key, value in scalars(row).items():
            self.writer.add_scalar(key, value, global_step=int(row["step"]))

    def log_artifact(self, path: Path) -> None:
        pass  # event files hold scalars; the run directory holds the files

    def close(self, status: str = "completed") -> None:
        self.writer.flush()
        self.writer.close()
