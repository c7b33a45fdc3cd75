"""``torch.optim.RMSprop`` (no momentum, not centred): threshold ``2/η`` on the
preconditioned sharpness."""

from __future__ import annotations

import torch
from torch import Tensor

from eoskit.optim.gd import GD
from eoskit.optim.second_moment import EPS, FREEZE, WEIGHT_DECAY, SecondMomentRule
from eoskit.optim.update_rule import Hyper

ALPHA = Hyper(0.99, "Second-moment decay α", lt=1.0)


class RMSprop(SecondMomentRule):
    """``torch.optim.RMSprop`` (no momentum, not centred): ``s = −η g/P_t``, no bias correction."""

    name = "rmsprop"
    hyperparameters = {"alpha": ALPHA, "eps": EPS, "weight_decay": WEIGHT_DECAY,
                       "freeze_preconditioner_at": FREEZE}
    second_decay = "alpha"
    bias_corrected = False
    threshold_formula = "2/η"
    torch_optimizer = torch.optim.RMSprop
    torch_state_key = "square_avg"

    threshold_for = GD.threshold_for

    @classmethod
    def torch_settings(cls, group: dict) -> dict | None:
        if group.get("centered") or group.get("momentum"):
            return None
        return {"lr": float(group["lr"]), "alpha": float(group["alpha"]),
                "eps": float(group["eps"]),
                "weight_decay": float(group.get("weight_decay") or 0.0)}

    def numerator(self, grad: Tensor) -> Tensor:
        return self.lr * grad
