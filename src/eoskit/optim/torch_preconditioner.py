"""The diagonal preconditioner a ``torch.optim`` optimiser used, read off its state."""

from __future__ import annotations

import bisect

import torch
from torch import Tensor

from eoskit.optim.rule_registry import RULE_CLASSES, torch_rule


class StateDiagonal:
    """``P = √v̂ + ε`` (d,) of a torch optimiser's last step, computed a slice at a time.

    ``P[lo:hi]`` reads only the second moments that slice spans, so no d-long ``P`` is
    held beside the optimiser's own state (at 124M parameters a float32 ``P`` is 0.5 GB).
    It reads the state when sliced: it is the optimiser's ``P`` until its next step.
    ``to(dtype, device)`` sets the dtype and device the slices come in; :meth:`full`
    gives the whole vector.

    Example:
        >>> w = torch.nn.Parameter(torch.ones(3))
        >>> opt = torch.optim.Adam([w], lr=0.1, eps=0.0)
        >>> w.grad = torch.tensor([1.0, 2.0, 4.0]); opt.step()
        >>> P = state_preconditioner(opt, [w])
        >>> [round(v, 4) for v in P[1:3].tolist()], P.numel()
        ([2.0, 4.0], 3)
    """

    def __init__(self, parts: list, dtype=None, device=None):
        self.parts = parts  # [(offset, numel, state, group, rule)] in the flat order
        self.starts = [offset for offset, *_ in parts]
        self.dtype, self.device = dtype, device

    def numel(self) -> int:
        offset, n, *_ = self.parts[-1] if self.parts else (0, 0)
        return offset + n

    @property
    def shape(self) -> torch.Size:
        return torch.Size([self.numel()])

    def detach(self) -> StateDiagonal:
        return self

    def to(self, dtype=None, device=None) -> StateDiagonal:
        return StateDiagonal(self.parts, dtype or self.dtype, device or self.device)

    def __getitem__(self, s: slice) -> Tensor:
        lo, hi, step = s.indices(self.numel())
        if step != 1:
            raise IndexError("a StateDiagonal is sliced contiguously")
        pieces = []
        first = max(bisect.bisect_right(self.starts, lo) - 1, 0)
        for offset, n, state, group, rule in self.parts[first:]:
            if offset >= hi:
                break
            a, b = max(lo - offset, 0), min(hi - offset, n)
            if a < b:
                pieces.append(rule.torch_denominator(_sliced(state, n, a, b), group))
        out = pieces[0] if len(pieces) == 1 else torch.cat(pieces) if pieces else (
            torch.zeros(0))
        return out.to(dtype=self.dtype or out.dtype, device=self.device or out.device)

    def full(self) -> Tensor:
        return self[0:self.numel()]


def _sliced(state: dict, n: int, a: int, b: int) -> dict:
    """The state with each parameter-sized tensor cut to its flat elements ``a:b``."""
    return {k: v.reshape(-1)[a:b] if isinstance(v, Tensor) and v.numel() == n and n > 1
            else v for k, v in state.items()}


def state_preconditioner(optimizer: torch.optim.Optimizer, params) -> StateDiagonal:
    """``P = √v̂ + ε`` (in ``params``' flat order) of the step a torch optimiser last took,
    as a :class:`StateDiagonal`: slices on demand, no d-long copy.

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
    parts, offset = [], 0
    for p in params:
        state = optimizer.state.get(p)
        if not state:
            raise ValueError("the optimizer has taken no step yet: no preconditioner")
        parts.append((offset, p.numel(), state, group_of[id(p)], rule))
        offset += p.numel()
    return StateDiagonal(parts)


def torch_preconditioner(optimizer: torch.optim.Optimizer, params) -> Tensor:
    """``P = √v̂ + ε`` (flat (d,), in ``params``' order) of the step a torch optimiser last
    took: :func:`state_preconditioner`'s whole vector."""
    return state_preconditioner(optimizer, params).full()
