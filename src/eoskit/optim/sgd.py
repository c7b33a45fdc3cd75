"""Stochastic gradient descent: GD's step on a random mini-batch's gradient."""

from __future__ import annotations

import torch

from eoskit.optim.gd import GD


class SGD(GD):
    """GD's step on the gradient of a random mini-batch (its loss change is the batch's)."""

    name = "sgd"
    samples_batch = True
    torch_optimizer = torch.optim.SGD

    @classmethod
    def torch_settings(cls, group: dict) -> dict | None:
        return None if group.get("momentum") else {"lr": float(group["lr"])}
