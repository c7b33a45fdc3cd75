"""Sweeps: one training run per point of a grid of run options, on a process pool or Ray.

A sweep file is TOML with a ``[run]`` table of run options (the
:class:`~eoskit.config.RunConfig` field names, as for ``eoskit run --config``)
and a ``[grid]`` table whose values are non-empty lists; any run option can
be a grid key::

    [run]
    dataset = "digits"
    steps = 200

    [grid]
    lr = [0.05, 0.1]
    seed = [0, 1]

Layout of ``--out DIR``::

    sweep.json      the sweep ([run], [grid], the grid points in order, versions)
    sweep.toml      a copy of the sweep file
    runs.csv        one row per grid point, in grid order (updated as runs finish)
    <name>/         one run directory per grid point, e.g. ``lr=0.05_seed=1``
    plots/          sharpness.png (curves with their thresholds), plateau.png

``runs.csv`` columns: the grid keys, then :data:`INDEX_COLUMNS`. Every grid
point's configuration (and data path) is validated before any run starts;
a run that diverges or raises is recorded and the sweep goes on.

Example:
    >>> spec = parse_sweep({"run": {"dataset": "digits", "steps": 3},
    ...                     "grid": {"lr": [0.1, 0.2], "seed": [0]}})
    >>> [p.name for p in spec.points]
    ['lr=0.1_seed=0', 'lr=0.2_seed=0']
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
import sys
import time
import tomllib
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from eoskit import store
from eoskit.config import RunConfig

INDEX_COLUMNS = ["status", "eos_onset_step", "plateau_median_over_threshold",
                 "plateau_max_over_threshold", "final_loss", "error", "run_dir"]
BACKENDS = ("local", "ray")
FINISHED = ("completed", "diverged")  # a resumed sweep skips these runs
LOCAL_RETRIES = 2  # fresh process pools after a worker process died
RAY_MAX_RETRIES = 3  # Ray re-runs a task whose worker died; the retry resumes from a checkpoint
# datasets read from files: their default folder (None: data_dir is required)
from eoskit.data import FILE_DATASET_DIRS as FILE_DATASETS  # noqa: E402


class SweepError(ValueError):
    """A sweep file or sweep option is invalid (reported as one message, exit 2)."""


@dataclass(frozen=True)
class GridPoint:
    name: str  # run directory name, e.g. "lr=0.05_seed=1"
    params: dict  # the grid values of this point, in [grid] order
    config: RunConfig


@dataclass
class SweepSpec:
    run: dict
    grid: dict
    points: list[GridPoint] = field(default_factory=list)
    source: str | None = None  # the TOML text, when read from a file

    @property
    def keys(self) -> list[str]:
        return list(self.grid)

    def as_json(self) -> dict:
        return {"run": self.run, "grid": self.grid,
                "points": [{"name": p.name, "params": p.params} for p in self.points]}


# ---------------------------------------------------------------- reading a sweep file
def load_sweep(path: str | Path) -> SweepSpec:
    """Read and fully validate a sweep file (every grid point); SweepError says what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep config not found: {path}")
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SweepError(f"sweep config {path}: {_toml_problem(text, err)}") from None
    spec = parse_sweep(data, where=str(path))
    spec.source = text
    return spec


