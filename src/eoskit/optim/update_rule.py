"""The update-rule interface every optimiser implements, and what the rules share.

Each rule takes the gradient at the current iterate and returns the step
``s_t = x_{t+1} − x_t``. A rule also answers what the training loop needs to
know about its steps (whether it samples a batch, whether the edge-coupling
identities hold for them, how their effective curvature is read off the loss
change), what its stability threshold is, and which ``torch.optim`` optimiser
it mirrors, so neither the loop, the CLI nor the Monitor tests an optimiser's
name. The rules are found in :mod:`eoskit.optim.rule_registry`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor


@dataclass(frozen=True)
class Hyper:
    """A rule's hyper-parameter besides ``lr`` and ``beta``: its default (torch's) and its
    meaning. RunConfig's field and ``eoskit run``'s option of that name are built from it."""

    default: float | int | None
    meaning: str  # the option's help, before the rules and their defaults
    kind: type = float
    ge: float = 0.0
    lt: float | None = None  # exclusive upper bound, if any


class UpdateRule:
    """One optimiser: its step, its stability threshold and the facts about its steps."""

    name: ClassVar[str]  # its RunConfig.optimizer value
    samples_batch: ClassVar[bool] = False  # gradient of a random mini-batch (needs batch_size)
    momentum: ClassVar[bool] = False  # uses beta (> 0 required); otherwise beta must be 0
    edge_coupling: ClassVar[bool] = False  # steps are s = −ηg: docs/theory.md §1–§4 apply
    preconditioned: ClassVar[bool] = False  # threshold is on λ₁(P^{-1/2}HP^{-1/2})
    hyperparameters: ClassVar[dict[str, Hyper]] = {}  # besides lr and beta
    threshold_formula: ClassVar[str]  # threshold_for as a figure label
    torch_optimizer: ClassVar[type | None] = None  # the torch.optim class taking its steps

    def __init__(self, lr: float, beta: float = 0.0, **hyper):
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        unknown = sorted(set(hyper) - set(self.hyperparameters))
        if unknown:
            raise ValueError(f"optimizer {self.name!r} takes no {', '.join(unknown)}")
        self.lr, self.beta = lr, beta
        self.hyper = {**self.defaults(), **{k: v for k, v in hyper.items() if v is not None}}
        self.buffer: Tensor | None = None

    @classmethod
    def defaults(cls) -> dict[str, float | int | None]:
        return {k: h.default for k, h in cls.hyperparameters.items()}

    @classmethod
    def threshold_for(cls, lr: float, beta: float = 0.0, **hyper) -> float:
        """Sharpness above which the rule diverges on a quadratic."""
        raise NotImplementedError

    @property
    def threshold(self) -> float:
        return self.threshold_for(self.lr, self.beta, **self.hyper)

    @classmethod
    def torch_settings(cls, group: dict) -> dict | None:
        """``lr``, ``beta`` and hyper-parameters with which this rule takes the step a
        :attr:`torch_optimizer` parameter group takes; None if the group's variant is
        another rule's (or none's)."""
        return None

    @classmethod
    def torch_threshold(cls, group: dict) -> float | None:
        """:meth:`threshold_for` of a torch parameter group's settings, or None."""
        settings = cls.torch_settings(group)
        if settings is None or group.get("maximize") or settings["lr"] <= 0:
            return None
        threshold = cls.threshold_for(**settings)
        if cls.preconditioned:
            return threshold  # weight decay ignored, as in threshold_for
        # L2 decay λ in the gradient steps on L + λ/2·|x|², whose Hessian is H + λI
        return threshold - float(group.get("weight_decay") or 0.0)

    def step(self, g: Tensor, x: Tensor | None = None) -> Tensor:
        """The step ``s_t`` from the gradient ``g`` at ``x_t`` (read by weight decay only)."""
        raise NotImplementedError

    def preconditioner(self, g: Tensor, x: Tensor | None = None) -> Tensor | None:
        """Diagonal ``p`` (d,) of the ``P_t`` that :meth:`step` would use with ``g``; None
        for rules without one. Advances nothing."""
        return None

    def predicted_step(self, g: Tensor, x: Tensor | None = None) -> Tensor:
        """The step :meth:`step` would take with ``g`` at ``x``, advancing nothing."""
        return copy.deepcopy(self).step(g, x)

    def curvature_terms(self, g: Tensor, s: Tensor) -> dict:
        """Scalars of step ``s`` that :meth:`effective_curvature` needs besides the losses.

        They wait with the step's row until ``L(x_{t+1})`` is known, so they are
        plain floats (a checkpoint keeps them). By default ``gᵀs``.
        """
        return {"_g_dot_s": float(g @ s)}

    def effective_curvature(self, loss: float, loss_next: float, step_sq: float,
                            terms: dict) -> float:
        """κ_t of the step, from ``L(x_t)``, ``L(x_{t+1})``, ``|s_t|²`` (docs/theory.md §3)."""
        return second_order_curvature(loss, loss_next, step_sq, terms["_g_dot_s"])

    def state_dict(self) -> dict:
        return {"name": self.name, "lr": self.lr, "beta": self.beta, "buffer": self.buffer}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name", self.name) != self.name:
            raise ValueError(f"optimizer state of {state['name']!r} given to {self.name!r}")
        self.buffer = state["buffer"]


def second_order_curvature(loss: float, loss_next: float, step_sq: float,
                           g_dot_s: float) -> float:
    """κ = 2(ΔL − gᵀs)/|s|², the mean curvature along any step s (NaN for s = 0)."""
    if step_sq <= 0:  # GD's shorter formula needs s = −ηg
        return math.nan
    return 2.0 * (loss_next - loss - g_dot_s) / step_sq


def run_quadratic(rule: UpdateRule, curvature: float, steps: int, x0: float = 1.0) -> list[float]:
    """|x_t| of the rule on ``½ λ x²``: a one-line stability check."""
    x = torch.tensor([x0], dtype=torch.float64)
    out = []
    for _ in range(steps):
        x = x + rule.step(curvature * x, x)
        out.append(float(x.abs()))
    return out
