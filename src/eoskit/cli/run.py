"""``eoskit run``: one training run into a run directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from eoskit.cli import app
from eoskit.cli._common import EXIT_DIVERGED, EXIT_FAILED, UsageError, handle_errors

_O = typer.Option


@app.command("run")
@handle_errors
def run_cmd(
    out: Path = _O(None, "--out", help="Run directory to write."),
    config: Optional[Path] = _O(None, "--config", help="TOML file: a [run] table of options."),
    resume: Optional[Path] = _O(None, "--resume", help="Continue the run in this directory."),
    dataset: Optional[str] = _O(None, help="mnist-5k, digits, fashion-mnist, mnist, cifar10, "
                                "synthetic, synthetic-chebyshev."),
    data_dir: Optional[str] = _O(None, help="Folder with IDX files or cifar-10-batches-py."),
    n_train: Optional[int] = _O(None), n_test: Optional[int] = _O(None),
    classes: Optional[str] = _O(None, help="Comma-separated class subset, e.g. 0,1,2."),
    data_seed: Optional[int] = _O(None),
    model: Optional[str] = _O(None, help="fc-tanh, fc-relu, fc-elu, fc-gelu, fc-softplus, "
                              "cnn-relu, cnn-tanh."),
    width: Optional[int] = _O(None), depth: Optional[int] = _O(None),
    loss: Optional[str] = _O(None, help="mse or ce."),
    seed: Optional[int] = _O(None),
    optimizer: Optional[str] = _O(None, help="gd, polyak, nesterov, sgd."),
    lr: Optional[float] = _O(None, help="Learning rate η."),
    beta: Optional[float] = _O(None, help="Momentum (polyak, nesterov)."),
    batch_size: Optional[int] = _O(None, help="Mini-batch size (sgd)."),
    steps: Optional[int] = _O(None),
    dtype: Optional[str] = _O(None, help="float32 or float64."),
    device: Optional[str] = _O(None, help="cpu, cuda, cuda:N."),
    physical_batch: Optional[int] = _O(None, help="Chunk size for full-batch passes."),
    hvp_method: Optional[str] = _O(None, help="retained, rev-rev, fwd-rev."),
    sharpness_every: Optional[int] = _O(None, help="Measure sharpness every K steps (0: never)."),
    neigs: Optional[int] = _O(None, help="Top-k eigenvalues to track."),
    eig_tol: Optional[float] = _O(None, help="Eigen-residual tolerance ‖Hv−λv‖ ≤ tol·|λ|."),
    eig_restart_every: Optional[int] = _O(
        None, help="Random-start probe every K solves; it replaces the tracked vectors only "
        "if it finds a larger value."),
    eig_mode: Optional[str] = _O(None, help="lanczos (converged to --eig-tol) or streaming "
                                 "(~1 HVP/step; use --eig-tol 1e-2)."),
    eig_criterion: Optional[str] = _O(None, help="residual (‖Hv−λv‖ ≤ tol·|λ|) or "
                                      "eigenvalue (estimated |λ−θ| ≤ tol·|λ|)."),
    eval_every: Optional[int] = _O(None, help="Test metrics every K steps."),
    diagnose_every: Optional[int] = _O(None, help="Edge-coupling diagnostics every K steps."),
    diagnose_nodes: Optional[int] = _O(None, help="Gauss-Legendre nodes for the diagnostics."),
    stop_loss: Optional[float] = _O(None, help="Stop once the train loss is below this."),
    checkpoint_every: Optional[int] = _O(None, help="Checkpoint every N steps (0: never)."),
    deterministic: Optional[bool] = _O(None, help="torch.use_deterministic_algorithms."),
    progress: bool = _O(sys.stderr.isatty(), help="Show a progress bar."),
    json_out: bool = _O(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Train with full-batch GD (or momentum/SGD), tracking sharpness; write a run directory.

    Exit status: 0 completed, 2 bad input, 3 diverged.
    """
    from eoskit.config import run_config_from
    from eoskit.train import train

    opts = {k: v for k, v in locals().items() if k not in (
        "out", "config", "resume", "progress", "json_out", "run_config_from", "train")}
    if opts["classes"] is not None:
        try:
            opts["classes"] = tuple(int(c) for c in opts["classes"].split(","))
        except ValueError as err:
            raise UsageError(
                f"--classes must be comma-separated integers, got {classes!r}") from err
    if resume is not None:
        given = [k for k, v in opts.items() if v is not None]
        if given or config is not None:
            dropped = ", ".join("--" + g.replace("_", "-") for g in given) or "--config"
            raise UsageError("--resume takes the configuration from the run directory; "
                             f"drop {dropped}")
        summary = train(None, resume, resume=True, progress=progress)
        run_dir = resume
    else:
        if out is None:
            raise UsageError("--out DIR is required (or --resume DIR)")
        cfg = run_config_from(config, opts)
        summary = train(cfg, out, progress=progress)
        run_dir = out
    _report(summary, run_dir, json_out)
    if summary["status"] == "diverged":
        raise typer.Exit(EXIT_DIVERGED)
    if summary["status"] == "interrupted":
        raise typer.Exit(EXIT_FAILED)


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
