"""``eoskit run --log tensorboard,mlflow``: the run's rows into loggers, exactly once.

The loggers are the named sinks of :data:`eoskit.loggers.SINKS`; each
says how it opens in the run directory and what it keeps to continue its log.

Loggers never change a run's numbers, so they are not part of its
``RunConfig`` (nor of its identity): the choice is kept in
``RUN/loggers.json`` beside the MLflow run id and ``logged_below``, the
first step the loggers have not received. A resumed run reads it and goes on
logging into the same TensorBoard directory and the same MLflow run.

Rows reach the loggers only once they are durable: at each checkpoint (the
rows ``metrics.csv`` holds then) and at the run's end (completed or diverged).
A crash or an interrupt loses the rows after the last checkpoint from
``metrics.csv`` (a resume cuts them and computes them again), and those rows
never reached the loggers either, so the loggers hold exactly the rows of
``metrics.csv``, each once. On resume the rows of ``metrics.csv`` at or after
``logged_below`` (a crash between writing a checkpoint and logging it) are
logged first; a logger named at ``--resume`` that the run did not have gets all
of ``metrics.csv``'s rows. Without checkpoints (``checkpoint_every = 0``) every row is
logged at once; a resume of such a run starts over from step 0, so it starts
a new MLflow run and TensorBoard hides the old events (``purge_step``). If a
resume falls back to an older checkpoint (the newest unreadable), or a kill
came between logging rows and recording ``logged_below``, TensorBoard hides the
events after it, and MLflow (which cannot delete a metric's history) skips the
steps its run already holds: the same values, as resume is row-identical.
"""

from __future__ import annotations

from pathlib import Path

from eoskit import store
from eoskit.loggers import SINKS, parse_loggers

STATE = "loggers.json"


def open_run_loggers(out: Path, log: dict | None, *, resumed: bool, cfg) -> RunLoggers | None:
    """The run's loggers: those ``log`` names, else (resuming) the stored ones; None if none."""
    log = log or {}
    names = parse_loggers(log.get("loggers"))
    if not names and not (resumed and (Path(out) / STATE).exists()):
        return None
    options = {k: v for k, v in log.items() if k != "loggers"}
    return RunLoggers(out, names, options, resumed=resumed, stream=not cfg.checkpoint_every,
                      params=cfg.model_dump(mode="json"))


class RunLoggers:
    """The loggers of one ``eoskit run``: buffer rows, hand them on when durable."""

    def __init__(self, out: Path, names: list[str], options: dict, *,
                 resumed: bool, stream: bool, params: dict):
        self.out = Path(out)
        old = store.read_json(self.out / STATE) if resumed and (self.out / STATE).exists() \
            else {}
        names = names or old.get("loggers", [])
        self.state = {"loggers": names}
        self.stream = stream
        self.buffer: list[dict] = []
        rows = store.read_rows(self.out / "metrics.csv") if resumed else []
        next_step = rows[-1]["step"] + 1 if rows else 0
        # a logger the run had gets the rows from where it stopped; one added now, all of them
        had = set(old.get("loggers", []))
        below = min(old.get("logged_below", 0), next_step)
        self.sinks = []
        for name in names:
            start = below if name in had else 0
            sink = SINKS[name].open(self.out, options, old if name in had else None, start)
            if not sink.continued:
                sink.log_params(params)
                start = 0
            for row in rows:
                if row["step"] >= start:
                    sink.log_row(row)
            self.state.update(sink.saved_state())
            self.sinks.append(sink)
        self.state["logged_below"] = next_step
        self.flush()

    def write(self, row: dict) -> None:
        self.buffer.append(dict(row))
        if self.stream:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered rows on; record how far the loggers got."""
        for row in self.buffer:
            for sink in self.sinks:
                sink.log_row(row)
            self.state["logged_below"] = int(row["step"]) + 1
        self.buffer = []
        store.write_json(self.out / STATE, self.state)

    def finish(self, status: str) -> None:
        """At the run's end: the last rows, then the files (for a final status), then close
        each sink with the run's status."""
        if status in ("completed", "diverged"):
            self.flush()
            files = [self.out / n for n in ("metrics.csv", "summary.json", "config.json")]
            files += sorted((self.out / "plots").glob("*.png"))
            for sink in self.sinks:
                for path in files:
                    if path.exists():
                        sink.log_artifact(path)
        for sink in self.sinks:
            sink.close(status)


class LoggedTable:
    """``metrics.csv``'s log, each row also handed to :class:`RunLoggers`."""

    def __init__(self, table, loggers: RunLoggers):
        self.table, self.loggers = table, loggers

    def write(self, row: dict) -> None:
        self.table.write(row)
        self.loggers.write({c: row[c] for c in self.table.columns if c in row})

    def __getattr__(self, name):
        return getattr(self.table, name)
