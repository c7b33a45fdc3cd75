"""A training run: from a :class:`~eoskit.training.config.RunConfig` to a finished run directory.

* :mod:`~eoskit.training.run_problem`: the run's data, model and objectives.
* :mod:`~eoskit.training.loop`: :func:`train`, the loop (the update rule takes every step).
* :mod:`~eoskit.training.run_state`: the loop's state and its checkpoints (exact resume).
* :mod:`~eoskit.training.progress`: the progress bar.
* :mod:`~eoskit.training.results`: the run's summary and figures.

The rows and columns of ``metrics.csv`` and the summaries of rows are
:mod:`eoskit.metrics`'; the files, :mod:`eoskit.store`'s; a run over several
processes, :mod:`eoskit.distributed`'s.
"""

from eoskit.training.loop import Evaluation, Trainer, train
from eoskit.training.run_problem import Problem, build_problem, torch_dtype
from eoskit.training.run_state import RunState, restore_run_state, save_run_state

__all__ = [
    # running
    "train", "Trainer", "Evaluation",
    # the run's problem
    "Problem", "build_problem", "torch_dtype",
    # its state and checkpoints
    "RunState", "save_run_state", "restore_run_state",
]
