"""``eoskit orbits`` and ``eoskit bifurcation``: period-two orbits and the half-amplitude reduction.

Examples::

    eoskit orbits --objective theory-example --lr 1.03 --x0 0.01,0 --gd-steps 3000 --json
    eoskit orbits --objective theory-example --lr 1.01 --predict --json
    eoskit bifurcation --objective theory-example --lr 1.01 --neigs 2 --json
    eoskit bifurcation --objective linear-net --find-minimum --sweep 1.001c:1.03c:8 --out DIR
    eoskit orbits --objective my_loss.py:loss --x0 0.1,0.2 --lr 0.5 --json
    eoskit bifurcation --objective theory-example --precond p.npy --json

``--precond FILE.npy`` (a fixed positive diagonal ``P``, length = dimension)
solves ``∇A_η^P = 0`` instead: the fixed points and period-two orbits of
preconditioned GD ``x' = x − ηP⁻¹∇L(x)``, and ``η_c = 2/λ₁(P⁻¹H)``. It runs
the same solvers on ``L(P^{-1/2} z)`` (:mod:`eoskit.orbits.preconditioned_gd`);
points are reported in ``x``, half-amplitudes as ``|x − y|_P/2``.

``--objective`` is a built-in (see ``eoskit.testfns.BUILTINS``), ``FILE.py:NAME``
or ``package.module:NAME``; ``--run DIR`` uses a trained run's objective and
final parameters instead.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from eoskit import store
from eoskit.cli._common import UsageError, handle_errors
from eoskit.cli.app import app
from eoskit.objective.failures import at_step
from eoskit.store import dumps_json

_O = typer.Option

_OBJECTIVE_HELP = ("Built-in name (theory-example, double-well, supercritical-1d, subcritical-1d, "
                   "linear-net, digits-mlp), FILE.py:NAME or package.module:NAME.")


def _emit_json(payload: dict) -> None:
    typer.echo(dumps_json(payload, indent=None))


def _load_problem(objective: str | None, run: Path | None, x0: str | None,
                  x_star: str | None = None):
    """(problem, run object or None) from --objective/--run and --x0 (or --x-star for the dim)."""
    from eoskit.testfns import BUILTINS, ObjectiveProblem, load_objective, parse_vector

    if (objective is None) == (run is None):
        raise UsageError("give exactly one of --objective or --run")
    if run is not None:
        from eoskit.training.stored_run import load_run

        if not Path(run).is_dir():
            raise FileNotFoundError(f"run directory not found: {run}")
        loaded = load_run(run)
        if loaded.objective is None:  # a Monitor's directory: the user's model is not stored
            raise UsageError(f"{run} was written by eoskit.Monitor: its model and data are "
                             "not stored, so --run cannot rebuild its loss; use --objective")
        obj = loaded.objective
        start = parse_vector(x0 if x0 is not None else x_star, obj.dim,
                             what="x0" if x0 is not None else "x-star")
        if start is None and loaded.x_final is None:
            raise UsageError(f"run {run} has no parameters yet (no params_final.pt, no "
                             "checkpoint): resume it, or give --x0/--x-star")
        start = loaded.x_final.detach() if start is None else start
        return ObjectiveProblem(f"run:{run}", obj, start.to(obj.dtype), None, f"run {run}"), loaded
    if x0 is None and x_star is not None and objective.strip() not in BUILTINS:
        # --x-star alone fixes a plain callable's dimension (and is then also its start)
        return load_objective(objective, x_star, what="x-star"), None
    return load_objective(objective, x0), None


_PRECOND_HELP = ("A fixed positive diagonal preconditioner P (.npy, length = dimension): "
                 "orbits of preconditioned GD x' = x − ηP⁻¹∇L(x), η_c = 2/λ₁(P⁻¹H).")


def _precondition(problem, precond: Path | None):
    """``(problem in z = P^{1/2} x, the PreconditionedObjective)``, or ``(problem, None)``."""
    if precond is None:
        return problem, None
    from eoskit.objective.failures import ObjectiveError
    from eoskit.orbits import PreconditionedObjective
    from eoskit.testfns import ObjectiveProblem
    from eoskit.testfns.loading import read_npy

    try:
        arr = read_npy(precond, "--precond")
    except (FileNotFoundError, ObjectiveError) as err:
        raise UsageError(str(err)) from err
    try:
        pobj = PreconditionedObjective(problem.objective, arr)
    except ValueError as err:
        raise UsageError(f"--precond {precond}: {err}") from err
    x_star = None if problem.x_star is None else pobj.to_z(problem.x_star)
    return ObjectiveProblem(problem.name, pobj, pobj.to_z(problem.x0), x_star,
                            problem.description, problem.meta), pobj


def _in_z(pobj, vec):
    """A user-given point (in x) in the solver's variables."""
    return vec if pobj is None or vec is None else pobj.to_z(vec)


