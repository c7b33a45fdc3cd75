"""Heavy-ball momentum: ``s = −η b``, threshold ``(2+2β)/η``."""

from __future__ import annotations

import torch
from torch import Tensor

from eoskit.optim.momentum import MomentumRule


class Polyak(MomentumRule):
    """Heavy ball: ``s = −η b``."""

    name = "polyak"
    threshold_formula = "(2+2β)/η"
    torch_optimizer = torch.optim.SGD

    @classmethod
    def threshold_for(cls, lr: float, beta: float = 0.0, **hyper) -> float:
        return (2.0 + 2.0 * beta) / lr

    @classmethod
    def torch_settings(cls, group: dict) -> dict | None:
        if not group.get("momentum") or group.get("nesterov"):
            return None
        # dampening d scales the buffer's new gradient, so the step to η(1−d)
        damp = float(group.get("dampening") or 0.0)
        return {"lr": float(group["lr"]) * (1.0 - damp), "beta": float(group["momentum"])}

    def direction(self, g: Tensor, b: Tensor) -> Tensor:
        return b
