"""``torch.optim.AdamW``: Adam with decoupled weight decay (Adam's threshold)."""

from __future__ import annotations

import dataclasses

import torch

from eoskit.optim.adam import Adam
from eoskit.optim.second_moment import WEIGHT_DECAY


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with the decay ``x ← (1 − ηλ)x`` kept out of the moments."""

    name = "adamw"
    hyperparameters = {**Adam.hyperparameters,
                       "weight_decay": dataclasses.replace(WEIGHT_DECAY, default=0.01)}
    decoupled_decay = True
    torch_optimizer = torch.optim.AdamW