def _check_lr(lr: float | None, run_obj=None) -> float:
    if lr is None and run_obj is not None:
        lr = getattr(run_obj, "lr", None)
        if lr is None:
            cfg = getattr(run_obj, "config", None)
            lr = cfg.get("lr") if isinstance(cfg, dict) else getattr(cfg, "lr", None)
    if lr is None:
        raise UsageError("--lr is required")
    lr = float(lr)
    if not (lr > 0 and math.isfinite(lr)):
        raise UsageError(f"--lr must be positive and finite, got {lr:g}")
    return lr


def _resolve_x_star(problem, x_star: str | None, find_min: bool, from_run: bool, pobj=None):
    """The fixed point to reduce at, and a note on where it came from."""
    from eoskit.orbits import find_minimum
    from eoskit.testfns import parse_vector

    obj = problem.objective
    if x_star is not None:
        start = _in_z(pobj, parse_vector(x_star, obj.dim, what="x-star").to(obj.dtype))
        source = "given"
    elif find_min:
        start, source = problem.x0, "find-minimum"
    elif problem.x_star is not None:
        start, source = problem.x_star.to(obj.dtype), "built-in"
    elif from_run:
        start, source = problem.x0, "run final parameters"
    else:
        raise UsageError(f"{problem.name} has no known fixed point: give --x-star, or "
                         "--find-minimum to converge to one from --x0")
    if find_min:
        with at_step("--find-minimum"):
            res = find_minimum(obj, start)
        if not res.converged:
            typer.echo(f"eoskit: warning: --find-minimum stopped at |grad| = {res.grad_norm:.3g}",
                       err=True)
        return res.x, "find-minimum" if source != "given" else "find-minimum from --x-star"
    return start, source


def _parse_sweep(spec: str, eta_c: float) -> list[float]:
    """LO:HI:N, LO/HI numbers or multiples of η_c written with a trailing 'c' (1.01c)."""
    parts = spec.split(":")
    if len(parts) != 3:
        raise UsageError(f"--sweep must be LO:HI:N (e.g. 1.0:1.05:10 or 1.001c:1.03c:8), "
                         f"got {spec!r}")

    def value(text: str) -> float:
        text = text.strip()
        rel = text.endswith("c")
        try:
            v = float(text[:-1] if rel else text)
        except ValueError as err:
            raise UsageError(f"--sweep: cannot parse {text!r} as a number") from err
        if rel:
            if not math.isfinite(eta_c):
                raise UsageError("--sweep: 'c' (multiple of eta_c) needs a finite eta_c")
            v *= eta_c
        return v

    lo, hi = value(parts[0]), value(parts[1])
    try:
        n = int(parts[2])
    except ValueError as err:
        raise UsageError(f"--sweep: N must be an integer, got {parts[2]!r}") from err
    if n < 2:
        raise UsageError(f"--sweep: N must be at least 2, got {n}")
    if not (0 < lo < hi and math.isfinite(hi)):
        raise UsageError(f"--sweep: need 0 < LO < HI, got LO={lo:g}, HI={hi:g}")
    return list(np.linspace(lo, hi, n))