def parse_sweep(data: dict, where: str = "sweep config") -> SweepSpec:
    """A sweep from its parsed TOML (``{"run": {...}, "grid": {...}}``), fully validated."""
    fields = RunConfig.model_fields
    unknown = [k for k in data if k not in ("run", "grid")]
    if unknown:
        k = unknown[0]
        what = "table" if isinstance(data[k], dict) else "top-level key"
        hint = (f"; did you mean [grid] {k} or [run] {k}?" if k in fields
                else " (a sweep file has a [run] table and a [grid] table)")
        raise SweepError(f"{where}: unknown {what} {k!r}{hint}")
    run, grid = data.get("run", {}), data.get("grid")
    if not isinstance(run, dict):
        raise SweepError(f"{where}: 'run' must be a table ([run]) of run options")
    if grid is None:
        raise SweepError(f"{where}: no [grid] table; a sweep needs at least one grid key "
                         "whose value is a list, e.g. lr = [0.05, 0.1]")
    if not isinstance(grid, dict):
        raise SweepError(f"{where}: 'grid' must be a table ([grid]) of lists")
    if not grid:
        raise SweepError(f"{where}: the [grid] table is empty; give at least one key "
                         "whose value is a list, e.g. lr = [0.05, 0.1]")
    for table, values in (("run", run), ("grid", grid)):
        for k in values:
            if k not in fields:
                raise SweepError(f"{where}: unknown option {k!r} in [{table}]"
                                 f"{_suggest(k, fields)}")
    for k, vals in grid.items():
        if k in run:
            raise SweepError(f"{where}: {k!r} is in both [run] and [grid]; keep it in one")
        if not isinstance(vals, list):
            raise SweepError(f"{where}: [grid] {k} must be a non-empty list, got "
                             f"{_show(vals)} (write {k} = [{_show(vals)}] for one value)")
        if not vals:
            raise SweepError(f"{where}: [grid] {k} is an empty list; give at least one value")
        seen = set()
        for v in vals:
            key = json.dumps(v, sort_keys=True)
            if key in seen:
                raise SweepError(f"{where}: [grid] {k} repeats the value {_show(v)}")
            seen.add(key)
    spec = SweepSpec(dict(run), {k: list(v) for k, v in grid.items()})
    spec.points = _expand(spec, where)
    return spec


def _expand(spec: SweepSpec, where: str) -> list[GridPoint]:
    points, names, errors = [], {}, []
    keys = list(spec.grid)
    for combo in itertools.product(*(spec.grid[k] for k in keys)):
        params = dict(zip(keys, combo, strict=True))
        name = point_name(params)
        if name in names:
            raise SweepError(f"{where}: grid points {names[name]} and {params} both get the run "
                             f"directory name {name!r}; make the grid values distinct")
        names[name] = params
        try:
            cfg = RunConfig(**{**spec.run, **params})
        except ValidationError as err:
            errors.append(f"grid point {name}: {_validation_message(err, spec.run, params)}")
            continue
        problem = data_path_problem(cfg)
        if problem:
            errors.append(f"grid point {name}: {problem}")
            continue
        points.append(GridPoint(name, params, cfg))
    if errors:
        n = len(errors) - 1
        more = f" (and {n} more grid point{'s' if n > 1 else ''})" if n else ""
        raise SweepError(f"{where}: invalid configuration at {errors[0]}{more}")
    return points


def data_path_problem(cfg: RunConfig) -> str | None:
    """Why the data files of ``cfg`` cannot be there (None if fine or not file-based)."""
    if cfg.dataset not in FILE_DATASETS:
        return None
    folder = cfg.data_dir or FILE_DATASETS[cfg.dataset]
    if folder is None:
        return f"data_dir: dataset {cfg.dataset!r} is read from files; give data_dir"
    if not Path(folder).is_dir():
        src = "" if cfg.data_dir else f"the default data folder of {cfg.dataset!r}, "
        return f"data_dir: {src}{folder} does not exist"
    return None


def point_name(params: dict) -> str:
    """A readable, deterministic directory name from grid values: ``lr=0.05_seed=1``."""
    return "_".join(f"{k}={_value_name(v)}" for k, v in params.items())


def _value_name(v) -> str:
    if isinstance(v, bool):
        s = str(v).lower()
    elif isinstance(v, float):
        s = repr(v)
    elif isinstance(v, (list, tuple)):
        s = "-".join(_value_name(x) for x in v) or "none"
    elif v is None:
        s = "none"
    else:
        s = str(v)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", s) or "empty"


def _show(v) -> str:
    return json.dumps(v) if not isinstance(v, str) else repr(v)


def _suggest(key: str, fields) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _validation_message(err: ValidationError, run: dict, params: dict) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()))
        msg = str(e.get("msg", "")).removeprefix("Value error, ")
        head = loc.split(".")[0] if loc else ""
        origin = " (from [grid])" if head in params else " (from [run])" if head in run else ""
        parts.append(f"{loc}{origin}: {msg}" if loc else msg)
    return "; ".join(parts)


