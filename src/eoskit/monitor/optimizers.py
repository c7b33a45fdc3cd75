"""What a ``torch.optim`` optimiser says about the stability threshold.

Only the update rules whose linear stability on a quadratic is known get a
threshold (``eoskit.config.stability_threshold``): ``torch.optim.SGD`` without
momentum (``2/η``), with heavy-ball momentum β (``(2+2β)/η``; dampening ``d``
scales the step to ``η(1−d)``), with ``nesterov=True`` (``(2+2β)/((1+2β)η)``).
Weight decay ``λ`` makes the update GD on ``L + λ/2·|x|²``, whose Hessian is
``H + λI``, so the threshold on the sharpness of ``L`` is lowered by ``λ``.
``torch.optim.Adam``/``AdamW`` and ``RMSprop`` (without amsgrad, momentum or
centring) have a threshold on the *preconditioned* sharpness
λ₁(P^{-1/2} H P^{-1/2}), ``P = diag(√v̂ + ε)`` read off their state
(:func:`eoskit.optim.torch_preconditioner`): ``(2+2β₁)/((1−β₁)η)`` and ``2/η``
(AdamW's weight decay ignored); other optimisers: None.

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

from eoskit.config import stability_threshold

_SGD_KEYS = ("lr", "momentum", "dampening", "nesterov", "weight_decay", "maximize")


def unwrap(optimizer):
    """The torch optimiser inside framework wrappers (Lightning's ``LightningOptimizer``,
    accelerate's ``AcceleratedOptimizer``)."""
    for _ in range(4):
        inner = getattr(optimizer, "_optimizer", None) or getattr(optimizer, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or inner is optimizer:
            return optimizer
        optimizer = inner
    return optimizer


def _sgd_settings(optimizer) -> dict | None:
    """The SGD hyper-parameters shared by every parameter group, or None if they differ."""
    groups = optimizer.param_groups
    settings = {k: groups[0].get(k) for k in _SGD_KEYS}
    if any({k: g.get(k) for k in _SGD_KEYS} != settings for g in groups[1:]):
        return None
    return settings


def optimizer_kind(optimizer) -> str:
    """``sgd``, ``polyak``, ``nesterov`` (eoskit's names), another optimiser's class name
    in lower case, or ``none``."""
    optimizer = unwrap(optimizer)
    if optimizer is None:
        return "none"
    if isinstance(optimizer, torch.optim.SGD):
        g = optimizer.param_groups[0]
        if not g.get("momentum"):
            return "sgd"
        return "nesterov" if g.get("nesterov") else "polyak"
    return type(optimizer).__name__.lower()


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
    optimizer = unwrap(optimizer)
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop)):
        return False
    return not any(g.get("amsgrad") or g.get("centered") or g.get("momentum")
                   for g in optimizer.param_groups)


def _adaptive_threshold(optimizer) -> float | None:
    groups = optimizer.param_groups
    lrs = {float(g["lr"]) for g in groups}
    if len(lrs) != 1 or lrs == {0.0} or any(g.get("maximize") for g in groups):
        return None
    lr = lrs.pop()
    if isinstance(optimizer, torch.optim.RMSprop):
        return stability_threshold("rmsprop", lr)
    beta1 = {float(g["betas"][0]) for g in groups}
    return stability_threshold("adam", lr, beta1=beta1.pop()) if len(beta1) == 1 else None


def optimizer_threshold(optimizer) -> float | None:
    """The sharpness above which this optimiser's current step is unstable, or None.

    For an :func:`adaptive` optimiser, the preconditioned sharpness's threshold."""
    optimizer = unwrap(optimizer)
    if adaptive(optimizer):
        return _adaptive_threshold(optimizer)
    if not isinstance(optimizer, torch.optim.SGD):
        return None
    s = _sgd_settings(optimizer)
    if s is None or s["maximize"] or float(s["lr"]) <= 0:
        return None
    lr, beta = float(s["lr"]), float(s["momentum"] or 0.0)
    damp = float(s["dampening"] or 0.0)
    if beta == 0.0:
        base = stability_threshold("sgd", lr)
    elif s["nesterov"]:
        base = stability_threshold("nesterov", lr, beta)  # torch requires dampening 0 here
    elif damp < 1.0:
        base = stability_threshold("polyak", lr * (1.0 - damp), beta)
    else:
        return None
    return base - float(s["weight_decay"] or 0.0)
