"""Full-batch gradient descent ``s = −η g``: threshold ``2/η``."""

from __future__ import annotations

from torch import Tensor

from eoskit.optim.update_rule import UpdateRule


class GD(UpdateRule):
    """Full-batch gradient descent ``s = −η g``."""

    name = "gd"
    edge_coupling = True
    threshold_formula = "2/η"

    @classmethod
    def threshold_for(cls, lr: float, beta: float = 0.0, **hyper) -> float:
        return 2.0 / lr

    def step(self, g: Tensor, x: Tensor | None = None) -> Tensor:
        return -self.lr * g

    predicted_step = step  # GD keeps no state: no copy needed to look one step ahead

    def curvature_terms(self, g: Tensor, s: Tensor) -> dict:
        return {}  # s = −ηg: the losses and |s|² suffice

    def effective_curvature(self, loss, loss_next, step_sq, terms) -> float:
        # imported here: diagnostics pulls in the eigensolvers, above this layer's import time
        from eoskit.diagnostics.identities import effective_curvature

        return effective_curvature(loss, loss_next, step_sq, self.lr)
