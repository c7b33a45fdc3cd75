"""What a ``torch.optim`` optimiser says about the stability threshold.

The threshold is that of the eoskit rule whose steps the optimiser takes
(:func:`eoskit.optim.torch_rule`: each rule names the torch optimiser it mirrors
and reads its settings off a parameter group), by that rule's own formula:
``torch.optim.SGD`` without momentum is ``sgd``, with heavy-ball momentum
``polyak`` (dampening ``d`` scales the step to ``η(1−d)``), with ``nesterov=True``
``nesterov``. Weight decay ``λ`` makes the update the rule's on
``L + λ/2·|x|²``, whose Hessian is ``H + λI``, so the threshold on the
sharpness of ``L`` is lowered by ``λ``. ``torch.optim.Adam``/``AdamW`` and
``RMSprop`` (without amsgrad, momentum or centring) have a threshold on the
*preconditioned* sharpness λ₁(P^{-1/2} H P^{-1/2}), ``P = diag(√v̂ + ε)`` read off
their state (:func:`eoskit.optim.torch_preconditioner`), weight decay ignored;
other optimisers: None.

Example:
    >>> import torch
    >>> p = [torch.nn.Parameter(torch.zeros(2))]
    >>> optimizer_threshold(torch.optim.SGD(p, lr=0.1))
    20.0
    >>> round(optimizer_threshold(torch.optim.SGD(p, lr=0.1, momentum=0.9)), 10)
    38.0
    >>> round(optimizer_threshold(torch.optim.Adam(p, lr=0.1)), 9)
    380.0
    >>> optimizer_threshold(torch.optim.Adagrad(p, lr=0.1)) is None
    True
"""

from __future__ import annotations

import torch

from eoskit.optim import torch_rule, torch_threshold


def unwrap(optimizer):
    """The torch optimiser inside framework wrappers (Lightning's ``LightningOptimizer``,
    accelerate's ``AcceleratedOptimizer``)."""
    for _ in range(4):
        inner = getattr(optimizer, "_optimizer", None) or getattr(optimizer, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or inner is optimizer:
            return optimizer
        optimizer = inner
    return optimizer


def optimizer_kind(optimizer) -> str:
    """The name of the eoskit rule whose steps the optimiser takes (``sgd``, ``polyak``,
    ``nesterov``, ``adam``, ...), else its class name in lower case, or ``none``."""
    optimizer = unwrap(optimizer)
    if optimizer is None:
        return "none"
    rule = torch_rule(optimizer)
    return type(optimizer).__name__.lower() if rule is None else rule.name


def optimizer_lr(optimizer) -> float | None:
    optimizer = unwrap(optimizer)
    if optimizer is None or not optimizer.param_groups:
        return None
    lr = optimizer.param_groups[0].get("lr")
    return None if lr is None else float(lr)


def optimizer_beta(optimizer) -> float:
    optimizer = unwrap(optimizer)
    if optimizer is None or not optimizer.param_groups:
        return 0.0
    return float(optimizer.param_groups[0].get("momentum") or 0.0)


def adaptive(optimizer) -> bool:
    """Whether the optimiser is one whose diagonal preconditioner P eoskit can read."""
    rule = torch_rule(unwrap(optimizer))
    return rule is not None and rule.preconditioned


def optimizer_threshold(optimizer) -> float | None:
    """The sharpness above which this optimiser's current step is unstable, or None.

    For an :func:`adaptive` optimiser, the preconditioned sharpness's threshold."""
    optimizer = unwrap(optimizer)
    return None if optimizer is None else torch_threshold(optimizer)
