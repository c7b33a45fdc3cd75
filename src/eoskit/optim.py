"""Update rules on flat parameter vectors: gd, sgd, polyak, nesterov, adam, adamw, rmsprop.

Each rule takes the gradient at the current iterate and returns the step
``s_t = x_{t+1} − x_t``; momentum rules keep a buffer ``b`` (PyTorch's form,
so every gradient is taken at an iterate and its loss comes for free):

* gd / sgd:  ``s = −η g``
* polyak:    ``b ← βb + g``, ``s = −η b``            threshold ``(2+2β)/η``
* nesterov:  ``b ← βb + g``, ``s = −η (g + β b)``    threshold ``(2+2β)/((1+2β)η)``
* adam, adamw, rmsprop: exactly ``torch.optim.Adam/AdamW/RMSprop`` (bias correction as
  torch), with the preconditioner ``P_t = diag(√v̂_t + ε)`` of the step from ``x_t``;
  thresholds on the *preconditioned* sharpness λ₁(P^{-1/2} H P^{-1/2}):
  Adam/AdamW ``(2+2β₁)/((1−β₁)η)`` (AdamW's weight decay ignored), RMSProp ``2/η``

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
    preconditioned: ClassVar[bool] = False  # threshold is on λ₁(P^{-1/2}HP^{-1/2}), see below
    # RunConfig fields the rule reads besides lr and beta, with their defaults (torch's)
    hyperparameters: ClassVar[dict[str, float | int | None]] = {}
    threshold_formula: ClassVar[str]  # threshold_for as a figure label

    def __init__(self, lr: float, beta: float = 0.0, **hyper):
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        unknown = sorted(set(hyper) - set(self.hyperparameters))
        if unknown:
            raise ValueError(f"optimizer {self.name!r} takes no {', '.join(unknown)}")
        self.lr, self.beta = lr, beta
        self.hyper = {**self.hyperparameters,
                      **{k: v for k, v in hyper.items() if v is not None}}
        self.buffer: Tensor | None = None

    @classmethod
    def threshold_for(cls, lr: float, beta: float = 0.0, **hyper) -> float:
        """Sharpness above which the rule diverges on a quadratic."""
        raise NotImplementedError

    @property
    def threshold(self) -> float:
        return self.threshold_for(self.lr, self.beta, **self.hyper)

    def step(self, g: Tensor, x: Tensor | None = None) -> Tensor:
        """The step ``s_t`` from the gradient ``g`` at ``x_t`` (read by weight decay only)."""
        raise NotImplementedError

    def preconditioner(self, g: Tensor, x: Tensor | None = None) -> Tensor | None:
        """Diagonal ``p`` (d,) of the ``P_t`` that :meth:`step` would use with ``g``; None
        for rules without one. Advances nothing."""
        return None

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
    def threshold_for(cls, lr: float, beta: float = 0.0, **hyper) -> float:
        return 2.0 / lr

    def step(self, g: Tensor, x: Tensor | None = None) -> Tensor:
        return -self.lr * g

    def effective_curvature(self, loss, loss_next, step_sq, terms) -> float:
        # imported here: diagnostics pulls in the eigensolvers, and config imports this module
        from eoskit.diagnostics.identities import effective_curvature

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

    def step(self, g: Tensor, x: Tensor | None = None) -> Tensor:
        self.buffer = g.clone() if self.buffer is None else self.beta * self.buffer + g
        return -self.lr * self.direction(g, self.buffer)

    def curvature_terms(self, g: Tensor, s: Tensor) -> dict:
        return _g_dot_s(g, s)

    def effective_curvature(self, loss, loss_next, step_sq, terms) -> float:
        return _second_order_curvature(loss, loss_next, step_sq, terms)


def _g_dot_s(g: Tensor, s: Tensor) -> dict:
    return {"_g_dot_s": float(g @ s)}


def _second_order_curvature(loss, loss_next, step_sq, terms) -> float:
    # the exact second-order form 2(ΔL − gᵀs)/|s|²; GD's formula needs s = −ηg
    if step_sq <= 0:
        return math.nan
    return 2.0 * (loss_next - loss - terms["_g_dot_s"]) / step_sq


class Polyak(_Momentum):
    """Heavy ball: ``s = −η b``."""

    name = "polyak"
    threshold_formula = "(2+2β)/η"

    @classmethod
    def threshold_for(cls, lr: float, beta: float = 0.0, **hyper) -> float:
        return (2.0 + 2.0 * beta) / lr

    def direction(self, g: Tensor, b: Tensor) -> Tensor:
        return b


class Nesterov(_Momentum):
    """Nesterov momentum in PyTorch's form: ``s = −η (g + β b)``."""

    name = "nesterov"
    threshold_formula = "(2+2β)/((1+2β)η)"

    @classmethod
    def threshold_for(cls, lr: float, beta: float = 0.0, **hyper) -> float:
        return (2.0 + 2.0 * beta) / ((1.0 + 2.0 * beta) * lr)

    def direction(self, g: Tensor, b: Tensor) -> Tensor:
        return g + self.beta * b


