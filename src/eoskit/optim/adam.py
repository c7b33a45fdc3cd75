"""``torch.optim.Adam``: threshold ``(2+2β₁)/((1−β₁)η)`` on the preconditioned sharpness."""

from __future__ import annotations

import torch
from torch import Tensor

from eoskit.optim.second_moment import EPS, FREEZE, WEIGHT_DECAY, SecondMomentRule
from eoskit.optim.update_rule import Hyper

BETA1 = Hyper(0.9, "First-moment decay β₁", lt=1.0)
BETA2 = Hyper(0.999, "Second-moment decay β₂", lt=1.0)


class Adam(SecondMomentRule):
    """``torch.optim.Adam``: ``m ← β₁m + (1−β₁)g``, ``s = −η/(1−β₁^t) · m/P_t``."""

    name = "adam"
    hyperparameters = {"beta1": BETA1, "beta2": BETA2, "eps": EPS,
                       "weight_decay": WEIGHT_DECAY, "freeze_preconditioner_at": FREEZE}
    second_decay = "beta2"
    bias_corrected = True
    threshold_formula = "(2+2β₁)/((1−β₁)η)"
    torch_optimizer = torch.optim.Adam
    torch_state_key = "exp_avg_sq"

    @classmethod
    def threshold_for(cls, lr: float, beta: float = 0.0, **hyper) -> float:
        # frozen P: preconditioned heavy ball with step (1−β₁)η; weight decay ignored
        beta1 = hyper.get("beta1", cls.hyperparameters["beta1"].default)
        return (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lr)

    @classmethod
    def torch_settings(cls, group: dict) -> dict | None:
        if group.get("amsgrad"):
            return None
        return {"lr": float(group["lr"]), "beta1": float(group["betas"][0]),
                "beta2": float(group["betas"][1]), "eps": float(group["eps"]),
                "weight_decay": float(group.get("weight_decay") or 0.0)}

    def numerator(self, grad: Tensor) -> Tensor:
        beta1 = self.hyper["beta1"]
        m = torch.zeros_like(grad) if self.buffer is None else self.buffer
        self.buffer = torch.lerp(m, grad, 1 - beta1)
        return (self.lr / (1 - beta1 ** self.t)) * self.buffer
