"""Per-block sharpness: the top eigenvalue of each diagonal block of the Hessian.

A block is the set of flat parameters owned by one module (as
``model.named_parameters()`` names them: ``"0.weight"`` and ``"0.bias"`` belong
to block ``"0"``; parameters of the root module itself to ``"(root)"``). The
diagonal block ``H_bb`` acts on a block vector by embedding it in a zero
d-vector, one full Hessian-vector product and reading the block back: exact,
one product each, all at one point (one retained graph for every block).

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1))
    >>> sorted(module_blocks(model.double()))
    ['0', '2']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from eoskit.eigs import EigResult, LanczosTracker, MatVec, lanczos
from eoskit.objective import ModelObjective, trainable
from eoskit.spectrum.operand import Loss, as_objective

ROOT = "(root)"
LossFn = Callable[[Tensor, Tensor], Tensor]


def module_blocks(model: nn.Module) -> dict[str, Tensor]:
    """Module name → indices of its parameters in the flat vector (``named_parameters`` order)."""
    groups: dict[str, list[Tensor]] = {}
    start = 0
    for name, p in trainable(model):  # the flat vector's parameters, frozen ones left out
        owner = name.rpartition(".")[0] or ROOT
        groups.setdefault(owner, []).append(torch.arange(start, start + p.numel()))
        start += p.numel()
    return {owner: torch.cat(parts) for owner, parts in groups.items()}


def block_product(hvp: MatVec, index: Tensor, dim: int) -> MatVec:
    """``v_b ↦ H_bb v_b``: the diagonal block on ``index`` of the product ``hvp``."""

    def product(vb: Tensor) -> Tensor:
        v = vb.new_zeros(dim)
        v[index.to(vb.device)] = vb
        return hvp(v)[index.to(vb.device)]

    return product


def block_eigs(f: Loss, x: Tensor, blocks: dict[str, Tensor], k: int = 1,
               tol: float = 1e-8, **kwargs) -> dict[str, EigResult]:
    """Top-k eigenpairs of each diagonal block ``blocks[name]`` of ∇²f(x)."""
    x = x.detach()
    with as_objective(f, x).at(x) as point:
        return {name: lanczos(block_product(point.hvp, idx, x.numel()), idx.numel(),
                              min(k, idx.numel()), tol=tol, dtype=x.dtype, device=x.device,
                              **kwargs)
                for name, idx in blocks.items()}


@dataclass
class BlockSharpnessTracker:
    """Each block's top-k along a run: one warm-started :class:`eoskit.eigs.LanczosTracker` each.

    The trackers (and their carried vectors, one block long) are created on a
    block's first measurement, so the blocks may be given late.
    """

    k: int = 1
    tol: float = 1e-6
    restart_every: int = 50
    criterion: str = "residual"
    trackers: dict[str, LanczosTracker] = field(default_factory=dict, repr=False)

    def measure(self, hvp: MatVec, blocks: dict[str, Tensor], dim: int, dtype,
                device) -> dict[str, EigResult]:
        """Each block's top-k at the point whose full Hessian product is ``hvp``."""
        out = {}
        for name, idx in blocks.items():
            tracker = self.trackers.get(name)
            if tracker is None:
                tracker = self.trackers[name] = LanczosTracker(
                    min(self.k, idx.numel()), self.tol, self.restart_every,
                    criterion=self.criterion)
            out[name] = tracker.measure(block_product(hvp, idx, dim), idx.numel(), dtype,
                                        device)
        return out

    def state_dict(self) -> dict:
        return {name: t.state_dict() for name, t in self.trackers.items()}

    def load_state_dict(self, state: dict, device) -> None:
        for name, s in state.items():
            self.trackers[name] = LanczosTracker(self.k, self.tol, self.restart_every,
                                                   criterion=self.criterion)
            self.trackers[name].load_state_dict(s, device)


def block_sharpness(model: nn.Module, loss_fn: LossFn | str, data: tuple[Tensor, Tensor], *,
                    tracker: BlockSharpnessTracker | None = None,
                    tol: float = 1e-8) -> dict[str, float]:
    """``{module_name: λ₁}`` of each module's diagonal Hessian block at the model's parameters.

    ``loss_fn(output, target)``: a *mean* loss (or a built-in name, ``"mse"``/``"ce"``);
    ``data``: ``(inputs, targets)``. Pass the same ``tracker`` at each measurement of a
    run to warm-start every block from its last vectors (then ``tol`` is the tracker's).

    Example:
        >>> import torch
        >>> torch.manual_seed(0) is not None
        True
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
        ...                             torch.nn.Linear(4, 2)).double()
        >>> data = (torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64))
        >>> lam = block_sharpness(model, torch.nn.functional.mse_loss, data)
        >>> sorted(lam), all(v > 0 for v in lam.values())  # a block of a linear last layer is PSD
        (['0', '2'], True)
    """
    inputs, targets = data
    obj = ModelObjective(model, loss_fn, inputs, targets, count_correct=False)
    x = obj.x0()
    blocks = module_blocks(obj.model)
    if tracker is None:
        res = block_eigs(obj, x, blocks, 1, tol)
    else:
        with obj.at(x) as point:
            res = tracker.measure(point.hvp, blocks, x.numel(), x.dtype, x.device)
    return {name: float(r.eigenvalues[0]) for name, r in res.items()}
