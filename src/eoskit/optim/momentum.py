"""What the momentum rules share: the buffer ``b ← βb + g`` in PyTorch's form.

PyTorch's form takes every gradient at an iterate, so its loss comes for free.
"""

from __future__ import annotations

from torch import Tensor

from eoskit.optim.update_rule import UpdateRule


class MomentumRule(UpdateRule):
    """``b ← βb + g`` (``b = g`` at the first step) and a step along ``direction(g, b)``."""

    momentum = True

    def direction(self, g: Tensor, b: Tensor) -> Tensor:
        raise NotImplementedError

    def step(self, g: Tensor, x: Tensor | None = None) -> Tensor:
        self.buffer = g.clone() if self.buffer is None else self.beta * self.buffer + g
        return -self.lr * self.direction(g, self.buffer)

