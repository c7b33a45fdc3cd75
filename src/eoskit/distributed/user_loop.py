"""A measurement inside a user's own ``torch.distributed`` loop (the :class:`~eoskit.Monitor`).

Each rank passes its own shard of the measurement set; the loss, gradient and
every Hessian-vector product the Monitor uses are then the sample-weighted sum
over the ranks (the mean over the union of the shards; shards of different
sizes weigh by their sample counts): each chunk's share is taken of the
*global* count, and :class:`~eoskit.distributed.ShardedObjective` all-reduces
every result. The eigensolvers run replicated from the same seed, so every
rank asks for the same products; the parameters are checked to be the same
bits on every rank at each measurement (a rank that drifted would make the
sum meaningless).

Outside ``torch.distributed`` (or with one process) the objective is returned
unchanged:

    >>> import torch
    >>> from eoskit.objective import ModelObjective
    >>> model = torch.nn.Linear(3, 1)
    >>> obj = ModelObjective(model, torch.nn.functional.mse_loss, torch.randn(4, 3),
    ...                      torch.randn(4, 1))
    >>> across_ranks(obj) is obj, is_main_rank()
    (True, True)
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from eoskit.distributed.group import all_reduce_sum, assert_same_params
from eoskit.distributed.sharded_objective import ShardedObjective


def in_process_group() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_rank() -> bool:
    """Rank 0 of the process group (or no process group): the one that writes."""
    return not in_process_group() or dist.get_rank() == 0


class CheckedShards(ShardedObjective):
    """A sharded objective whose current point (``x0``) is checked to agree across ranks."""

    def __init__(self, local, reduce=all_reduce_sum):
        super().__init__(local, reduce)
        self.checks = 0

    def x0(self) -> Tensor:
        x = self.local.x0()
        self.checks += 1
        assert_same_params(x, self.checks)
        return x

    def live_parameters(self) -> list[Tensor] | None:
        params = self.local.live_parameters()
        if params is not None:  # the Monitor then takes no x0 before its products
            self.checks += 1
            assert_same_params(params, self.checks)
        return params


def across_ranks(obj):
    """``obj`` (a rank's shard of a mean loss, chunk shares of its own count) as the
    sample-weighted mean over every rank's shard; ``obj`` itself outside a process group."""
    if not in_process_group():
        return obj
    device = obj.device if dist.get_backend() == "nccl" else torch.device("cpu")
    n_total = int(all_reduce_sum(torch.tensor(obj.n, dtype=torch.int64, device=device)))
    obj.n_local, obj.n = obj.n, n_total  # each chunk's share: of the global count
    return CheckedShards(obj)
