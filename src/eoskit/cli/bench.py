"""``eoskit bench``: benchmarks (``sharpness``, ``scaling``, ``monitor``).

Examples::

    eoskit bench sharpness --json benchmarks/results/sharpness.json
    eoskit bench sharpness --tiny --json /tmp/tiny.json
    eoskit bench sharpness --sections cold,track --dtypes float32 --torch-threads 1
    eoskit bench scaling --nproc 1,2 --json benchmarks/results/scaling.json
    eoskit bench monitor --settings gpt-small --optimizers adamw --every 10 --steps 42
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from eoskit.cli._common import UsageError, handle_errors, list_option
from eoskit.cli.app import app

_O = typer.Option

bench_app = typer.Typer(help="Benchmarks: eoskit against its peers.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("sharpness")
@handle_errors
def sharpness_cmd(
    json_out: Optional[Path] = _O(None, "--json", help="Write the rows here as JSON."),
    tiny: bool = _O(False, "--tiny", help="The tiny setting (200 images, width 16): seconds."),
    sections: Optional[list[str]] = _O(None, help="Subset of costs, cold, track, stream, "
                                       "scaling, repeated or comma-separated (default: all)."),
    dtypes: Optional[list[str]] = _O(None, help="float32 and/or float64 (default: both)."),
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

    from eoskit.bench.setting import FULL, SECTIONS, TINY
    from eoskit.bench.sharpness_bench import run_sharpness_bench, table, write_json

    setting = TINY if tiny else FULL
    if repeats is not None:
        if repeats < 1:
            raise UsageError("--repeats must be at least 1")
        setting = dataclasses.replace(setting, repeats=repeats)
    if track_steps is not None:
        if track_steps < 1:
            raise UsageError("--track-steps must be at least 1")
        setting = dataclasses.replace(setting, track_steps=track_steps)
    secs = tuple(list_option(sections)) if sections else SECTIONS
    dts = tuple(list_option(dtypes)) if dtypes else None
    if dts and any(d not in ("float32", "float64") for d in dts):
        raise UsageError(f"--dtypes must be float32 and/or float64, got {','.join(dts)!r}")
    if torch_threads is not None and torch_threads < 1:
        raise UsageError("--torch-threads must be at least 1")
    rows = run_sharpness_bench(setting, sections=secs, peers=peers, cache_dir=cache_dir,
                               blas_threads=blas_threads, torch_threads=torch_threads,
                               dtypes=dts, progress=not quiet)
    typer.echo(table(rows))
    if json_out is not None:
        write_json(rows, json_out)
        typer.echo(f"wrote {json_out}")


@bench_app.command("scaling")
@handle_errors
def scaling_cmd(
    nproc: list[str] = _O(["1", "2"], "--nproc", help="Process counts (1 first), repeated "
                          "or comma-separated."),
    settings: list[str] = _O(["demo", "large"], help="Settings, repeated or comma-separated: "
                             "demo (fc-tanh 784-200-200-10, 2,000 images), large (width 400, "
                             "4,000 images), tiny."),
    repeats: int = _O(3, min=1, help="Repeats of each measurement (alternating N; median)."),
    json_out: Optional[Path] = _O(None, "--json", help="Write the rows here as JSON."),
    markdown_out: Optional[Path] = _O(None, "--markdown", help="Write the table here."),
    quiet: bool = _O(False, help="No progress lines."),
) -> None:
    """Process scaling of one run: GD and tracked steps over N one-thread processes.

    Not the problem-size section of ``eoskit bench sharpness`` (also called scaling):
    this times ONE problem split over N ranks (gloo, CPU), with the all-reduce time
    and bytes per step, and the eigensolver replicated vs on rank 0 with broadcasts.
    """
    from eoskit.bench.process_table import markdown
    from eoskit.bench.processes import SETTINGS, bench_processes

    try:
        counts = [int(n) for n in list_option(nproc)]
    except ValueError:
        given = ",".join(list_option(nproc))
        raise UsageError(f"--nproc must be comma-separated integers, got {given!r}") from None
    if counts[0] != 1 or any(n < 1 for n in counts) or len(set(counts)) != len(counts):
        raise UsageError(f"--nproc must start with 1 and list distinct counts ≥ 1, got {counts}")
    names = list_option(settings)
    if bad := [s for s in names if s not in SETTINGS]:
        raise UsageError(f"unknown setting(s) {bad}; choose from {', '.join(SETTINGS)}")
    log = (lambda *a, **k: None) if quiet else typer.echo
    rows = bench_processes([SETTINGS[s] for s in names], counts, repeats, log)
    _write_rows(rows, markdown(rows), json_out, markdown_out)


@bench_app.command("monitor")
@handle_errors
def monitor_cmd(
    settings: list[str] = _O(["gpt-small"], help="Repeated or comma-separated: gpt-small, "
                             "gpt2, gpt-tiny."),
    optimizers: list[str] = _O(["sgd", "adamw"], help="Repeated or comma-separated: sgd, adamw."),
    every: list[str] = _O(["10"], help="Measurement intervals, repeated or comma-separated."),
    steps: int = _O(42, min=3, help="Optimiser steps per (setting, optimiser, every)."),
    references: bool = _O(True, help="Check each measurement against a tight solve."),
    raw: bool = _O(True, help="--no-raw: the preconditioned sharpness alone (AdamW only)."),
    max_warm_products: Optional[int] = _O(None, min=1, help="Cap each warm measurement's "
                                          "products (the Monitor's max_warm_products)."),
    criterion: str = _O("eigenvalue", help="The Monitor's stopping test: eigenvalue, "
                        "residual or change."),
    image_dtype: Optional[str] = _O(None, help="Keep the basis's Hessian-vector products in "
                                    "this dtype: bfloat16 or float32 (the Monitor's "
                                    "image_dtype; default: the work dtype)."),
    tol: float = _O(1e-3, help="The Monitor's tol (relative error of each value); errors "
                    "are counted within it."),
    mode: str = _O("auto", help="The Monitor's tracker: shared (one set of products for "
                   "both quantities), lean (one after the other, few d-long vectors) or "
                   "auto (shared while its basis fits 256 MB, else lean)."),
    hvp_method: Optional[str] = _O(None, help="The Monitor's product engine (e.g. fd, "
                                   "fd+compile, retained; default: the Monitor's, fd below "
                                   "float64)."),
    torch_threads: Optional[int] = _O(None, min=1, help="torch intra-op threads."),
    device: str = _O("cpu", help="cpu or cuda (peak memory: the GPU's allocated memory)."),
    json_out: Optional[Path] = _O(None, "--json", help="Write the rows here as JSON."),
    markdown_out: Optional[Path] = _O(None, "--markdown", help="Write the table here."),
    quiet: bool = _O(False, help="No progress lines."),
) -> None:
    """The Monitor in a Transformer loop: time against the plain loop (alternating), products
    per measurement, peak memory above the plain loop, error against reference solves."""
    import torch

    from eoskit.bench.monitor_bench import bench_monitor, markdown
    from eoskit.bench.monitor_settings import OPTIMIZERS, SETTINGS

    names, opts = list_option(settings), list_option(optimizers)
    if bad := [x for x in names if x not in SETTINGS] + [x for x in opts if x not in OPTIMIZERS]:
        raise UsageError(f"unknown setting or optimiser {bad}; settings: {', '.join(SETTINGS)}; "
                         f"optimisers: {', '.join(OPTIMIZERS)}")
    try:
        intervals = [int(x) for x in list_option(every)]
    except ValueError:
        raise UsageError(f"--every must be whole numbers, got {list_option(every)}") from None
    if any(n < 1 for n in intervals):
        raise UsageError(f"--every must be at least 1, got {intervals}")
    _check_monitor_options(opts, criterion=criterion, image_dtype=image_dtype, mode=mode,
                           max_warm_products=max_warm_products, tol=tol,
                           hvp_method=hvp_method, raw=raw)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    log = (lambda *a, **k: None) if quiet else typer.echo
    rows = []
    for name in names:
        for opt in opts:
            for n in intervals:
                log(f"{name} {opt} every {n}")
                rows.append(bench_monitor(name, opt, n, steps, references=references,
                                          device=device, raw=raw,
                                          max_warm_products=max_warm_products,
                                          criterion=criterion, log=log, tol=tol, mode=mode,
                                          hvp_method=hvp_method,
                                          image_dtype=image_dtype and getattr(torch,
                                                                              image_dtype)))
    _write_rows(rows, markdown(rows), json_out, markdown_out)


def _check_monitor_options(opts: list[str], *, criterion: str, image_dtype: str | None,
                           mode: str, max_warm_products: int | None, tol: float,
                           hvp_method: str | None, raw: bool) -> None:
    """``eoskit bench monitor``'s Monitor options, each refused with one line before any
    model is built."""
    from eoskit.eigs.warm_stopping import CRITERIA

    if criterion not in CRITERIA:
        raise UsageError(f"--criterion must be one of {', '.join(CRITERIA)}, "
                         f"got {criterion!r}")
    # no float16: its range (65504) can overflow an image H·w
    if image_dtype not in (None, "bfloat16", "float32"):
        raise UsageError(f"--image-dtype must be bfloat16 or float32, got {image_dtype!r}")
    if mode not in ("auto", "shared", "lean"):
        raise UsageError(f"--mode must be auto, shared or lean, got {mode!r}")
    if mode == "lean" and image_dtype:
        raise UsageError("--image-dtype is the shared tracker's: not with --mode lean")
    if mode != "shared" and max_warm_products == 1 and raw and "adamw" in opts:
        raise UsageError("--max-warm-products 1 under AdamW needs --mode shared: the lean "
                         "tracker's raw and preconditioned searches take a product each")
    if not 0 < tol < 1:
        raise UsageError(f"--tol must be between 0 and 1, got {tol}")
    from eoskit.objective import HVP_METHODS

    if hvp_method is not None and hvp_method not in HVP_METHODS:
        raise UsageError(f"--hvp-method must be one of {', '.join(HVP_METHODS)}, "
                         f"got {hvp_method!r}")
    if not raw and opts != ["adamw"]:
        raise UsageError("--no-raw measures the preconditioned sharpness alone: "
                         "--optimizers adamw only")


def _write_rows(rows: list[dict], table: str, json_out: Path | None,
                markdown_out: Path | None) -> None:
    """Print the table; write the rows (after the machine's description) and the table."""
    from eoskit.bench.sharpness_bench import environment, write_json

    typer.echo(table)
    if json_out is not None:
        write_json([{"section": "meta", **environment()}, *rows], json_out)
        typer.echo(f"wrote {json_out}")
    if markdown_out is not None:
        markdown_out.parent.mkdir(parents=True, exist_ok=True)
        markdown_out.write_text(table + "\n")
        typer.echo(f"wrote {markdown_out}")
