"""``eoskit flow``: GD beside gradient flow and the central flow, from one start.

Examples::

    eoskit flow --config examples/flow_mnist_small.toml --steps 300 --every 2 --out runs/flows
    eoskit flow --objective my_loss.py:loss --x0 0.1,0.2 --lr 0.5 --steps 200 --out DIR
    eoskit flow --resume DIR

``--config`` is a TOML file with a ``[run]`` table as ``eoskit run`` reads it
(optimizer gd); ``--objective`` is a built-in, ``FILE.py:NAME`` or
``package.module:NAME`` as ``eoskit orbits`` takes it. Time is in GD steps.
``--optimizer rmsprop`` (or a configuration with optimizer rmsprop) follows
torch's RMSprop instead: its stable flow as ``gradient`` and its central flow
(:mod:`eoskit.flows.rmsprop_central`) as ``central``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from eoskit.cli._common import (
    EXIT_DIVERGED,
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


def _problem(source: dict, lr: float | None, steps: int | None):
    """(objective, x0, lr, steps, source) from a resolved source description."""
    if source["kind"] == "config":
        from eoskit.training.config import RunConfig
        from eoskit.training.run_problem import build_problem

        cfg = RunConfig(**source["run"])
        if cfg.optimizer not in ("gd", "rmsprop"):
            raise UsageError(f"eoskit flow follows gd or rmsprop; the configuration has "
                             f"optimizer {cfg.optimizer!r}")
        # a resume rebuilds from the same user component files, or refuses (exit 2)
        problem = build_problem(cfg, source.get("components"))
        source["components"] = problem.components  # stored in flow_config.json
        return (problem.train, problem.x0, cfg.lr if lr is None else lr,
                cfg.steps if steps is None else steps)
    from eoskit.components import check_unchanged, is_spec, spec_record
    from eoskit.testfns import load_objective

    if is_spec(source["objective"]):  # a resume refuses an objective file that changed
        current = {"objective": spec_record(source["objective"])}
        check_unchanged(source.get("components"), current)
        source["components"] = current
    problem = load_objective(source["objective"], source.get("x0"))
    if lr is None:
        raise UsageError("--lr is required with --objective")
    return (problem.objective, problem.x0.to(problem.objective.dtype), lr,
            200 if steps is None else steps)


def _source(config: Path | None, objective: str | None, x0: str | None, run: dict) -> dict:
    """The problem: a training configuration (``--config`` and/or the run options) or an
    objective; ``run``: the run options given (lr, steps, optimizer, ... included)."""
    flow_fields = {"lr", "steps", "optimizer", "alpha", "eps"}
    problem_opts = sorted(k for k, v in run.items() if v is not None and k not in flow_fields)
    if objective is not None:
        if config is not None or problem_opts:
            given = "--config" if config is not None else _flag(problem_opts[0])
            raise UsageError(f"{given} describes a training problem; --objective is one "
                             "already: give one of them")
        return {"kind": "objective", "objective": objective, "x0": x0}
    if config is None and not problem_opts:
        raise UsageError("give exactly one of a training problem (--config and/or run "
                         "options such as --dataset, --model) or --objective (or --resume DIR)")
    if x0 is not None:
        raise UsageError("--x0 is for --objective; a configuration starts at its model's "
                         "initialisation")
    from eoskit.training.config import run_config_from

    cfg = run_config_from(config, run)
    return {"kind": "config", "run": cfg.model_dump(mode="json")}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@app.command("flow")
@handle_errors
# the run options, but the flow's own tracker and checkpoints keep their flow meaning
@with_model_options(RunConfig, after="json_out", skip=("neigs", "eig_tol", "checkpoint_every"))
def flow_cmd(
    out: Optional[Path] = _O(None, "--out", help="Folder for flows.csv, summary.json, plots/."),
    config: Optional[Path] = _O(None, "--config", help=plain_help(
        "TOML file with a [run] table (gd or rmsprop).")),
    objective: Optional[str] = _O(None, "--objective", help="Built-in, FILE.py:NAME or "
                                  "package.module:NAME."),
    x0: Optional[str] = _O(None, "--x0", help="Start for --objective: comma-separated numbers "
                           "or an .npy file."),
    every: int = _O(1, "--every", help="Record every M steps."),
    flows: list[str] = _O(["gradient", "central"], "--flows", help="gradient, central; "
                          "repeat the option or separate with commas."),
    substeps: int = _O(4, "--substeps", help="Central flow: Euler substeps K per GD step."),
    fraction: float = _O(0.75, "--fraction", help="Central flow: eigenvalues ≥ fraction·2/η "
                         "enter the X solve."),
    neigs: int = _O(3, "--neigs", help="Central flow: top-k eigenvalues tracked."),
    eig_tol: float = _O(1e-5, "--eig-tol", help="Eigen-residual tolerance of the trackers."),
    window: int = _O(21, "--window", help="GD's centred moving average (odd, in steps)."),
    method: str = _O("RK45", "--method", help="Gradient flow: RK45, DOP853 or RK23."),
    rtol: float = _O(1e-6, "--rtol", help="Gradient flow: relative tolerance."),
    atol: float = _O(1e-9, "--atol", help="Gradient flow: absolute tolerance."),
    checkpoint_every: int = _O(0, "--checkpoint-every", help="Checkpoint every N steps "
                               "(a multiple of --every; 0: never)."),
    resume: Optional[Path] = _O(None, "--resume", help="Continue the flows run in this folder."),
    overwrite: bool = _O(False, "--overwrite", help="Replace the flows run in --out (its "
                         "files go first)."),
    json_out: bool = _O(False, "--json", help="Print the summary as JSON."),
    progress: bool = _O(sys.stderr.isatty(), help="Show a progress bar (GD's loss and "
                        "sharpness)."),
    **fields,
) -> None:
    """Run GD and integrate gradient flow and the central flow from the same start.

    The problem: --config and/or any `eoskit run` option (overriding --config's), or --objective.

    --neigs, --eig-tol and --checkpoint-every are the flow's own, not the run's.

    --resume of a run that already completed (or diverged) prints its summary and changes
    nothing.

    Exit status: 0 completed, 2 bad input, 3 diverged, 4 I/O failure, 130 interrupted.
    """
    from eoskit import store
    from eoskit.flows.flow_run import FlowSettings, finished_flows, read_flow_config, run_flows
    from eoskit.plots.flows_figures import plot_flows
    from eoskit.training.progress import progress_bar

    run = option_values(RunConfig, fields)
    lr, steps = run["lr"], run["steps"]
    if resume is not None:
        if any(v is not None for v in (out, config, objective, x0, *run.values())):
            raise UsageError("--resume takes everything from the folder; give nothing else")
        store.check_owner(resume, "flows")
        settings, source = read_flow_config(resume)
        out = resume
        finished = finished_flows(out, settings, source)
        if finished is not None:  # nothing to run: its data and model are not built, but a
            # resume refuses a changed component file, finished or not
            from eoskit.components import check_files

            check_files(source.get("components"))
            _report(finished, out, json_out)
            return
        obj, x_start, _, _ = _problem(source, settings.lr, settings.steps)
    else:
        if out is None:
            raise UsageError("--out DIR is required (or --resume DIR)")
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} exists and is not a directory")
        source = _source(config, objective, x0, run)
        obj, x_start, lr, steps = _problem(source, lr, steps)
        names = tuple(list_option(flows))
        settings = FlowSettings(**_optimizer(source, run["optimizer"], run["alpha"], run["eps"]),
                                lr=lr, steps=steps,
                                every=every, flows=names, substeps=substeps,
                                fraction=fraction, neigs=neigs, eig_tol=eig_tol, window=window,
                                method=method, rtol=rtol, atol=atol,
                                checkpoint_every=checkpoint_every)
    with progress_bar(settings.steps, 0, progress, "flows") as update:
        summary = run_flows(
            obj, x_start, settings, out, source=source, resume=resume is not None,
            overwrite=overwrite,
            on_record=lambda r: update(r["step"], r["loss"], r.get("sharpness")))
    plot_flows(out)
    _report(summary, out, json_out)


def _report(summary: dict, out: Path, json_out: bool) -> None:
    """The run's summary (as JSON or a few lines), then its exit status."""
    from eoskit import store

    if json_out:
        typer.echo(json.dumps(store.clean_json(summary), indent=2))
        _exit_unless_completed(summary, out)
        return
    typer.echo(f"flows: {out}  (status {summary['status']}, onset step "
               f"{summary['eos_onset_step']})")
    for name, s in summary["flows"].items():
        rel = _fmt(s["median_rel_loss_error_after_onset"])
        dist = _fmt(s["median_dist_to_gd_after_onset"])
        sharp = _fmt(s["median_sharpness_over_threshold_after_onset"])
        typer.echo(f"  {name:9s} median rel. loss error {rel}  median dist to GD {dist}"
                   f"  sharpness/(2/η) {sharp}")
    _exit_unless_completed(summary, out)


def _exit_unless_completed(summary: dict, out: Path) -> None:
    """Exit 130 (interrupted) or 3 (diverged) with one line, as ``eoskit run`` does."""
    if summary["status"] == "interrupted":
        exit_interrupted(f"interrupted: {out} (status interrupted; continue it with "
                         f"'eoskit flow --resume {out}')")
    if summary["status"] == "diverged":
        fail(f"diverged: a loss or iterate stopped being finite by step {summary['last_step']} "
             f"(status diverged in {out / 'summary.json'})", EXIT_DIVERGED)


def _optimizer(source: dict, optimizer, alpha, eps) -> dict:
    """FlowSettings' optimizer fields: the option, else the configuration's, else gd."""
    run = source.get("run", {})
    opt = optimizer or run.get("optimizer", "gd")
    if opt != "rmsprop":
        if alpha is not None or eps is not None:
            raise UsageError("--alpha and --eps are for --optimizer rmsprop")
        return {"optimizer": opt}
    alpha = alpha if alpha is not None else run.get("alpha")
    eps = eps if eps is not None else run.get("eps")
    return {"optimizer": opt, **({} if alpha is None else {"alpha": alpha}),
            **({} if eps is None else {"eps": eps})}


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.4g}"
