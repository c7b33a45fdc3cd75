"""Update rules on flat parameter vectors: gd, sgd, polyak (heavy ball), nesterov.

Each rule takes the gradient at the current iterate and returns the step
``s_t = x_{t+1} − x_t``; momentum rules keep a buffer ``b`` (PyTorch's form,
so every gradient is taken at an iterate and its loss comes for free):

* gd / sgd:  ``s = −η g``
* polyak:    ``b ← βb + g``, ``s = −η b``            threshold ``(2+2β)/η``
* nesterov:  ``b ← βb + g``, ``s = −η (g + β b)``    threshold ``(2+2β)/((1+2β)η)``

Example:
    >>> import torch
    >>> opt = UpdateRule("polyak", lr=0.1, beta=0.5)
    >>> s = opt.step(torch.tensor([1.0]))
    >>> s.tolist(), opt.step(torch.tensor([1.0])).tolist()
    ([-0.10000000149011612], [-0.15000000596046448])
"""

from __future__ import annotations

import torch
from torch import Tensor

from eoskit.config import stability_threshold


class UpdateRule:
    def __init__(self, name: str, lr: float, beta: float = 0.0):
        if name not in ("gd", "sgd", "polyak", "nesterov"):
            raise ValueError(f"unknown optimizer {name!r}")
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.name, self.lr, self.beta = name, lr, beta
        self.buffer: Tensor | None = None

    @property
    def threshold(self) -> float:
        return stability_threshold(self.name, self.lr, self.beta)

    def step(self, g: Tensor) -> Tensor:
        if self.name in ("gd", "sgd"):
            return -self.lr * g
        self.buffer = g.clone() if self.buffer is None else self.beta * self.buffer + g
        if self.name == "polyak":
            return -self.lr * self.buffer
        return -self.lr * (g + self.beta * self.buffer)

    def state_dict(self) -> dict:
        return {"name": self.name, "lr": self.lr, "beta": self.beta, "buffer": self.buffer}

    def load_state_dict(self, state: dict) -> None:
        self.buffer = state["buffer"]


def run_quadratic(rule: UpdateRule, curvature: float, steps: int, x0: float = 1.0) -> list[float]:
    """|x_t| of the rule on ``½ λ x²``: a one-line stability check."""
    x = torch.tensor([x0], dtype=torch.float64)
    out = []
    for _ in range(steps):
        x = x + rule.step(curvature * x)
        out.append(float(x.abs()))
    return out
