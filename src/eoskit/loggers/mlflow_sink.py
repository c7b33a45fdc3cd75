"""An MLflow run in ``sqlite:///RUN/mlflow.db`` by default (MLflow 3 refuses its old
file store), artifacts in ``RUN/mlartifacts``."""

from __future__ import annotations

import time
from pathlib import Path

from eoskit.loggers.sink import NamedSink, flat_params, scalars

# a run's status as MLflow's
_STATUS = {"completed": "FINISHED", "diverged": "FAILED", "failed": "FAILED"}


class MLflowSink(NamedSink):
    """One MLflow run: params = config, metrics = columns at ``step``, files as artifacts.

    ``uri`` defaults to ``sqlite:///RUN_DIR/mlflow.db``, and a new experiment's
    artifacts then go to ``RUN_DIR/mlartifacts`` (a server's URI keeps its own
    artifact store). ``run_id``: continue that MLflow run (a resumed run) instead
    of creating one; a (metric, step) that run already holds is never logged again.
    Uses an ``MlflowClient`` (no global active run is started,
    so the caller's own MLflow state is untouched).
    """

    name = "mlflow"

    def __init__(self, run_dir: str | Path, uri: str | None = None,
                 experiment: str = "eoskit", run_name: str | None = None,
                 run_id: str | None = None):
        from mlflow.tracking import MlflowClient

        self.run_dir = Path(run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.given_uri = uri
        self.uri = uri or f"sqlite:///{self.run_dir / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri)
        self.logged: set[tuple[str, int]] = set()  # (metric, step) the run holds already
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            self.run_id = run_id
            self.logged = self._logged()
            return
        found = self.client.get_experiment_by_name(experiment)
        where = None if uri else (self.run_dir / "mlartifacts").as_uri()
        exp_id = found.experiment_id if found is not None else self.client.create_experiment(
            experiment, artifact_location=where)
        self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id

    @classmethod
    def open(cls, out, options=None, saved=None, start=0) -> MLflowSink:
        """An MLflow run named after ``out``: the saved one if the log goes on from
        ``start`` > 0, else a new one; at ``mlflow_uri`` (the option, else the saved)."""
        options, saved = options or {}, saved or {}
        run_id = saved.get("mlflow_run_id") if start > 0 else None
        sink = cls(out, options.get("mlflow_uri") or saved.get("mlflow_uri"),
                   run_id=run_id, run_name=Path(out).name)
        sink.continued = run_id is not None
        return sink

    def _logged(self) -> set[tuple[str, int]]:
        """Every (metric, step) of the continued run: a process killed after logging rows
        and before recording how far it got must not have them logged twice on resume
        (MLflow cannot delete a metric's history; a resume's rows are the same values)."""
        keys = self.client.get_run(self.run_id).data.metrics
        return {(k, m.step) for k in keys for m in self.client.get_metric_history(self.run_id, k)}

    def saved_state(self) -> dict:
        return {"mlflow_uri": self.given_uri, "mlflow_run_id": self.run_id}

    def log_params(self, config: dict) -> None:
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in flat_params(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log_row(self, row: dict) -> None:
        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), int(row["step"])
        metrics = [Metric(k, v, now, step) for k, v in scalars(row).items()
                   if (k, step) not in self.logged]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def log_artifact(self, path: Path) -> None:
        path = Path(path)
        folder = "plots" if path.suffix == ".png" else None
        self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def close(self, status: str = "completed") -> None:
        """MLflow's run status: FINISHED (completed), FAILED (diverged, failed), KILLED
        (interrupted: a resume sets it RUNNING again); tag ``eoskit.status`` = ours."""
        self.client.set_tag(self.run_id, "eoskit.status", status)
        self.client.set_terminated(self.run_id, _STATUS.get(status, "KILLED"))
