"""Sweeps: one training run per point of a grid of run options, on a process pool or Ray.

A sweep file is TOML with a ``[run]`` table of run options (the
:class:`~eoskit.training.config.RunConfig` field names, as for ``eoskit run --config``)
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

* :mod:`~eoskit.sweep.spec`: reading, expanding and validating a sweep file.
* :mod:`~eoskit.sweep.index`: the sweep directory and its ``runs.csv``.
* :mod:`~eoskit.sweep.runner`: the runs, on a process pool, Ray, or inline.
* :mod:`eoskit.plots.sweep_figures`: the sweep's figures.

Example:
    >>> spec = parse_sweep({"run": {"dataset": "digits", "steps": 3},
    ...                     "grid": {"lr": [0.1, 0.2], "seed": [0]}})
    >>> [p.name for p in spec.points]
    ['lr=0.1_seed=0', 'lr=0.2_seed=0']
"""

from eoskit.sweep.index import (
    INDEX_COLUMNS,
    SweepIndex,
    indexed_runs,
    load_stored_sweep,
    prepare_out,
    resolve_run_dir,
)
from eoskit.sweep.runner import BACKENDS, LOCAL_RETRIES, RAY_MAX_RETRIES, run_point, run_sweep
from eoskit.sweep.spec import (
    GridPoint,
    SweepError,
    SweepSpec,
    data_path_problem,
    load_sweep,
    parse_sweep,
    point_name,
)

__all__ = [
    # the sweep file
    "SweepSpec", "GridPoint", "SweepError", "load_sweep", "parse_sweep", "point_name",
    "data_path_problem",
    # the sweep directory and runs.csv
    "INDEX_COLUMNS", "SweepIndex", "prepare_out", "load_stored_sweep", "resolve_run_dir",
    "indexed_runs",
    # running
    "BACKENDS", "LOCAL_RETRIES", "RAY_MAX_RETRIES", "run_point", "run_sweep",
]