class _Adaptive(UpdateRule):
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

    def __init__(self, lr: float, beta: float = 0.0, **hyper):
        super().__init__(lr, beta, **hyper)
        self.t = 0  # steps taken
        self.v: Tensor | None = None  # torch's exp_avg_sq / square_avg
        self.v_steps = 0  # updates of v (its bias correction stops with it when frozen)

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
        root = v.sqrt()
        if self.bias_corrected:
            root = root / (1 - self.hyper[self.second_decay] ** v_steps) ** 0.5
        return root + self.hyper["eps"]  # (d,)

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

    def curvature_terms(self, g: Tensor, s: Tensor) -> dict:
        return _g_dot_s(g, s)

    def effective_curvature(self, loss, loss_next, step_sq, terms) -> float:
        return _second_order_curvature(loss, loss_next, step_sq, terms)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "hyper": dict(self.hyper), "t": self.t, "v": self.v,
                "v_steps": self.v_steps}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.t, self.v, self.v_steps = state["t"], state["v"], state["v_steps"]


_ADAM_DEFAULTS = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                  "freeze_preconditioner_at": None}


class Adam(_Adaptive):
    """``torch.optim.Adam``: ``m ← β₁m + (1−β₁)g``, ``s = −η/(1−β₁^t) · m/P_t``."""

    name = "adam"
    hyperparameters = _ADAM_DEFAULTS
    second_decay = "beta2"
    bias_corrected = True
    threshold_formula = "(2+2β₁)/((1−β₁)η)"

    @classmethod
    def threshold_for(cls, lr: float, beta: float = 0.0, **hyper) -> float:
        # frozen P: preconditioned heavy ball with step (1−β₁)η; weight decay ignored
        beta1 = hyper.get("beta1", cls.hyperparameters["beta1"])
        return (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lr)

    def numerator(self, grad: Tensor) -> Tensor:
        beta1 = self.hyper["beta1"]
        m = torch.zeros_like(grad) if self.buffer is None else self.buffer
        self.buffer = torch.lerp(m, grad, 1 - beta1)
        return (self.lr / (1 - beta1 ** self.t)) * self.buffer


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with the decay ``x ← (1 − ηλ)x`` kept out of the moments."""

    name = "adamw"
    hyperparameters = {**_ADAM_DEFAULTS, "weight_decay": 0.01}
    decoupled_decay = True


class RMSprop(_Adaptive):
    """``torch.optim.RMSprop`` (no momentum, not centred): ``s = −η g/P_t``, no bias correction."""

    name = "rmsprop"
    hyperparameters = {"alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0,
                       "freeze_preconditioner_at": None}
    second_decay = "alpha"
    bias_corrected = False
    threshold_formula = "2/η"

    threshold_for = GD.threshold_for

    def numerator(self, grad: Tensor) -> Tensor:
        return self.lr * grad


RULES: dict[str, type[UpdateRule]] = {
    r.name: r for r in (GD, Polyak, Nesterov, SGD, Adam, AdamW, RMSprop)}
OPTIMIZERS = tuple(RULES)  # the allowed values of RunConfig.optimizer
HYPERPARAMETERS = tuple(dict.fromkeys(h for r in RULES.values() for h in r.hyperparameters))


def rule_class(name: str) -> type[UpdateRule]:
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(RULES)}") from None


def stability_threshold(optimizer: str, lr: float, beta: float = 0.0, **hyper) -> float:
    """Sharpness above which the optimiser diverges on a quadratic.

    GD/SGD ``2/η``; Polyak heavy ball ``(2+2β)/η``; Nesterov ``(2+2β)/((1+2β)η)``;
    on the preconditioned sharpness, Adam/AdamW ``(2+2β₁)/((1−β₁)η)``, RMSProp ``2/η``.

    Example:
        >>> stability_threshold("nesterov", 0.1, 0.5), round(stability_threshold("adam", 0.1), 9)
        (15.0, 380.0)
    """
    return rule_class(optimizer).threshold_for(lr, beta, **hyper)


def rule_hyperparameters(cfg) -> dict:
    """The hyperparameters of ``cfg.optimizer``'s rule, read off a RunConfig-like ``cfg``."""
    return {h: getattr(cfg, h) for h in rule_class(cfg.optimizer).hyperparameters}


