"""What torch's adaptive rules share: a running second moment ``v`` of the gradient
divides the step, ``P_t = diag(√v̂_t + ε)`` (bias-corrected ``v̂`` as torch).

Their thresholds are on the *preconditioned* sharpness λ₁(P^{-1/2} H P^{-1/2}).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from eoskit.optim.update_rule import Hyper, UpdateRule

EPS = Hyper(1e-8, "ε added to √v̂")
WEIGHT_DECAY = Hyper(0.0, "Weight decay λ, L2 in the gradient (adamw: decoupled)")
FREEZE = Hyper(None, "Hold the preconditioner P fixed from this step on", kind=int)


def denominator(v: Tensor, v_steps: int | float, rho: float, eps: float,
                bias_corrected: bool) -> Tensor:
    """``√v̂ + ε`` of ``v`` after ``v_steps`` updates with decay ``rho``."""
    root = v.sqrt()  # fresh: the rest is in place (one tensor, not three)
    if bias_corrected:
        root.div_((1 - rho ** v_steps) ** 0.5)
    return root.add_(eps)


class SecondMomentRule(UpdateRule):
    """torch's adaptive rules: the running second moment ``v`` of the gradient scales the step.

    ``P_t = diag(√v̂_t + ε)`` is the denominator of the step from ``x_t`` (so ``v̂_t``
    includes ``g_t``). From step ``freeze_preconditioner_at`` on, ``v`` is no longer
    updated, so ``P`` stays the one of that step (Cohen et al. 2022's frozen check);
    the first moment keeps going. The first moment is ``buffer`` (torch's ``exp_avg``).
    """

    preconditioned = True
    second_decay: ClassVar[str]  # the hyperparameter of v's running average
    bias_corrected: ClassVar[bool]  # v̂ = v/(1 − ρ^t), as torch's Adam (not RMSprop)
    decoupled_decay: ClassVar[bool] = False  # AdamW: x ← (1 − ηλ)x, not through the gradient
    torch_state_key: ClassVar[str]  # torch's name for v in the optimiser's state

    def __init__(self, lr: float, beta: float = 0.0, **hyper):
        super().__init__(lr, beta, **hyper)
        self.t = 0  # steps taken
        self.v: Tensor | None = None  # torch's exp_avg_sq / square_avg
        self.v_steps = 0  # updates of v (its bias correction stops with it when frozen)

    @classmethod
    def torch_denominator(cls, state: dict, group: dict) -> Tensor:
        """``√v̂ + ε`` of one parameter from a torch optimiser's state and group, as
        :meth:`preconditioner` computes it (:func:`torch_settings` reads ``rho``)."""
        rho = cls.torch_settings(group)[cls.second_decay]
        return denominator(state[cls.torch_state_key], float(state.get("step", 0)), rho,
                           group["eps"], cls.bias_corrected)

    def _grad(self, g: Tensor, x: Tensor | None) -> Tensor:
        """The gradient the moments see: with torch's L2 weight decay ``g + λx``."""
        wd = self.hyper["weight_decay"]
        if wd == 0 or self.decoupled_decay:
            return g
        if x is None:
            raise ValueError(f"{self.name} with weight_decay needs the iterate x")
        return g.add(x, alpha=wd)

    def _second_moment(self, grad: Tensor) -> tuple[Tensor, int]:
        """``v`` and its update count for the step from ``x_t`` (unchanged once frozen)."""
        frozen_at = self.hyper["freeze_preconditioner_at"]
        if frozen_at is not None and self.t > frozen_at:
            return self.v, self.v_steps
        rho = self.hyper[self.second_decay]
        v = torch.zeros_like(grad) if self.v is None else self.v
        return torch.addcmul(v * rho, grad, grad, value=1 - rho), self.v_steps + 1

    def _denominator(self, v: Tensor, v_steps: int) -> Tensor:
        return denominator(v, v_steps, self.hyper[self.second_decay], self.hyper["eps"],
                           self.bias_corrected)  # (d,)

    def preconditioner(self, g: Tensor, x: Tensor | None = None) -> Tensor:
        return self._denominator(*self._second_moment(self._grad(g, x)))

    def numerator(self, grad: Tensor) -> Tensor:  # what P divides, advancing any first moment
        raise NotImplementedError

    def step(self, g: Tensor, x: Tensor | None = None) -> Tensor:
        grad = self._grad(g, x)
        self.v, self.v_steps = self._second_moment(grad)
        self.t += 1
        s = -(self.numerator(grad) / self._denominator(self.v, self.v_steps))
        wd = self.hyper["weight_decay"]
        if self.decoupled_decay and wd != 0:
            s = s - (self.lr * wd) * x
        return s

    def state_dict(self) -> dict:
        return {**super().state_dict(), "hyper": dict(self.hyper), "t": self.t, "v": self.v,
                "v_steps": self.v_steps}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.t, self.v, self.v_steps = state["t"], state["v"], state["v_steps"]
