"""``eoskit run``: one training run into a run directory."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from eoskit import store
from eoskit.cli._common import (
    EXIT_DIVERGED,
    EXIT_FAILED,
    UsageError,
    exit_interrupted,
    fail,
    handle_errors,
    list_option,
    option_values,
    plain_help,
    with_model_options,
)
from eoskit.cli.app import app
from eoskit.training.config import RunConfig

_O = typer.Option


@app.command("run")
@handle_errors
@with_model_options(RunConfig, after="resume")
def run_cmd(
    out: Optional[Path] = _O(None, "--out", help="Run directory to write."),
    config: Optional[Path] = _O(None, "--config",
                                help=plain_help("TOML file: a [run] table of options.")),
    resume: Optional[Path] = _O(None, "--resume", help="Continue the run in this directory."),
    overwrite: bool = _O(False, "--overwrite",
                         help="Replace the run already in --out (its checkpoints too)."),
    progress: bool = _O(sys.stderr.isatty(), help="Show a progress bar."),
    json_out: bool = _O(False, "--json", help="Print the summary as JSON."),
    nproc: int = _O(1, "--nproc", min=1, help="Worker processes for this one run "
                    "(data-parallel; results do not depend on it). Under torchrun, leave it."),
    log: Optional[list[str]] = _O(None, "--log", help=plain_help(
        "Loggers besides metrics.csv: tensorboard, mlflow, wandb; repeat the option or "
        "separate with commas; added to --config's [log] loggers (a resume keeps the run's "
        "own).")),
    mlflow_uri: Optional[str] = _O(None, "--mlflow-uri", help="MLflow tracking URI "
                                   "(default sqlite:///RUN/mlflow.db)."),
    **fields,
) -> None:
    """Train with full-batch GD (or momentum/SGD), tracking sharpness; write a run directory.

    Every run-configuration field is an option; one given overrides --config's value.

    Exit status: 0 completed, 2 bad input, 3 diverged, 4 I/O failure, 130 interrupted.
    """
    from eoskit.training.config import run_config_from

    opts = option_values(RunConfig, fields)
    if resume is not None:
        given = [k for k, v in opts.items() if v is not None]
        if overwrite:
            raise UsageError("--resume continues the run in the directory; --overwrite "
                             "replaces it: choose one")
        if given or config is not None:
            dropped = ", ".join("--" + g.replace("_", "-") for g in given) or "--config"
            raise UsageError("--resume takes the configuration from the run directory; "
                             f"drop {dropped}")
        store.check_owner(resume, "run")  # before its config.json is read as a run's
        summary = _train(None, resume, nproc, resume=True, progress=progress,
                         log=_log_options(None, log, mlflow_uri, resumed=True))
        run_dir = resume
    else:
        if out is None:
            raise UsageError("--out DIR is required (or --resume DIR)")
        cfg = run_config_from(config, opts)
        summary = _train(cfg, out, nproc, progress=progress, overwrite=overwrite,
                         log=_log_options(config, log, mlflow_uri))
        run_dir = out
    if summary is None:  # a rank other than 0 under torchrun: rank 0 reports
        return
    if summary["status"] == "interrupted":
        exit_interrupted(f"interrupted after {summary.get('steps')} steps; continue with "
                         f"'eoskit run --resume {run_dir}'")
    _report(summary, run_dir, json_out)
    if summary["status"] == "diverged":
        fail(f"diverged at step {summary.get('steps')} (status diverged in "
             f"{Path(run_dir) / 'summary.json'})", EXIT_DIVERGED)
    if summary["status"] == "failed":
        raise typer.Exit(EXIT_FAILED)


def _train(cfg: RunConfig | None, out: Path, nproc: int, **train_kw) -> dict | None:
    """The run in this process; over ``nproc`` local processes, or as a rank of a
    ``torchrun`` launch (which sets ``RANK`` and ``WORLD_SIZE``), by :mod:`eoskit.distributed`.
    The summary, or None on a rank other than 0."""
    if nproc == 1 and not {"RANK", "WORLD_SIZE"} <= os.environ.keys():
        from eoskit.training import loop

        return loop.train(cfg, out, **train_kw)
    if cfg is None and train_kw.get("resume"):
        from eoskit.training.run_state import stored_config

        cfg = stored_config(out, None)
    from eoskit.distributed.launch import train_parallel

    return train_parallel(cfg, out, nproc=nproc, **train_kw)


def _log_options(config: Path | None, log: list[str] | None, mlflow_uri: str | None,
                 resumed: bool = False) -> dict:
    """The TOML file's ``[log]`` table (``loggers``, ``mlflow_uri``) merged with the options:
    --log adds loggers to the table's, --mlflow-uri replaces its URI."""
    from eoskit.loggers.run_logging import parse_loggers
    from eoskit.training.config import load_toml

    table = {}
    if config is not None:
        data = load_toml(config)
        table = data.get("log", {}) if "run" in data else {}
        if not isinstance(table, dict) or set(table) - {"loggers", "mlflow_uri"}:
            raise UsageError(f"{config}: [log] takes loggers = [\"tensorboard\", \"mlflow\", "
                             "\"wandb\"] and mlflow_uri = \"URI\"")
    try:
        names = parse_loggers(parse_loggers(table.get("loggers")) + (list_option(log) or []))
    except ValueError as err:
        raise UsageError(f"--log: {err}") from None
    uri = mlflow_uri or table.get("mlflow_uri")
    # a resume naming no logger keeps the run's own, which may be mlflow
    if uri is not None and "mlflow" not in names and (names or not resumed):
        raise UsageError("--mlflow-uri is for the mlflow logger: add --log mlflow")
    if uri is not None:
        _check_mlflow_uri(uri)
    return {"loggers": names, "mlflow_uri": uri}


def _check_mlflow_uri(uri: str) -> None:
    """Before the run starts: a folder is bad input (MLflow 3 tracks in a database or on a
    server), a server that does not answer is an I/O failure (MLflow itself retries for
    minutes, then fails with a traceback)."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlparse

    scheme = urlparse(uri).scheme
    if scheme in ("", "file"):
        raise UsageError(f"--mlflow-uri {uri}: MLflow tracks in a database or on a server, "
                         "not a folder: give sqlite:///PATH/mlflow.db or http://HOST:PORT")
    if scheme not in ("http", "https"):
        return  # sqlite:///..., databricks, ...: MLflow's own to open
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10).close()
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        code = getattr(reason, "errno", None) or errno.EHOSTUNREACH
        raise OSError(code, f"MLflow server {uri} does not answer") from None


def _report(summary: dict, run_dir: Path, json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
        return
    def fmt(v):
        return "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

    keys = ["status", "steps", "final_loss", "threshold", "initial_sharpness", "eos_onset_step",
            "sharpness_after_onset_median_over_threshold",
            "sharpness_after_onset_max_over_threshold",
            "eff_curvature_weighted_mean_over_threshold"]
    typer.echo(f"run directory: {run_dir}")
    for k in keys:
        typer.echo(f"  {k:45s} {fmt(summary.get(k))}")
