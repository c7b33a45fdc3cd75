"""The columns of ``metrics.csv``: one contract (README) for ``eoskit run`` and the Monitor.

Both write a row per measured step ``t``: the loss and gradient norm at
``x_t``, the step's norm and effective curvature, the sharpness and its
threshold, the eigensolver's residual and cost. A run adds what it knows of
its own data (accuracy, test loss, the running mean of κ, a batch rule's
full-batch loss); a Monitor adds the learning rate it read off the user's
optimiser. A rule with a preconditioner ``P`` adds the preconditioned series
(``precond_sharpness``, docs/theory.md §6).

Example:
    >>> from eoskit.optim import rule_class
    >>> run_columns(rule_class("gd"), 2)[-2:]
    ['eig_1', 'eig_2']
    >>> run_columns(rule_class("rmsprop"), 1)[-1], monitor_columns(1, preconditioned=False)[-1]
    ('precond_sharpness', 'eig_1')
"""

from __future__ import annotations

PRECOND = "precond_sharpness"  # λ₁(P^{-1/2} H P^{-1/2}), the series an adaptive threshold is on

RUN_COLUMNS = [
    "step", "loss", "accuracy", "test_loss", "test_accuracy", "grad_norm", "step_norm",
    "eff_curvature", "eff_curvature_mean", "sharpness", "threshold", "eig_residual", "hvps",
    "wall_time",
]
MONITOR_COLUMNS = [
    "step", "loss", "grad_norm", "step_norm", "eff_curvature", "sharpness", "threshold", "lr",
    "eig_residual", "eig_error_estimate", "hvps", "wall_time",
]
# the solver's estimate of the preconditioned sharpness's relative error (a Monitor's)
PRECOND_ERROR = "precond_eig_error_estimate"


def eig_columns(neigs: int, prefix: str = "eig") -> list[str]:
    """``eig_1..k`` (or ``precond_eig_1..k``): the top ``neigs`` eigenvalues, largest first."""
    return [f"{prefix}_{i + 1}" for i in range(neigs)]


def precond_columns(neigs: int, every_eig: bool) -> list[str]:
    """The preconditioned series' columns: its sharpness and, if ``every_eig``, each eigenvalue."""
    return [PRECOND] + (eig_columns(neigs, "precond_eig") if every_eig else [])


def run_columns(rule_cls, neigs: int) -> list[str]:
    """An ``eoskit run``'s columns for its update rule class (``eig_i`` only when ``neigs`` > 1:
    ``eig_1`` would repeat ``sharpness``)."""
    cols = RUN_COLUMNS + (eig_columns(neigs) if neigs > 1 else [])
    if rule_cls.samples_batch:
        cols += ["full_loss"]  # the full-batch loss beside the batch's
    if rule_cls.preconditioned:
        cols += precond_columns(neigs, neigs > 1)
    return cols


def monitor_columns(neigs: int, preconditioned: bool) -> list[str]:
    """A Monitor's columns (``eig_1..k`` always: its loggers read ``eig_1``); ``preconditioned``:
    the user's optimiser is an adaptive one with a readable ``P``."""
    cols = MONITOR_COLUMNS + eig_columns(neigs)
    return cols + (precond_columns(neigs, True) + [PRECOND_ERROR] if preconditioned else [])