def _toml_problem(text: str, err: tomllib.TOMLDecodeError) -> str:
    """tomllib's message, with the key named when it is a duplicate."""
    msg = str(err)
    if "overwrite" in msg or "twice" in msg:
        dup = _find_duplicate(text)
        if dup:
            return dup
    return f"not valid TOML: {msg}"


def _find_duplicate(text: str) -> str | None:
    table, seen, tables = "", {}, {}
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.match(r"^\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$", s)
        if m:
            table = re.sub(r"\s*\.\s*", ".", m.group(1)).replace('"', "").replace("'", "")
            if table in tables:
                return (f"table [{table}] is declared twice (lines {tables[table]} and {lineno}); "
                        "merge them")
            tables[table] = lineno
            continue
        m = re.match(r"^((?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-]+)"
                     r"(?:\s*\.\s*(?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-]+))*)\s*=", s)
        if m:
            key = re.sub(r"\s*\.\s*", ".", m.group(1)).replace('"', "").replace("'", "")
            if (table, key) in seen:
                where = f"[{table}]" if table else "the top level"
                hint = " with a list of values" if table == "grid" else ""
                return (f"duplicate key {key!r} in {where} (lines {seen[table, key]} and "
                        f"{lineno}); give it once{hint}")
            seen[table, key] = lineno
    return None


# ---------------------------------------------------------------- one run (in a worker)
def run_point(task: dict) -> dict:
    """Train one grid point into its run directory; never raises (errors become 'failed').

    Runs in a worker process. A run directory that already holds this
    configuration is resumed from its newest good checkpoint (a retried Ray
    task, a resumed sweep); a finished one is left as it is.
    """
    run_dir = Path(task["run_dir"])
    started = time.time()
    try:
        if task.get("threads"):
            import torch

            torch.set_num_threads(int(task["threads"]))
        from eoskit.train import train

        run_dir.mkdir(parents=True, exist_ok=True)
        _record_attempt(run_dir)
        (run_dir / "error.txt").unlink(missing_ok=True)
        cfg = RunConfig(**task["config"])
        if (run_dir / "config.json").exists():
            summary = train(cfg, run_dir, resume=True, progress=False)
        else:
            summary = train(cfg, run_dir, progress=False)
        return {**_index_fields(summary), "seconds": time.time() - started}
    except Exception as err:  # a failing run must not stop the sweep
        message = f"{type(err).__name__}: {err}".strip()
        try:
            store.atomic_write_bytes(run_dir / "error.txt", traceback.format_exc().encode())
        except OSError:
            pass
        return {"status": "failed", "error": message, "seconds": time.time() - started}


def _record_attempt(run_dir: Path) -> None:
    """worker.json: which process runs (ran) this point, and how many attempts so far."""
    path = run_dir / "worker.json"
    attempts = 0
    if path.exists():
        try:
            attempts = int(store.read_json(path).get("attempts", 0))
        except (ValueError, OSError, AttributeError):
            attempts = 0
    import platform

    store.write_json(path, {"pid": os.getpid(), "host": platform.node(),
                            "attempts": attempts + 1, "started": time.time()})


def _index_fields(summary: dict) -> dict:
    return {
        "status": summary.get("status"),
        "eos_onset_step": summary.get("eos_onset_step"),
        "plateau_median_over_threshold": summary.get(
            "sharpness_after_onset_median_over_threshold"),
        "plateau_max_over_threshold": summary.get("sharpness_after_onset_max_over_threshold"),
        "final_loss": summary.get("final_loss"),
        "error": "",
    }


def _ray_run_point(task: dict) -> dict:
    return run_point(task)


# ---------------------------------------------------------------- the sweep
class Sweep:
    """A sweep directory being filled: the index, the results so far, the figures."""

    def __init__(self, spec: SweepSpec, out: Path):
        self.spec, self.out = spec, Path(out)
        self.rows: dict[str, dict] = {p.name: {"status": "pending", "error": ""}
                                      for p in spec.points}

    def run_dir(self, p: GridPoint) -> Path:
        return (self.out / p.name).resolve()

    def index_rows(self) -> list[dict]:
        rows = []
        for p in self.spec.points:
            r = self.rows[p.name]
            row = {k: _cell(v) for k, v in p.params.items()}
            row.update({c: _cell(r.get(c)) for c in INDEX_COLUMNS if c != "run_dir"})
            row["run_dir"] = str(self.run_dir(p))
            rows.append(row)
        return rows

    def write_index(self) -> Path:
        cols = self.spec.keys + INDEX_COLUMNS
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(self.index_rows())
        path = self.out / "runs.csv"
        store.atomic_write_bytes(path, buf.getvalue().encode())
        return path


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    return str(v)


