"""The optimisers eoskit knows: one rule class a module, listed once in :data:`RULE_CLASSES`.

Everything else is computed from that list: the names (``RunConfig.optimizer``'s
choices), the hyper-parameters (RunConfig's fields and ``eoskit run``'s options),
the stability thresholds, and which rule a ``torch.optim`` optimiser's steps are.
Adding an optimiser is one module with its rule class and one entry here.

Example:
    >>> import torch
    >>> opt = make_rule("polyak", lr=0.1, beta=0.5)
    >>> s = opt.step(torch.tensor([1.0]))
    >>> s.tolist(), opt.step(torch.tensor([1.0])).tolist()
    ([-0.10000000149011612], [-0.15000000596046448])
    >>> type(opt).__name__, opt.threshold
    ('Polyak', 30.0)
"""

from __future__ import annotations

from eoskit.optim.adam import Adam
from eoskit.optim.adamw import AdamW
from eoskit.optim.gd import GD
from eoskit.optim.nesterov import Nesterov
from eoskit.optim.polyak import Polyak
from eoskit.optim.rmsprop import RMSprop
from eoskit.optim.sgd import SGD
from eoskit.optim.update_rule import Hyper, UpdateRule

RULE_CLASSES: tuple[type[UpdateRule], ...] = (GD, Polyak, Nesterov, SGD, Adam, AdamW, RMSprop)

RULES: dict[str, type[UpdateRule]] = {r.name: r for r in RULE_CLASSES}
OPTIMIZERS = tuple(RULES)  # the allowed values of RunConfig.optimizer


def _hyperparameters() -> dict[str, Hyper]:
    """Every rule's hyper-parameters by name; rules sharing a name may differ in its default
    only (it is one RunConfig field)."""
    out: dict[str, Hyper] = {}
    for rule in RULE_CLASSES:
        for name, hyper in rule.hyperparameters.items():
            first = out.setdefault(name, hyper)
            if (first.kind, first.ge, first.lt) != (hyper.kind, hyper.ge, hyper.lt):
                raise TypeError(f"{rule.__name__}.{name} differs from another rule's {name} "
                                "in more than its default")
    return out


HYPERPARAMETERS: dict[str, Hyper] = _hyperparameters()


def rule_class(name: str) -> type[UpdateRule]:
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(RULES)}") from None


def rules_with(fact: str) -> list[str]:
    """The names of the rules for which the class fact is true, e.g. ``momentum``."""
    return [n for n, r in RULES.items() if getattr(r, fact)]


def make_rule(name: str, lr: float, beta: float = 0.0, **hyper) -> UpdateRule:
    """The registered rule ``name`` with these settings (a fresh state)."""
    return rule_class(name)(lr, beta, **hyper)


def stability_threshold(optimizer: str, lr: float, beta: float = 0.0, **hyper) -> float:
    """Sharpness above which the optimiser diverges on a quadratic (the rule's own formula).

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
    return make_rule(cfg.optimizer, cfg.lr, cfg.beta, **rule_hyperparameters(cfg))


def torch_rule(optimizer) -> type[UpdateRule] | None:
    """The rule whose steps every parameter group of a ``torch.optim`` optimiser takes, or
    None (another optimiser, or a variant such as amsgrad that no rule takes)."""
    mro = type(optimizer).__mro__
    mirrors = sorted((r for r in RULE_CLASSES if r.torch_optimizer in mro),
                     key=lambda r: mro.index(r.torch_optimizer))  # the most derived first
    for rule in mirrors:
        if all(rule.torch_settings(g) is not None for g in optimizer.param_groups):
            return rule
    return None


def torch_threshold(optimizer) -> float | None:
    """The threshold of a ``torch.optim`` optimiser's steps (that of its rule, which every
    parameter group must share), or None."""
    rule = torch_rule(optimizer)
    if rule is None or not optimizer.param_groups:
        return None
    found = {rule.torch_threshold(g) for g in optimizer.param_groups}
    return found.pop() if len(found) == 1 else None