def _check_orbit_args(y0, gd_steps, predict, x_star, find_min, tol, max_iter, nfloquet) -> None:
    if gd_steps < 0:
        raise UsageError(f"--gd-steps must be ≥ 0, got {gd_steps}")
    if tol <= 0 or max_iter < 1 or nfloquet < 1:
        raise UsageError("--tol must be > 0, --max-iter and --nfloquet at least 1")
    if sum([y0 is not None, gd_steps > 0, predict]) > 1:
        raise UsageError("choose one start: --y0, --gd-steps or --predict")
    if (x_star is not None or find_min) and not predict:
        raise UsageError("--x-star and --find-minimum are for --predict")


def _orbit_start(problem, lr: float, *, y0, gd_steps: int, predict: bool, x_star,
                 find_min: bool, direction: int, from_run: bool, pobj=None):
    """The start pair ``(x, y or None)`` of ``eoskit orbits`` and a note naming it."""
    from eoskit.orbits import gd_iterates, reduce_at_fixed_point
    from eoskit.testfns import parse_vector

    obj = problem.objective
    if predict:
        xs, src = _resolve_x_star(problem, x_star, find_min, from_run, pobj)
        if direction < 0 or direction + 1 > obj.dim:
            raise UsageError(f"--direction must be between 0 and {obj.dim - 1}")
        with at_step("the reduction at x*"):
            red = reduce_at_fixed_point(obj, xs, k=direction + 1)
        return (*red.predicted_orbit(lr, direction), f"predicted (x* {src})")
    if gd_steps > 0:
        return (*gd_iterates(obj, problem.x0, lr, gd_steps), f"gd {gd_steps} steps")
    xb = _in_z(pobj, parse_vector(y0, obj.dim, what="y0") if y0 is not None else None)
    return problem.x0, xb, "pair" if xb is not None else "point"


def _print_orbit(name: str, lr: float, start_note: str, res) -> None:
    typer.echo(f"{name} at lr={lr:g} (start: {start_note})")
    typer.echo(f"  kind            {res.kind}" + ("" if res.converged else "  (NOT converged)"))
    typer.echo(f"  half-amplitude  {res.half_amplitude:.10g}")
    typer.echo(f"  residual |∇A|   {res.residual:.3g}  ({res.iterations} Newton steps)")
    mods = ", ".join(f"{abs(m):.6g}" for m in res.floquet)
    typer.echo(f"  |Floquet|       {mods}")
    typer.echo(f"  stable          {res.stable}  (neutral multipliers: {res.n_neutral})")
    chk = res.orbit_checks
    if chk.get("averaged_hessian") is not None:
        typer.echo(f"  checks          |H̄s − (2/η)s|/|(2/η)s| = {chk['averaged_hessian']:.2g}, "
                   f"|κx+κy−4/η|/(4/η) = {chk['kappa_sum']:.2g}")


