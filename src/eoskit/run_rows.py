"""Building one row of ``metrics.csv`` from one evaluation at ``x_t``.

Split out of :mod:`eoskit.train`: the row's cells as far as ``x_t`` tells;
the loop adds the step's norm and effective curvature once it knows them.
"""

from __future__ import annotations

from torch import Tensor

from eoskit.series import precond_cells


def first_row(t: int, ev, wall: float, problem, rule, x: Tensor) -> dict:
    """Row ``t`` from the :class:`eoskit.train.Evaluation` ``ev`` at ``x`` (= ``x_t``)."""
    cfg, obj = problem.config, problem.train
    row = {"step": t, "loss": ev.loss, "grad_norm": float(ev.grad.norm()),
           "threshold": rule.threshold, "hvps": ev.hvps, "wall_time": wall}
    if ev.aux is not None:
        row["accuracy"] = int(ev.aux) / (cfg.batch_size or obj.n)
    if ev.eig is not None:
        values = ev.eig.eigenvalues
        row["sharpness"] = float(values[0])
        row["eig_residual"] = float(ev.eig.residuals[0] / max(abs(values[0]), 1e-300))
        if cfg.neigs > 1:
            for i, ev_i in enumerate(values):
                row[f"eig_{i + 1}"] = float(ev_i)
    if ev.precond_eig is not None:
        row.update(precond_cells(ev.precond_eig, cfg.neigs))
    due = cfg.eval_every and (t % cfg.eval_every == 0 or t == cfg.steps - 1)
    if problem.test is not None and due:
        row["test_loss"], row["test_accuracy"] = problem.test.loss_and_accuracy(x)
    if rule.samples_batch and due:
        row["full_loss"], _ = obj.loss_and_accuracy(x)
    return row