def prepare_out(spec: SweepSpec, out: Path, resume: bool) -> None:
    """Create (or check, when resuming) the sweep directory; SweepError on a clash."""
    out = Path(out)
    meta = out / "sweep.json"
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out} exists and is not a directory")
    if meta.exists():
        if not resume:
            raise SweepError(f"{out} already holds a sweep; pass --resume to continue it, "
                             "or choose another --out")
        stored = store.read_json(meta)
        if stored.get("run") != _jsonable(spec.run) or stored.get("grid") != _jsonable(spec.grid):
            raise SweepError(f"the sweep in {out} was made from a different [run]/[grid]; "
                             "resume it without --config, or choose another --out")
    elif not resume:
        taken = [p.name for p in spec.points if (out / p.name).exists()]
        if taken:
            raise SweepError(f"{out / taken[0]} already exists; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    import eoskit

    store.write_json(meta, {**spec.as_json(), "eoskit_version": eoskit.__version__,
                            "index_columns": spec.keys + INDEX_COLUMNS})
    if spec.source is not None:
        store.atomic_write_bytes(out / "sweep.toml", spec.source.encode())


def _jsonable(obj):
    return json.loads(json.dumps(obj))


def load_stored_sweep(out: Path) -> SweepSpec:
    """The sweep recorded in ``out/sweep.json`` (for ``--resume`` without ``--config``)."""
    meta = Path(out) / "sweep.json"
    if not meta.exists():
        raise SweepError(f"nothing to resume: {out} has no sweep.json (pass --config to start)")
    stored = store.read_json(meta)
    spec = parse_sweep({"run": stored["run"], "grid": stored["grid"]}, where=str(meta))
    toml = Path(out) / "sweep.toml"
    spec.source = toml.read_text() if toml.exists() else None
    return spec


def run_sweep(spec: SweepSpec, out: str | Path, *, backend: str = "local",
              workers: int | None = None, ray_address: str | None = None,
              resume: bool = False, log: Callable[[str], None] | None = None) -> list[dict]:
    """Run every grid point (skipping finished ones when resuming); returns runs.csv's rows.

    ``backend``: ``local`` (a spawn process pool of ``workers``), ``ray`` (Ray tasks on
    the cluster at ``ray_address``, else a fresh local instance of ``workers`` CPUs), or
    ``inline`` (one after another in this process: for debugging and tests).
    """
    if backend not in (*BACKENDS, "inline"):
        raise SweepError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}")
    if ray_address and backend != "ray":
        raise SweepError("--ray-address needs --backend ray")
    log = log or (lambda msg: None)
    out = Path(out)
    prepare_out(spec, out, resume)
    sweep = Sweep(spec, out)
    todo = []
    for p in spec.points:
        summary = _finished_summary(sweep.run_dir(p)) if resume else None
        if summary is not None:
            sweep.rows[p.name] = _index_fields(summary)
        else:
            todo.append(p)
    sweep.write_index()
    if resume and len(todo) < len(spec.points):
        log(f"resuming: {len(spec.points) - len(todo)} of {len(spec.points)} runs already "
            "finished, skipped")
    n_workers = min(workers or (os.cpu_count() or 1), max(len(todo), 1))
    threads = 1 if n_workers > 1 else 0  # 0: leave torch's default
    tasks = [{"name": p.name, "config": p.config.model_dump(mode="json"),
              "run_dir": str(sweep.run_dir(p)), "threads": threads} for p in todo]
    done = [0]

    def on_result(task: dict, res: dict) -> None:
        sweep.rows[task["name"]] = res
        sweep.write_index()
        done[0] += 1
        extra = res.get("error") or _describe(res)
        log(f"[{done[0]}/{len(tasks)}] {task['name']}: {res.get('status')}"
            f"{' — ' + extra if extra else ''}")

    if tasks:
        log(f"{len(tasks)} runs on the {backend} backend"
            f"{f' ({n_workers} workers)' if backend == 'local' or not ray_address else ''}")
        if backend == "inline":
            for t in tasks:
                on_result(t, run_point({**t, "threads": 0}))
        elif backend == "local":
            _run_local(tasks, n_workers, on_result)
        else:
            _run_ray(tasks, n_workers, ray_address, on_result)
    try:
        plot_sweep(out)
    except Exception as err:  # figures must never lose the index
        log(f"warning: sweep figures failed: {type(err).__name__}: {err}")
    return sweep.index_rows()


