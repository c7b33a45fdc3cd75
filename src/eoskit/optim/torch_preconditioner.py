"""The diagonal preconditioner a ``torch.optim`` optimiser used, read off its state."""

from __future__ import annotations

import torch
from torch import Tensor

from eoskit.optim.rule_registry import RULE_CLASSES, torch_rule


def torch_preconditioner(optimizer: torch.optim.Optimizer, params) -> Tensor:
    """``P = √v̂ + ε`` (flat (d,), in ``params``' order) of the step a torch optimiser last took.

    Reads the second moment of the optimiser whose rule is preconditioned
    (``exp_avg_sq`` of ``torch.optim.Adam``/``AdamW``, bias-corrected, or
    ``square_avg`` of ``torch.optim.RMSprop``), so it equals the ``p`` that rule used
    in that step; the preconditioned sharpness is then that of
    ``preconditioned_matvec(hvp, p)`` (:mod:`eoskit.eigs.preconditioned_operator`).
    """
    rule = torch_rule(optimizer)
    if rule is None or not rule.preconditioned:
        mro = type(optimizer).__mro__
        if any(r.preconditioned and r.torch_optimizer in mro for r in RULE_CLASSES):
            raise ValueError("amsgrad, centred or momentum variants have no P here")
        raise TypeError(f"no diagonal preconditioner known for {type(optimizer).__name__}")
    group_of = {id(p): grp for grp in optimizer.param_groups for p in grp["params"]}
    parts = []
    for p in params:
        state = optimizer.state.get(p)
        if not state:
            raise ValueError("the optimizer has taken no step yet: no preconditioner")
        parts.append(rule.torch_denominator(state, group_of[id(p)]).reshape(-1))
    return torch.cat(parts)
