"""``eoskit sweep``: one run per grid point, on a local process pool or Ray."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from eoskit.cli._common import EXIT_FAILED, UsageError, handle_errors
from eoskit.cli.app import app

_O = typer.Option


def main_log(msg: str) -> None:
    """A progress line of ``eoskit sweep`` on stderr."""
    print(f"eoskit sweep: {msg}", file=sys.stderr, flush=True)


@app.command("sweep")
@handle_errors
def sweep_cmd(
    config: Optional[Path] = _O(None, "--config", help="Sweep TOML: a \\[run] table of run "
                                "options and a \\[grid] table of lists."),
    out: Optional[Path] = _O(None, "--out", help="Sweep directory to write."),
    backend: str = _O("local", help="local (a process pool) or ray."),
    ray_address: Optional[str] = _O(None, help="Address of an existing Ray cluster "
                                    "(default: start a local instance)."),
    workers: Optional[int] = _O(None, help="Parallel runs (default: min(CPU count, grid size))."),
    resume: bool = _O(False, "--resume", help="Continue the sweep in --out: finished runs are "
                      "skipped, the rest resume from their checkpoints."),
    overwrite: bool = _O(False, "--overwrite", help="Replace the sweep in --out: its index, "
                         "figures and its grid points' run files are removed first."),
    quiet: bool = _O(False, "--quiet", help="No progress lines."),
) -> None:
    """Run a grid of training runs; write one run directory per point, runs.csv and figures.

    Every grid point is validated before anything starts (exit 2 on bad input).
    A diverged or failing run is recorded in runs.csv and the sweep goes on.
    Exit status: 0 when every run completed or diverged, 1 when some failed.
    """
    from eoskit.store import FINAL_STATUSES
    from eoskit.sweep import load_stored_sweep, load_sweep, run_sweep

    if out is None:
        raise UsageError("--out DIR is required")
    if backend not in ("local", "ray"):
        raise UsageError(f"--backend must be local or ray, got {backend!r}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if ray_address and backend != "ray":
        raise UsageError("--ray-address needs --backend ray")
    if config is not None:
        spec = load_sweep(config)
    elif resume:
        spec = load_stored_sweep(out)
    else:
        raise UsageError("--config FILE is required (or --resume with --out DIR)")
    log = (lambda m: None) if quiet else main_log
    rows = run_sweep(spec, out, backend=backend, workers=workers, ray_address=ray_address,
                     resume=resume, overwrite=overwrite, log=log)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in counts.items())
    typer.echo(f"sweep directory: {out}  ({len(rows)} runs: {parts})")
    typer.echo(f"  index: {out / 'runs.csv'}")
    typer.echo(f"  figures: {out / 'plots'}")
    bad = [r for r in rows if r["status"] not in FINAL_STATUSES]
    for r in bad:
        print(f"eoskit: {Path(r['run_dir']).name}: {r['status']}: {r['error']}", file=sys.stderr)
    if bad:
        raise typer.Exit(EXIT_FAILED)
