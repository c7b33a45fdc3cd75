"""Update rules on flat parameter vectors: one optimiser a module, one registry.

Momentum rules keep a buffer ``b`` (PyTorch's form, so every gradient is taken
at an iterate and its loss comes for free):

* gd / sgd:  ``s = −η g``                             threshold ``2/η``
* polyak:    ``b ← βb + g``, ``s = −η b``            threshold ``(2+2β)/η``
* nesterov:  ``b ← βb + g``, ``s = −η (g + β b)``    threshold ``(2+2β)/((1+2β)η)``
* adam, adamw, rmsprop: exactly ``torch.optim.Adam/AdamW/RMSprop`` (bias correction as
  torch), with the preconditioner ``P_t = diag(√v̂_t + ε)`` of the step from ``x_t``;
  thresholds on the *preconditioned* sharpness λ₁(P^{-1/2} H P^{-1/2}):
  Adam/AdamW ``(2+2β₁)/((1−β₁)η)`` (AdamW's weight decay ignored), RMSProp ``2/η``

Modules: :mod:`~eoskit.optim.update_rule` (the interface, :class:`Hyper`),
one module a rule (``gd``, ``sgd``, ``polyak``, ``nesterov``, ``adam``, ``adamw``,
``rmsprop``) with the shared parts of the momentum and adaptive rules in
``momentum`` and ``second_moment``, :mod:`~eoskit.optim.rule_registry` (the list of
rules and everything derived from it) and
:mod:`~eoskit.optim.torch_preconditioner`. To add an optimiser, write its module
and list its class in ``rule_registry.RULE_CLASSES``.
"""

from eoskit.optim.adam import Adam
from eoskit.optim.adamw import AdamW
from eoskit.optim.gd import GD
from eoskit.optim.nesterov import Nesterov
from eoskit.optim.polyak import Polyak
from eoskit.optim.rmsprop import RMSprop
from eoskit.optim.rule_registry import (
    HYPERPARAMETERS,
    OPTIMIZERS,
    RULE_CLASSES,
    RULES,
    make_rule,
    rule_class,
    rule_for,
    rule_hyperparameters,
    rules_with,
    stability_threshold,
    torch_rule,
    torch_threshold,
)
from eoskit.optim.sgd import SGD
from eoskit.optim.torch_preconditioner import (
    StateDiagonal,
    state_preconditioner,
    torch_preconditioner,
)
from eoskit.optim.update_rule import Hyper, UpdateRule, run_quadratic, second_order_curvature

__all__ = [
    "HYPERPARAMETERS", "OPTIMIZERS", "RULES", "RULE_CLASSES", "Hyper", "UpdateRule",
    "GD", "SGD", "Polyak", "Nesterov", "Adam", "AdamW", "RMSprop", "make_rule", "rule_class",
    "rule_for", "rule_hyperparameters", "rules_with", "run_quadratic", "second_order_curvature",
    "stability_threshold",
    "StateDiagonal", "state_preconditioner", "torch_preconditioner", "torch_rule",
    "torch_threshold",
]