def _describe(res: dict) -> str:
    onset, med = res.get("eos_onset_step"), res.get("plateau_median_over_threshold")
    if res.get("status") != "completed":
        return ""
    if onset is None:
        return "no EoS onset"
    return f"onset step {onset}, plateau/threshold {med:.3f}" if med is not None else ""


def _finished_summary(run_dir: Path) -> dict | None:
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    try:
        summary = store.read_json(path)
    except (ValueError, OSError):
        return None
    return summary if summary.get("status") in FINISHED else None


def _init_worker() -> None:
    # a sweep worker computes; Ctrl-C is the driver's to handle (it stops the pool)
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_local(tasks: list[dict], workers: int, on_result) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    remaining = list(tasks)
    for _attempt in range(1 + LOCAL_RETRIES):
        broken = []
        with ProcessPoolExecutor(max_workers=min(workers, len(remaining)), mp_context=ctx,
                                 initializer=_init_worker) as pool:
            futures = {pool.submit(run_point, t): t for t in remaining}
            for fut in as_completed(futures):
                task = futures[fut]
                try:
                    res = fut.result()
                except BrokenProcessPool:
                    broken.append(task)  # a worker died: retry in a fresh pool (it resumes)
                    continue
                except Exception as err:
                    res = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
                on_result(task, res)
        if not broken:
            return
        remaining = sorted(broken, key=tasks.index)
    for task in remaining:
        on_result(task, {"status": "failed",
                         "error": f"worker process died ({LOCAL_RETRIES} retries)"})


