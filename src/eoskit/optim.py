"""Update rules on flat parameter vectors: gd, sgd, polyak (heavy ball), nesterov.

Each rule takes the gradient at the current iterate and returns the step
``s_t = x_{t+1} − x_t``; momentum rules keep a buffer ``b`` (PyTorch's form,
so every gradient is taken at an iterate and its loss comes for free):

* gd / sgd:  ``s = −η g``
* polyak:    ``b ← βb + g``, ``s = −η b``            threshold ``(2+2β)/η``
* nesterov:  ``b ← βb + g``, ``s = −η (g + β b)``    threshold ``(2+2β)/((1+2β)η)``

A rule also answers what the training loop needs to know about its steps
(whether it samples a batch, whether the edge-coupling identities hold for
them, how their effective curvature is read off the loss change), so the
loop never tests an optimiser's name. ``RULES`` maps names to rule classes;
adding an optimiser is one subclass and one entry there.

``UpdateRule(name, lr, beta)`` builds the registered rule of that name:

Example:
    >>> import torch
    >>> opt = UpdateRule("polyak", lr=0.1, beta=0.5)
    >>> s = opt.step(torch.tensor([1.0]))
    >>> s.tolist(), opt.step(torch.tensor([1.0])).tolist()
    ([-0.10000000149011612], [-0.15000000596046448])
    >>> type(opt).__name__, opt.threshold
    ('Polyak', 30.0)
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor


class _ByName(type):
    """``UpdateRule(name, ...)`` returns ``RULES[name](...)``; a subclass is built as usual."""

    def __call__(cls, *args, **kwargs):
        if cls is not UpdateRule:
            return super().__call__(*args, **kwargs)
        if args:
            name, args = args[0], args[1:]
        else:
            name = kwargs.pop("name")
        return rule_class(name)(*args, **kwargs)


class UpdateRule(metaclass=_ByName):
    """One optimiser: its step, its stability threshold and the facts about its steps."""

    name: ClassVar[str]
    samples_batch: ClassVar[bool] = False  # gradient of a random mini-batch (needs batch_size)
    momentum: ClassVar[bool] = False  # uses beta (> 0 required); otherwise beta must be 0
    edge_coupling: ClassVar[bool] = False  # steps are s = −ηg: docs/theory.md §1–§4 apply
    threshold_formula: ClassVar[str]  # threshold_for as a figure label

    def __init__(self, lr: float, beta: float = 0.0):
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.lr, self.beta = lr, beta
        self.buffer: Tensor | None = None

    @classmethod
    def threshold_for(cls, lr: float, beta: float = 0.0) -> float:
        """Sharpness above which the rule diverges on a quadratic."""
        raise NotImplementedError

    @property
    def threshold(self) -> float:
        return self.threshold_for(self.lr, self.beta)

    def step(self, g: Tensor) -> Tensor:
        """The step ``s_t`` from the gradient ``g`` at ``x_t``; advances any momentum."""
        raise NotImplementedError

    def curvature_terms(self, g: Tensor, s: Tensor) -> dict:
        """Scalars of step ``s`` that :meth:`effective_curvature` needs besides the losses.

        They wait with the step's row until ``L(x_{t+1})`` is known, so they are
        plain floats (a checkpoint keeps them).
        """
        return {}

    def effective_curvature(self, loss: float, loss_next: float, step_sq: float,
                            terms: dict) -> float:
        """κ_t of the step, from ``L(x_t)``, ``L(x_{t+1})``, ``|s_t|²`` (docs/theory.md §3)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"name": self.name, "lr": self.lr, "beta": self.beta, "buffer": self.buffer}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name", self.name) != self.name:
            raise ValueError(f"optimizer state of {state['name']!r} given to {self.name!r}")
        self.buffer = state["buffer"]


class GD(UpdateRule):
    """Full-batch gradient descent ``s = −η g``."""

    name = "gd"
    edge_coupling = True
    threshold_formula = "2/η"

    @classmethod
    def threshold_for(cls, lr: float, beta: float = 0.0) -> float:
        return 2.0 / lr

    def step(self, g: Tensor) -> Tensor:
        return -self.lr * g

    def effective_curvature(self, loss, loss_next, step_sq, terms) -> float:
        # imported here: diagnostics pulls in the eigensolvers, and config imports this module
        from eoskit.diagnostics import effective_curvature

        return effective_curvature(loss, loss_next, step_sq, self.lr)


class SGD(GD):
    """GD's step on the gradient of a random mini-batch (its loss change is the batch's)."""

    name = "sgd"
    samples_batch = True


class _Momentum(UpdateRule):
    """``b ← βb + g`` (``b = g`` at the first step) and a step along ``direction(g, b)``."""

    momentum = True

    def direction(self, g: Tensor, b: Tensor) -> Tensor:
        raise NotImplementedError

    def step(self, g: Tensor) -> Tensor:
        self.buffer = g.clone() if self.buffer is None else self.beta * self.buffer + g
        return -self.lr * self.direction(g, self.buffer)

    def curvature_terms(self, g: Tensor, s: Tensor) -> dict:
        return {"_g_dot_s": float(g @ s)}

    def effective_curvature(self, loss, loss_next, step_sq, terms) -> float:
        # the exact second-order form 2(ΔL − gᵀs)/|s|²; GD's formula needs s = −ηg
        if step_sq <= 0:
            return math.nan
        return 2.0 * (loss_next - loss - terms["_g_dot_s"]) / step_sq


class Polyak(_Momentum):
    """Heavy ball: ``s = −η b``."""

    name = "polyak"
    threshold_formula = "(2+2β)/η"

    @classmethod
    def threshold_for(cls, lr: float, beta: float = 0.0) -> float:
        return (2.0 + 2.0 * beta) / lr

    def direction(self, g: Tensor, b: Tensor) -> Tensor:
        return b


class Nesterov(_Momentum):
    """Nesterov momentum in PyTorch's form: ``s = −η (g + β b)``."""

    name = "nesterov"
    threshold_formula = "(2+2β)/((1+2β)η)"

    @classmethod
    def threshold_for(cls, lr: float, beta: float = 0.0) -> float:
        return (2.0 + 2.0 * beta) / ((1.0 + 2.0 * beta) * lr)

    def direction(self, g: Tensor, b: Tensor) -> Tensor:
        return g + self.beta * b


RULES: dict[str, type[UpdateRule]] = {r.name: r for r in (GD, Polyak, Nesterov, SGD)}
OPTIMIZERS = tuple(RULES)  # the allowed values of RunConfig.optimizer


def rule_class(name: str) -> type[UpdateRule]:
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(RULES)}") from None


def stability_threshold(optimizer: str, lr: float, beta: float = 0.0) -> float:
    """Sharpness above which the optimiser diverges on a quadratic.

    GD/SGD ``2/η``; Polyak heavy ball ``(2+2β)/η``; Nesterov ``(2+2β)/((1+2β)η)``.

    Example:
        >>> stability_threshold("nesterov", 0.1, 0.5)
        15.0
    """
    return rule_class(optimizer).threshold_for(lr, beta)


def run_quadratic(rule: UpdateRule, curvature: float, steps: int, x0: float = 1.0) -> list[float]:
    """|x_t| of the rule on ``½ λ x²``: a one-line stability check."""
    x = torch.tensor([x0], dtype=torch.float64)
    out = []
    for _ in range(steps):
        x = x + rule.step(curvature * x)
        out.append(float(x.abs()))
    return out
