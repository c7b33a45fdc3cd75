"""κ along every optimiser step, without a Hessian-vector product.

For the step ``s = x_{t+1} − x_t`` the optimiser took,
``κ_t = 2(L(x_{t+1}) − L(x_t) − g_tᵀs)/‖s‖²`` is the mean curvature of ``L``
along ``s`` (exact for any optimiser: the second-order term of ``L`` on the
segment, docs/theory.md §3). :class:`StepCurvature` records it at every step,
independently of the eigen-measurements, in one of two ways:

* on the user's batch (``Monitor.step(batch=..., loss=...)``): ``L(x_t)`` is
  the loss the loop computed, ``g_t`` is read off the parameters' ``.grad``
  (so call before ``zero_grad`` and without gradient clipping, which rescales
  ``.grad``), and ``L(x_{t+1})`` costs **one forward pass** on that batch;
* on the Monitor's measurement set (no batch given): ``L`` and ``g`` at each new
  point cost one forward and one backward pass, and serve the next step.

Memory: one copy of the parameters (``x_t``) and one of ``g_t``, d-long, in the model's dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from eoskit.metrics.metric_rows import step_cells
from eoskit.objective.model import ModelObjective, flatten_params

STEP_COLUMNS = ["step", "loss", "loss_next", "step_norm", "eff_curvature"]


def flat_grad(model: torch.nn.Module, like: Tensor) -> Tensor | None:
    """The parameters' ``.grad`` as one flat vector (zeros where a grad is None), or None
    when no parameter has one."""
    params = [p for p in model.parameters() if p.requires_grad]
    if all(p.grad is None for p in params):
        return None
    return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1)
                      for p in params]).to(like.dtype)


class StepCurvature:
    """Every step's κ along the optimiser's own update; ``rows``: one dict per step."""

    def __init__(self, objective: ModelObjective, model: torch.nn.Module, loss_fn, fork):
        self.objective, self.model, self.loss_fn, self.fork = objective, model, loss_fn, fork
        self.rows: list[dict] = []
        self._x: Tensor | None = None  # x_t
        self._loss: float | None = None  # L(x_t) on the measurement set
        self._g: Tensor | None = None

    def update(self, step: int, batch=None, loss: float | None = None) -> dict | None:
        """Record κ of the step that ended at the current parameters (row ``step − 1``)."""
        if batch is not None:
            return self._on_batch(step, batch, loss)
        x = self.objective.x0()
        with self.fork():
            value, g = self.objective.value_and_grad(x)
        value, g = float(value), g.detach()
        row = None
        if self._x is not None and self._loss is not None:
            row = self._record(step, self._loss, value, self._g, x - self._x)
        self._x, self._loss, self._g = x, value, g
        return row

    def _on_batch(self, step: int, batch, loss) -> dict | None:
        x = flatten_params(self.model, dtype=self.objective.dtype, device=self.objective.device)
        row = None
        # .grad still holds the gradient at x_t of this batch: the update does not touch it
        g = flat_grad(self.model, x) if self._x is not None and loss is not None else None
        if g is not None:
            inputs, targets = batch
            with self.fork(), torch.no_grad():
                loss_next = float(self.loss_fn(self.model(inputs), targets))
            row = self._record(step, float(loss), loss_next, g, x - self._x)
        del g
        self._x, self._loss, self._g = x, None, None  # the next step starts here
        return row

    def _record(self, step, loss, loss_next, g, s) -> dict:
        row = {"step": step - 1, "loss": loss, "loss_next": loss_next,
               **step_cells(loss, loss_next, g, s)}
        self.rows.append(row)
        return row