def _run_ray(tasks: list[dict], workers: int, address: str | None, on_result) -> None:
    try:
        import ray
    except ImportError as err:
        raise SweepError("--backend ray needs ray: pip install 'eoskit[ray]'") from err
    started = False
    if not ray.is_initialized():
        if address:
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise SweepError(f"cannot connect to the Ray cluster at {address}: {err}") from err
        else:
            # address="local": always a fresh instance, never someone else's cluster
            ray.init(address="local", num_cpus=workers, include_dashboard=False,
                     logging_level="ERROR", log_to_driver=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=RAY_MAX_RETRIES,
                            retry_exceptions=False)(_ray_run_point)
        pending = {remote.remote(t): t for t in tasks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    res = ray.get(ref)
                except Exception as err:  # the worker died more than max_retries times
                    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                    res = {"status": "failed", "error": f"{type(err).__name__}: {first}"}
                on_result(task, res)
    finally:
        if started:
            ray.shutdown()


# ---------------------------------------------------------------- figures
def plot_sweep(sweep_dir: str | Path) -> list[Path]:
    """``plots/sharpness.png`` (curves, each with its threshold in the same colour) and
    ``plots/plateau.png`` (median sharpness after onset against the threshold, y = x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep_dir = Path(sweep_dir)
    runs = _runs_with_data(sweep_dir)
    folder = sweep_dir / "plots"
    folder.mkdir(exist_ok=True)
    lrs = sorted({r["lr"] for r in runs})
    cmap = plt.get_cmap("viridis" if len(lrs) > 10 else "tab10")

    def colour(lr):
        i = lrs.index(lr)
        return cmap(i / max(len(lrs) - 1, 1)) if len(lrs) > 10 else cmap(i % 10)

    written = []
    fig, ax = plt.subplots(figsize=(7.5, 4.5), constrained_layout=True)
    labelled = set()
    for r in runs:
        if not r["steps"]:
            continue
        c = colour(r["lr"])
        first = r["lr"] not in labelled
        ax.plot(r["steps"], r["sharpness"], color=c, lw=1.1, alpha=0.9 if first else 0.5,
                label=f"η={r['lr']:g}" if first else None)
        if first:
            ax.axhline(r["threshold"], color=c, ls="--", lw=1)
            labelled.add(r["lr"])
    finite = [v for r in runs for v in r["sharpness"]]
    if finite and runs:
        top = 3.0 * max(r["threshold"] for r in runs)
        if max(finite) > top:  # a diverged run's spike would flatten every other curve
            ax.set_ylim(min(0.0, min(finite)), top)
    opt = runs[0]["optimizer"] if runs else "gd"
    tname = {"gd": "2/η", "sgd": "2/η"}.get(opt, "threshold")
    ax.set(xlabel="step", ylabel="sharpness λ_max",
           title=f"sharpness per learning rate (dashed: {tname}, same colour)")
    if labelled:
        ax.legend(fontsize=8, ncol=2 if len(labelled) > 6 else 1)
    written.append(_save(fig, folder / "sharpness.png"))

    fig, ax = plt.subplots(figsize=(5.5, 5), constrained_layout=True)
    pts = [r for r in runs if r["plateau"] is not None and r["status"] == "completed"]
    diverged = sum(r["status"] == "diverged" for r in runs)
    missing = len(runs) - len(pts) - diverged
    notes = ([f"{missing} without EoS onset"] if missing else []) + (
        [f"{diverged} diverged"] if diverged else [])
    for r in pts:
        ax.plot(r["threshold"], r["plateau"], "o", color=colour(r["lr"]), ms=6)
        if r["plateau_max"] is not None:
            ax.plot(r["threshold"], r["plateau_max"], "_", color=colour(r["lr"]), ms=10)
    xs = [r["threshold"] for r in pts] or [r["threshold"] for r in runs] or [1.0]
    lo, hi = min(xs) * 0.8, max(xs) * 1.2
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.set(xlabel=f"{tname}" + (" (threshold)" if tname == "2/η" else ""),
           ylabel="median sharpness after EoS onset",
           title="plateau sharpness vs threshold"
           + (f"\n(not shown: {', '.join(notes)})" if notes else ""))
    if len(xs) > 1 and hi / lo > 5:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.plot([], [], "o", color="gray", label="median after onset")
    ax.plot([], [], "_", color="gray", ms=10, label="max after onset")
    ax.legend(fontsize=8)
    written.append(_save(fig, folder / "plateau.png"))
    return written


def _runs_with_data(sweep_dir: Path) -> list[dict]:
    out = []
    for row in store.read_csv(sweep_dir / "runs.csv") if (sweep_dir / "runs.csv").exists() else []:
        run_dir = resolve_run_dir(sweep_dir, row)
        if run_dir is None or not (run_dir / "config.json").exists():
            continue
        conf = store.read_json(run_dir / "config.json")
        rows = store.read_csv(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() else []
        pts = [(int(m["step"]), float(m["sharpness"])) for m in rows
               if m.get("sharpness") not in (None, "")]
        pts = [(t, v) for t, v in pts if math.isfinite(v)]
        summary = {}
        if (run_dir / "summary.json").exists():
            summary = store.read_json(run_dir / "summary.json")
        out.append({
            "lr": conf["config"]["lr"], "optimizer": conf["config"]["optimizer"],
            "status": summary.get("status", row.get("status")),
            "threshold": conf["threshold"], "steps": [t for t, _ in pts],
            "sharpness": [v for _, v in pts],
            "plateau": summary.get("sharpness_after_onset_median"),
            "plateau_max": summary.get("sharpness_after_onset_max"),
        })
    return out


def resolve_run_dir(sweep_dir: Path, row: dict) -> Path | None:
    """A runs.csv row's run directory; found by name under the sweep if the sweep moved."""
    p = Path(row.get("run_dir") or "")
    if str(p) and (p / "config.json").exists():
        return p
    local = Path(sweep_dir) / p.name
    return local if p.name and local.exists() else None


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main_log(msg: str) -> None:
    print(f"eoskit sweep: {msg}", file=sys.stderr, flush=True)