@app.command("orbits")
@handle_errors
def orbits_cmd(
    objective: Optional[str] = _O(None, "--objective", help=_OBJECTIVE_HELP),
    run: Optional[Path] = _O(None, "--run", help="Run directory: its objective and final "
                             "parameters (default --x0)."),
    lr: Optional[float] = _O(None, "--lr", help="Learning rate η."),
    x0: Optional[str] = _O(None, "--x0", help="Start x: comma-separated numbers or an .npy "
                           "file (default: the objective's default start)."),
    y0: Optional[str] = _O(None, "--y0", help="Start y (a pair start). Default "
                           "y0 = x0 − η∇L(x0)."),
    gd_steps: int = _O(0, "--gd-steps", help="Run GD this many steps from x0 first and start "
                       "from its last two iterates."),
    predict: bool = _O(False, "--predict", help="Start from the reduction's predicted orbit at "
                       "a fixed point (--x-star, --find-minimum or the built-in's)."),
    x_star: Optional[str] = _O(None, "--x-star", help="Fixed point for --predict."),
    find_min: bool = _O(False, "--find-minimum", help="For --predict: converge to a minimum "
                        "from --x0 (or --x-star) first."),
    direction: int = _O(0, "--direction", help="Eigendirection index for --predict."),
    deflate: bool = _O(False, "--deflate/--no-deflate", help="Steer Newton away from fixed "
                       "points (x = y)."),
    tol: float = _O(1e-10, "--tol", help="Converged when |∇A| ≤ tol."),
    max_iter: int = _O(60, "--max-iter", help="Newton iterations."),
    nfloquet: int = _O(6, "--nfloquet", help="Floquet multipliers to report."),
    json_out: bool = _O(False, "--json", help="Print the result as JSON."),
    precond: Optional[Path] = _O(None, "--precond", help=_PRECOND_HELP),
) -> None:
    """Find a period-two orbit (or fixed point) of GD: Newton–MINRES on ∇A_η = 0."""
    from eoskit.orbits import find_orbit, orbit_to_x

    problem, run_obj = _load_problem(objective, run, x0, x_star if predict else None)
    lr = _check_lr(lr, run_obj)
    problem, pobj = _precondition(problem, precond)
    _check_orbit_args(y0, gd_steps, predict, x_star, find_min, tol, max_iter, nfloquet)
    with at_step(None, objective=problem.name):  # a failing objective: one line, exit 2
        xa, xb, start_note = _orbit_start(problem, lr, y0=y0, gd_steps=gd_steps,
                                          predict=predict, x_star=x_star, find_min=find_min,
                                          direction=direction, from_run=run is not None,
                                          pobj=pobj)
        res = find_orbit(problem.objective, lr, xa, xb, tol=tol, max_iter=max_iter,
                         deflate=deflate, n_floquet=nfloquet)
    if pobj is not None:
        res = orbit_to_x(res, pobj)
        start_note += f"; preconditioned by {precond}, half-amplitude |x − y|_P/2"
    if json_out:
        _emit_json({**res.to_dict(), "start": start_note, "objective": problem.name,
                    "precond": None if precond is None else str(precond)})
    else:
        _print_orbit(problem.name, lr, start_note, res)


def _check_bifurcation_args(dim: int, neigs: int, direction: int, sweep, out) -> None:
    if not 1 <= neigs <= dim:
        raise UsageError(f"--neigs must be between 1 and {dim}, got {neigs}")
    if not 0 <= direction < neigs:
        raise UsageError(f"--direction must be between 0 and --neigs − 1 = {neigs - 1}")
    if sweep is not None and out is None:
        raise UsageError("--sweep needs --out DIR")
    if out is not None and sweep is None:
        raise UsageError("--out is only used with --sweep")
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")


def _write_sweep(problem, red, spec: str, direction: int, out: Path, payload: dict) -> None:
    """Sweep the branch of ``direction``; write bifurcation.png/.csv/.json and fill ``payload``."""
    from eoskit.orbits import bifurcation_sweep
    from eoskit.plots.bifurcation_figures import plot_bifurcation

    dr = red.directions[direction]
    sw = bifurcation_sweep(problem.objective, red, _parse_sweep(spec, dr.eta_c),
                           direction=direction)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_bifurcation(sw, out / "bifurcation.png",
                           title=f"{problem.name}: λ = {dr.eigenvalue:.5g}, "
                                 f"Q = {dr.Q:.4g} ({dr.side})")
    from eoskit.orbits.continuation import BifurcationRow

    csv_path = out / "bifurcation.csv"
    log = store.CsvLog(csv_path, list(BifurcationRow.FIELDS))  # the one cell format
    for row in sw.table():
        log.write(row)
    log.close()
    payload["sweep"] = {**sw.to_dict(), "png": str(png), "csv": str(csv_path)}
    store.write_json(out / "bifurcation.json", payload)


