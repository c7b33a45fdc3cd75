"""The sharpness benchmark (``eoskit bench sharpness``): eoskit against its peers.

Setting (``FULL``, :mod:`eoskit.bench.setting`): MNIST-5k, 4,000 training
images, ``fc-tanh`` 784-150-150-10, MSE (½‖f − y‖² summed over outputs, mean
over samples), float32 and float64, at initialisation and at a point at the
Edge of Stability: 700 full-batch GD steps at η = 0.1 (sharpness reaches
2/η = 20 by step ~550 and hovers there; at η = 0.045 it only reaches ~15 of
44 after 600 steps with this package's preprocessing). The GD trajectory is
run in float32 once and the points are cached under ``runs/bench-cache/``
(keyed by setting, torch version and thread count), so reruns skip training;
so are the reference eigenvalues (:mod:`eoskit.bench.bench_problem`).

Sections, each a list of JSON rows ``{method, setting, hvps, seconds,
rel_error}`` plus descriptive keys: ``costs`` (:mod:`~eoskit.bench.costs`),
``cold`` (:mod:`~eoskit.bench.cold`), ``track`` and ``stream``
(:mod:`~eoskit.bench.tracking`), ``scaling`` (:mod:`~eoskit.bench.scaling`);
then the ``goal`` rows (:mod:`~eoskit.bench.goals`). ``eoskit bench scaling``,
one problem over N processes, is :mod:`~eoskit.bench.processes`. The peers (curvlinops,
PyHessian, Cohen et al.'s protocol) and their common loss live in
:mod:`eoskit.bench.peers`; the driver in :mod:`eoskit.bench.sharpness_bench`.
"""

from eoskit.bench.bench_problem import BenchProblem, Cache, build, gd_points, reference_eig
from eoskit.bench.cold import bench_cold
from eoskit.bench.costs import bench_costs
from eoskit.bench.goals import goals
from eoskit.bench.peers import (
    HalfSquaredError,
    cohen_hvp_fn,
    curvlinops_operator,
    pyhessian_setup,
)
from eoskit.bench.processes import bench_processes
from eoskit.bench.scaling import bench_scaling
from eoskit.bench.setting import (
    FULL,
    REL_ACCURACY_COLD,
    SECTIONS,
    STREAM_TOL,
    TINY,
    TRACK_TOL,
    Setting,
)
from eoskit.bench.sharpness_bench import environment, run_sharpness_bench, table, write_json
from eoskit.bench.tracking import RESTART, STREAM_NAME, TRACK_NAME, bench_tracking

__all__ = [
    # settings
    "FULL", "SECTIONS", "TINY", "Setting",
    "REL_ACCURACY_COLD", "STREAM_TOL", "TRACK_TOL",
    # problem, cached points and references
    "BenchProblem", "Cache", "build", "gd_points", "reference_eig",
    # peers
    "HalfSquaredError", "cohen_hvp_fn", "curvlinops_operator", "pyhessian_setup",
    # sections
    "RESTART", "STREAM_NAME", "TRACK_NAME",
    "bench_cold", "bench_costs", "bench_scaling", "bench_tracking",
    # process scaling (eoskit bench scaling)
    "bench_processes",
    # goals
    "goals",
    # driver and output
    "environment", "run_sharpness_bench", "table", "write_json",
]
