"""``eoskit bench``: benchmarks (``eoskit bench sharpness``).

Examples::

    eoskit bench sharpness --json benchmarks/results/sharpness.json
    eoskit bench sharpness --tiny --json /tmp/tiny.json
    eoskit bench sharpness --sections cold,track --dtypes float32 --torch-threads 1
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from eoskit.cli._common import UsageError, handle_errors
from eoskit.cli.app import app

_O = typer.Option

bench_app = typer.Typer(help="Benchmarks: eoskit against its peers.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("sharpness")
@handle_errors
def sharpness_cmd(
    json_out: Optional[Path] = _O(None, "--json", help="Write the rows here as JSON."),
    tiny: bool = _O(False, "--tiny", help="The tiny setting (200 images, width 16): seconds."),
    sections: Optional[str] = _O(None, help="Comma-separated subset of "
                                 "costs,cold,track,stream,scaling (default: all)."),
    dtypes: Optional[str] = _O(None, help="float32,float64 (default: both)."),
    peers: bool = _O(True, help="Include curvlinops and PyHessian (when installed)."),
    cache_dir: Path = _O(Path("runs/bench-cache"), help="Cached GD points and references."),
    blas_threads: int = _O(1, help="BLAS threads for everything (threadpoolctl)."),
    torch_threads: Optional[int] = _O(None, help="torch intra-op threads for everything."),
    repeats: Optional[int] = _O(None, help="Timing repeats per cold solve (median)."),
    track_steps: Optional[int] = _O(None, help="GD steps in the tracking section."),
    quiet: bool = _O(False, help="No progress lines."),
) -> None:
    """Sharpness: cost of a gradient and an HVP, cold and tracked top eigenvalue, scaling.

    Prints a table; rows {method, setting, hvps, seconds, rel_error, ...} go to --json.
    """
    import dataclasses

    from eoskit.bench.run import run_sharpness_bench, table, write_json
    from eoskit.bench.setting import FULL, SECTIONS, TINY

    setting = TINY if tiny else FULL
    if repeats is not None:
        if repeats < 1:
            raise UsageError("--repeats must be at least 1")
        setting = dataclasses.replace(setting, repeats=repeats)
    if track_steps is not None:
        if track_steps < 1:
            raise UsageError("--track-steps must be at least 1")
        setting = dataclasses.replace(setting, track_steps=track_steps)
    secs = tuple(s.strip() for s in sections.split(",")) if sections else SECTIONS
    dts = tuple(s.strip() for s in dtypes.split(",")) if dtypes else None
    if dts and any(d not in ("float32", "float64") for d in dts):
        raise UsageError(f"--dtypes must be float32 and/or float64, got {dtypes!r}")
    if torch_threads is not None and torch_threads < 1:
        raise UsageError("--torch-threads must be at least 1")
    rows = run_sharpness_bench(setting, sections=secs, peers=peers, cache_dir=cache_dir,
                               blas_threads=blas_threads, torch_threads=torch_threads,
                               dtypes=dts, progress=not quiet)
    typer.echo(table(rows))
    if json_out is not None:
        write_json(rows, json_out)
        typer.echo(f"wrote {json_out}")