def _print_reduction(name: str, source: str, red, lr: float | None, sweep: dict | None) -> None:
    typer.echo(f"{name}: x* ({source}), |grad| = {red.grad_norm:.3g}, "
               f"smallest eigenvalue {red.min_eigenvalue:.4g}")
    for i, d in enumerate(red.directions):
        line = (f"  [{i}] λ = {d.eigenvalue:.8g}  η_c = {d.eta_c:.8g}  Q = {d.Q:.6g}  {d.side}"
                + ("  DEGENERATE" if d.degenerate else ""))
        if lr is not None:
            a = d.predicted_half_amplitude(lr)
            line += (f"  supports orbit at lr={lr:g}: {d.supports_orbit(lr)}"
                     + (f", a = {a:.6g}" if math.isfinite(a) else ""))
        typer.echo(line)
        typer.echo(f"      {d.note}")
    if sweep is not None:
        exp = sweep["exponent"]
        typer.echo(f"  sweep: {len(sweep['rows'])} learning rates, fitted exponent "
                   f"{exp if exp is None else f'{exp:.4f}'}; wrote {sweep['png']} and "
                   f"{sweep['csv']}")


@app.command("bifurcation")
@handle_errors
def bifurcation_cmd(
    objective: Optional[str] = _O(None, "--objective", help=_OBJECTIVE_HELP),
    run: Optional[Path] = _O(None, "--run", help="Run directory: its objective; x* defaults to "
                             "its final parameters."),
    x_star: Optional[str] = _O(None, "--x-star", help="Fixed point: comma-separated numbers or "
                               "an .npy file (default: the built-in's)."),
    x0: Optional[str] = _O(None, "--x0", help="Start for --find-minimum."),
    find_min: bool = _O(False, "--find-minimum", help="Converge GD + Newton to a minimum first "
                        "(from --x-star, else --x0, else the default start)."),
    lr: Optional[float] = _O(None, "--lr", help="Learning rate η: report supports_orbit and "
                             "the predicted half-amplitude."),
    neigs: int = _O(1, "--neigs", help="Top-k eigendirections to reduce along."),
    sweep: Optional[str] = _O(None, "--sweep", help="LO:HI:N learning rates (a trailing 'c' "
                              "means a multiple of eta_c, e.g. 1.001c:1.03c:8); needs --out."),
    out: Optional[Path] = _O(None, "--out", help="Folder for bifurcation.png/.csv/.json."),
    direction: int = _O(0, "--direction", help="Direction whose branch --sweep continues."),
    json_out: bool = _O(False, "--json", help="Print the reduction (and sweep) as JSON."),
    precond: Optional[Path] = _O(None, "--precond", help=_PRECOND_HELP),
) -> None:
    """Half-amplitude reduction at a fixed point: η_c, Q, side; optionally sweep the branch."""
    from eoskit.orbits import reduce_at_fixed_point, reduction_to_x

    problem, _ = _load_problem(objective, run, x0, x_star)
    if lr is not None:
        lr = _check_lr(lr)
    _check_bifurcation_args(problem.objective.dim, neigs, direction, sweep, out)
    problem, pobj = _precondition(problem, precond)
    with at_step(None, objective=problem.name):  # a failing objective: one line, exit 2
        xs, source = _resolve_x_star(problem, x_star, find_min, run is not None, pobj)
        with at_step("the reduction at x*"):
            red = reduce_at_fixed_point(problem.objective, xs, k=neigs, lr=lr)
        shown = red if pobj is None else reduction_to_x(red, pobj)
        payload = {**shown.to_dict(lr), "x_star_source": source, "objective": problem.name,
                   "precond": None if precond is None else str(precond)}
        if not red.is_fixed_point:
            typer.echo(f"eoskit: warning: |grad L(x*)| = {red.grad_norm:.3g}: x* is not a "
                       "fixed point, the reduction does not apply (try --find-minimum)",
                       err=True)
        if sweep is not None:
            _write_sweep(problem, red, sweep, direction, out, payload)
    if json_out:
        _emit_json(payload)
    else:
        _print_reduction(problem.name, source + ("" if precond is None else
                                                 f"; eigenvalues of P⁻¹H, P from {precond}"),
                         red, lr, payload.get("sweep"))