def rule_for(cfg) -> UpdateRule:
    """The update rule a RunConfig-like ``cfg`` (optimizer, lr, beta, ...) describes."""
    return rule_class(cfg.optimizer)(cfg.lr, cfg.beta, **rule_hyperparameters(cfg))


def torch_preconditioner(optimizer: torch.optim.Optimizer, params) -> Tensor:
    """``P = √v̂ + ε`` (flat (d,), in ``params``' order) of the step a torch optimiser last took.

    Reads ``exp_avg_sq`` and ``step`` of ``torch.optim.Adam``/``AdamW`` (bias-corrected)
    or ``square_avg`` of ``torch.optim.RMSprop``, so it equals the ``p`` this module's
    rules used in that step; the preconditioned sharpness is then that of
    ``preconditioned_matvec(hvp, p)`` (:mod:`eoskit.eigs.preconditioned_operator`).
    """
    known = {torch.optim.RMSprop: ("square_avg", False), torch.optim.Adam: ("exp_avg_sq", True),
             torch.optim.AdamW: ("exp_avg_sq", True)}
    key, corrected = next((v for k, v in known.items() if isinstance(optimizer, k)), (None, 0))
    if key is None:
        raise TypeError(f"no diagonal preconditioner known for {type(optimizer).__name__}")
    group_of = {id(p): grp for grp in optimizer.param_groups for p in grp["params"]}
    parts = []
    for p in params:
        state, grp = optimizer.state.get(p), group_of[id(p)]
        if grp.get("amsgrad") or grp.get("centered") or grp.get("momentum"):
            raise ValueError("amsgrad, centred or momentum variants have no P here")
        if not state:
            raise ValueError("the optimizer has taken no step yet: no preconditioner")
        root = state[key].sqrt()
        if corrected:
            root = root / (1 - grp["betas"][1] ** float(state["step"])) ** 0.5
        parts.append((root + grp["eps"]).reshape(-1))
    return torch.cat(parts)


def run_quadratic(rule: UpdateRule, curvature: float, steps: int, x0: float = 1.0) -> list[float]:
    """|x_t| of the rule on ``½ λ x²``: a one-line stability check."""
    x = torch.tensor([x0], dtype=torch.float64)
    out = []
    for _ in range(steps):
        x = x + rule.step(curvature * x, x)
        out.append(float(x.abs()))
    return out
