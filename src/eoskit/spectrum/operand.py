"""What the spectrum functions measure: a loss given as a callable or an Objective, and probes.

:func:`as_objective` mirrors :func:`eoskit.hessian_eigs`: a plain callable
``f(x) -> scalar`` becomes a :class:`~eoskit.objective.FunctionObjective`.
:func:`rademacher_stream` draws the ±1 probe vectors of SLQ and the trace
estimators one at a time from a CPU generator, so the same seed gives the
same probes on every device and no block of probes is held at once.

Example:
    >>> import torch
    >>> V = rademacher(1000, 2, seed=1)
    >>> sorted(set(V.flatten().tolist())), torch.equal(V[1], rademacher(1000, 2, seed=1)[1])
    ([-1.0, 1.0], True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from eoskit.objective import FunctionObjective, Objective

Loss = Callable[[Tensor], Tensor] | Objective


def as_objective(f: Loss, x: Tensor) -> Objective:
    """``f`` itself if it is an Objective, else ``f`` wrapped for ``x``'s size, dtype and device."""
    if isinstance(f, Objective):
        return f
    return FunctionObjective(f, x.numel(), dtype=x.dtype, device=x.device)


def rademacher_stream(dim: int, seed: int, dtype=torch.float64,
                      device: str | torch.device = "cpu") -> Iterator[Tensor]:
    """An endless stream of independent ±1 vectors of length ``dim``, reproducible by ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        bits = torch.randint(0, 2, (dim,), generator=gen)
        yield (2 * bits - 1).to(dtype=dtype, device=device)


def rademacher(dim: int, count: int, seed: int = 0, dtype=torch.float64,
               device: str | torch.device = "cpu") -> Tensor:
    """The first ``count`` vectors of :func:`rademacher_stream` as rows, (count, dim)."""
    stream = rademacher_stream(dim, seed, dtype, device)
    return torch.stack([next(stream) for _ in range(count)])
