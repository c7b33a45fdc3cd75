"""Rows of ``metrics.csv``: the cells one measurement gives, for a run and for a Monitor.

A row ``t`` is built from the evaluation at ``x_t`` (loss, gradient, the
eigensolver's results); its step norm and effective curvature κ need
``x_{t+1}`` and ``L(x_{t+1})`` and are added later by whoever takes or sees
the step. κ is always the update rule's own reading (:mod:`eoskit.optim`):
the loop asks its rule; a Monitor, which sees a user's step of unknown form,
uses the second-order form every rule with a general step uses
(:func:`eoskit.optim.second_order_curvature`), exact for any step.

Example:
    >>> import torch
    >>> g, s = torch.tensor([1.0, 0.0]), torch.tensor([-0.5, 0.0])
    >>> step_cells(1.0, 0.5, g, s)  # L(x+s) = 1 - 0.5: no curvature along s
    {'step_norm': 0.5, 'eff_curvature': 0.0}
"""

from __future__ import annotations

import math

from torch import Tensor

from eoskit.eigs import EigResult
from eoskit.metrics.columns import PRECOND, PRECOND_ERROR
from eoskit.optim import second_order_curvature


def relative_error_estimate(eig: EigResult | None) -> float | None:
    """The solver's estimate of the top value's relative error (None where it gives none)."""
    if eig is None or eig.error_estimates is None or not len(eig.error_estimates):
        return None
    return float(eig.error_estimates[0] / max(abs(float(eig.eigenvalues[0])), 1e-300))


def eig_cells(eig: EigResult | None, neigs: int, every_eig: bool) -> dict:
    """``sharpness``, its relative residual and (``every_eig``) ``eig_1..k``; ``eig`` None:
    empty cells (a Monitor that measures the preconditioned sharpness alone)."""
    if eig is None:
        cells = {"sharpness": None, "eig_residual": None}
        return cells | ({f"eig_{i + 1}": None for i in range(neigs)} if every_eig else {})
    values = [float(v) for v in eig.eigenvalues]
    cells = {"sharpness": values[0],
             "eig_residual": float(eig.residuals[0] / max(abs(values[0]), 1e-300))}
    if every_eig:
        cells.update({f"eig_{i + 1}": v for i, v in enumerate(values[:neigs])})
    return cells


def precond_cells(eig: EigResult | None, neigs: int, every_eig: bool) -> dict:
    """A preconditioned :class:`~eoskit.eigs.EigResult` as cells (``eig`` None: empty cells,
    e.g. before an adaptive optimiser's first step, when there is no ``P`` yet)."""
    values = [None] * neigs if eig is None else [float(v) for v in eig.eigenvalues]
    cells = {PRECOND: values[0]}
    if every_eig:
        cells.update({f"precond_eig_{i + 1}": v for i, v in enumerate(values[:neigs])})
    return cells


def first_row(t: int, ev, wall: float, problem, rule, x: Tensor) -> dict:
    """An ``eoskit run``'s row ``t`` from the loop's evaluation ``ev`` at ``x`` (= ``x_t``):
    ``ev`` has ``loss``, ``grad``, ``aux`` (correct predictions), ``eig``, ``precond_eig``
    and ``hvps``; ``problem`` the run's config, train and test objectives."""
    cfg, obj = problem.config, problem.train
    row = {"step": t, "loss": ev.loss, "grad_norm": float(ev.grad.norm()),
           "threshold": rule.threshold, "hvps": ev.hvps, "wall_time": wall}
    if ev.aux is not None:
        row["accuracy"] = int(ev.aux) / (cfg.batch_size or obj.n)
    if ev.eig is not None:
        row.update(eig_cells(ev.eig, cfg.neigs, cfg.neigs > 1))
    if ev.precond_eig is not None:
        row.update(precond_cells(ev.precond_eig, cfg.neigs, cfg.neigs > 1))
    due = cfg.eval_every and (t % cfg.eval_every == 0 or t == cfg.steps - 1)
    if problem.test is not None and due:
        row["test_loss"], row["test_accuracy"] = problem.test.loss_and_accuracy(x)
    if rule.samples_batch and due:
        row["full_loss"], _ = obj.loss_and_accuracy(x)
    return row


def monitor_row(step: int, loss: float, g: Tensor, eig: EigResult | None, *, threshold, lr,
                hvps: int, wall: float, neigs: int) -> dict:
    """A Monitor's row at the user's step ``step``: κ and the step's norm wait for the next
    step (None until :func:`step_cells` fills them). ``eig_error_estimate``: the solver's
    estimate of the sharpness's relative error (at most ``tol`` once converged)."""
    return {"step": step, "loss": loss, "grad_norm": float(g.norm()), "threshold": threshold,
            "lr": lr, "hvps": hvps, "wall_time": wall, "eff_curvature": None,
            "step_norm": None, **eig_cells(eig, neigs, True),
            "eig_error_estimate": relative_error_estimate(eig)}


def monitor_precond_cells(eig: EigResult | None, neigs: int) -> dict:
    """A Monitor's preconditioned cells: :func:`precond_cells` and the relative error
    estimate."""
    return {**precond_cells(eig, neigs, True), PRECOND_ERROR: relative_error_estimate(eig)}


def step_cells(loss: float, loss_next: float, g: Tensor, s: Tensor) -> dict:
    """``step_norm`` and ``eff_curvature`` of any step ``s`` from ``x`` (loss, gradient ``g``)
    to ``x + s`` (``loss_next``); κ is None for a zero step."""
    sq = float(s @ s)
    kappa = second_order_curvature(loss, loss_next, sq, float(g @ s)) if sq > 0 else None
    return {"step_norm": math.sqrt(sq), "eff_curvature": kappa}
