"""A run's problem as one rank sees it: the same model and start, its shard of the data.

Example (two ranks of a four-sample problem, built without a process group):
    >>> import torch
    >>> from eoskit.objective.model import ModelObjective
    >>> model = torch.nn.Linear(3, 2).double()
    >>> X, Y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    >>> whole = ModelObjective(model, "mse", X, Y)
    >>> part = shard_objective(whole, rank=1, world=2, reduce=lambda t: t.clone())
    >>> part.n, part.local.n_local
    (4, 2)
"""

from __future__ import annotations

import dataclasses

from eoskit.distributed.group import all_reduce_sum
from eoskit.distributed.sharded_objective import Reduce, ShardedObjective, ShardModelObjective
from eoskit.distributed.shards import shard_samples
from eoskit.objective.model import ModelObjective
from eoskit.optim import rule_class
from eoskit.training.run_problem import Problem


def shard_objective(obj: ModelObjective, rank: int, world: int,
                    reduce: Reduce = all_reduce_sum) -> ShardedObjective:
    """``obj`` (a whole data set's mean loss) as the sum over ranks of their shards."""
    lo, hi, chunks = shard_samples(obj.n, obj.physical_batch, rank, world)
    # clones: the whole data set's tensors can be freed once every objective is sharded
    local = ShardModelObjective(
        obj.model, obj.loss, obj.inputs[lo:hi].clone(), obj.targets[lo:hi].clone(),
        n_total=obj.n, physical_batch=chunks, dtype=obj.dtype, device=obj.device,
        hvp_method=obj.hvp_method, count_correct=obj.count_correct,
    )
    return ShardedObjective(local, reduce)


def shard_problem(problem: Problem, rank: int, world: int) -> Problem:
    """The problem with its train (and test) objective sharded over ``world`` ranks."""
    if rule_class(problem.config.optimizer).samples_batch:
        raise ValueError("mini-batch rules (sgd) are not distributed; run them in one process")
    test = None if problem.test is None else shard_objective(problem.test, rank, world)
    return dataclasses.replace(problem, train=shard_objective(problem.train, rank, world),
                               test=test)
