"""The columns of a run's ``metrics.csv``: a contract (README), chosen by the update rule.

Example:
    >>> from eoskit.config import RunConfig
    >>> metric_columns(RunConfig(neigs=2))[-2:]
    ['eig_1', 'eig_2']
"""

from __future__ import annotations

from eoskit.config import RunConfig
from eoskit.optim import rule_class
from eoskit.series import precond_columns

BASE_COLUMNS = [
    "step", "loss", "accuracy", "test_loss", "test_accuracy", "grad_norm", "step_norm",
    "eff_curvature", "eff_curvature_mean", "sharpness", "threshold", "eig_residual", "hvps",
    "wall_time",
]


def metric_columns(cfg: RunConfig) -> list[str]:
    cols = list(BASE_COLUMNS)
    if cfg.neigs > 1:
        cols += [f"eig_{i + 1}" for i in range(cfg.neigs)]
    if rule_class(cfg.optimizer).samples_batch:
        cols += ["full_loss"]  # the full-batch loss beside the batch's
    return cols + precond_columns(rule_class(cfg.optimizer), cfg.neigs)
