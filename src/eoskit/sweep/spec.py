"""A sweep file: its ``[run]`` and ``[grid]`` tables, expanded and validated point by point.

Every grid point's configuration (and data folder) is checked before any run
starts; a problem is one :class:`SweepError` saying where it is and what to write.

Example:
    >>> spec = parse_sweep({"run": {"dataset": "digits", "steps": 3},
    ...                     "grid": {"lr": [0.1, 0.2], "seed": [0]}})
    >>> [p.name for p in spec.points]
    ['lr=0.1_seed=0', 'lr=0.2_seed=0']
    >>> spec.points[1].config.lr
    0.2

``nproc`` (in ``[run]`` or ``[grid]``) is no run option but how a point runs: over
that many processes (``eoskit run --nproc``), 1 by default:

    >>> spec = parse_sweep({"run": {"dataset": "digits", "steps": 3},
    ...                     "grid": {"nproc": [1, 2]}})
    >>> [(p.name, p.nproc, "nproc" in p.config.model_fields) for p in spec.points]
    [('nproc=1', 1, False), ('nproc=2', 2, False)]
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from eoskit.data import FILE_DATASET_DIRS
from eoskit.optim import rule_class
from eoskit.training.config import RunConfig, load_toml

# keys of a sweep point that say how it runs, not what (not RunConfig fields)
POINT_OPTIONS = ("nproc",)


class SweepError(ValueError):
    """A sweep file or sweep option is invalid (reported as one message, exit 2)."""


@dataclass(frozen=True)
class GridPoint:
    name: str  # run directory name, e.g. "lr=0.05_seed=1"
    params: dict  # the grid values of this point, in [grid] order
    config: RunConfig
    nproc: int = 1  # processes of this one run (eoskit run --nproc)


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
    """Read and fully validate a sweep file (every grid point); SweepError says what is wrong.

    A duplicate key or table is tomllib's error, which gives its line:
    ``not valid TOML: Cannot overwrite a value (at line 6, column 11)``.
    """
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep config not found: {path}")
    try:
        data = load_toml(path)
    except ValueError as err:
        cause = err.__cause__ if isinstance(err.__cause__, tomllib.TOMLDecodeError) else err
        raise SweepError(f"sweep config {path}: not valid TOML: {cause}") from None
    spec = parse_sweep(data, where=str(path))
    spec.source = path.read_text()
    return spec


def parse_sweep(data: dict, where: str = "sweep config") -> SweepSpec:
    """A sweep from its parsed TOML (``{"run": {...}, "grid": {...}}``), fully validated."""
    run, grid = _tables(data, where)
    for table, values in (("run", run), ("grid", grid)):
        for k in values:
            if k not in RunConfig.model_fields and k not in POINT_OPTIONS:
                raise SweepError(f"{where}: unknown option {k!r} in [{table}]"
                                 f"{_suggest(k, RunConfig.model_fields)}")
    for k, vals in grid.items():
        _check_grid_values(k, vals, run, where)
    spec = SweepSpec(dict(run), {k: list(v) for k, v in grid.items()})
    spec.points = _expand(spec, where)
    return spec


def _tables(data: dict, where: str) -> tuple[dict, dict]:
    """The ``[run]`` and ``[grid]`` tables; anything else at the top level is an error."""
    unknown = [k for k in data if k not in ("run", "grid")]
    if unknown:
        k = unknown[0]
        what = "table" if isinstance(data[k], dict) else "top-level key"
        hint = (f"; did you mean [grid] {k} or [run] {k}?" if k in RunConfig.model_fields
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
    return run, grid


def _check_grid_values(k: str, vals, run: dict, where: str) -> None:
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


def _expand(spec: SweepSpec, where: str) -> list[GridPoint]:
    """The grid points in order (last key fastest); every invalid one is counted."""
    points, names, errors = [], {}, []
    keys = list(spec.grid)
    for combo in itertools.product(*(spec.grid[k] for k in keys)):
        params = dict(zip(keys, combo, strict=True))
        name = point_name(params)
        if name in names:
            raise SweepError(f"{where}: grid points {names[name]} and {params} both get the run "
                             f"directory name {name!r}; make the grid values distinct")
        names[name] = params
        options = {**spec.run, **params}
        nproc = options.pop("nproc", 1)
        try:
            cfg = RunConfig(**options)
        except ValidationError as err:
            errors.append(f"grid point {name}: {_validation_message(err, spec.run, params)}")
            continue
        problem = nproc_problem(nproc, cfg) or data_path_problem(cfg)
        if problem:
            errors.append(f"grid point {name}: {problem}")
            continue
        points.append(GridPoint(name, params, cfg, nproc))
    if errors:
        n = len(errors) - 1
        more = f" (and {n} more grid point{'s' if n > 1 else ''})" if n else ""
        raise SweepError(f"{where}: invalid configuration at {errors[0]}{more}")
    return points


def nproc_problem(nproc, cfg: RunConfig) -> str | None:
    """Why ``cfg`` cannot run over ``nproc`` processes (None if it can).

    >>> nproc_problem(2, RunConfig(optimizer="sgd", batch_size=10))
    "nproc: 2 processes run full-batch rules only; 'sgd' samples mini-batches"
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        return f"nproc must be an integer ≥ 1, got {_show(nproc)}"
    if nproc > 1 and rule_class(cfg.optimizer).samples_batch:
        return (f"nproc: {nproc} processes run full-batch rules only; "
                f"{cfg.optimizer!r} samples mini-batches")
    if nproc > cfg.n_train:
        return f"nproc: {nproc} processes cannot share {cfg.n_train} training examples"
    return None


def data_path_problem(cfg: RunConfig) -> str | None:
    """Why the data files of ``cfg`` cannot be there (None if fine or not file-based).

    >>> data_path_problem(RunConfig(dataset="mnist"))
    "data_dir: dataset 'mnist' is read from files; give data_dir"
    """
    if cfg.dataset not in FILE_DATASET_DIRS:
        return None
    folder = cfg.data_dir or FILE_DATASET_DIRS[cfg.dataset]
    if folder is None:
        return f"data_dir: dataset {cfg.dataset!r} is read from files; give data_dir"
    if not Path(folder).is_dir():
        src = "" if cfg.data_dir else f"the default data folder of {cfg.dataset!r}, "
        return f"data_dir: {src}{folder} does not exist"
    return None


# ---------------------------------------------------------------- names and messages
def point_name(params: dict) -> str:
    """A readable, deterministic directory name from grid values.

    >>> point_name({"lr": 0.05, "seed": 1, "classes": [0, 1], "stop_loss": None})
    'lr=0.05_seed=1_classes=0-1_stop_loss=none'
    """
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
    close = difflib.get_close_matches(key, list(fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _validation_message(err: ValidationError, run: dict, params: dict) -> str:
    """pydantic's errors, each field named with the table it came from."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()))
        msg = str(e.get("msg", "")).removeprefix("Value error, ")
        head = loc.split(".")[0] if loc else ""
        origin = " (from [grid])" if head in params else " (from [run])" if head in run else ""
        parts.append(f"{loc}{origin}: {msg}" if loc else msg)
    return "; ".join(parts)
