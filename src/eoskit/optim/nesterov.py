"""Nesterov momentum in PyTorch's form: ``s = −η (g + β b)``, threshold ``(2+2β)/((1+2β)η)``."""

from __future__ import annotations

import torch
from torch import Tensor

from eoskit.optim.momentum import MomentumRule


class Nesterov(MomentumRule):
    """Nesterov momentum in PyTorch's form: ``s = −η (g + β b)``."""

    name = "nesterov"
    threshold_formula = "(2+2β)/((1+2β)η)"
    torch_optimizer = torch.optim.SGD

    @classmethod
    def threshold_for(cls, lr: float, beta: float = 0.0, **hyper) -> float:
        return (2.0 + 2.0 * beta) / ((1.0 + 2.0 * beta) * lr)

    @classmethod
    def torch_settings(cls, group: dict) -> dict | None:
        if not (group.get("momentum") and group.get("nesterov")):
            return None  # torch requires dampening 0 with nesterov
        return {"lr": float(group["lr"]), "beta": float(group["momentum"])}

    def direction(self, g: Tensor, b: Tensor) -> Tensor:
        return g + self.beta * b
