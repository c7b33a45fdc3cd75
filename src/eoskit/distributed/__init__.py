"""One run over many processes: data-parallel full-batch GD and sharpness on torch.distributed.

* :mod:`~eoskit.distributed.group`: the rank, the process group (gloo/nccl,
  explicit timeouts), the all-reduce and the cross-rank parameter checksum.
* :mod:`~eoskit.distributed.shards`: deterministic contiguous shards.
* :mod:`~eoskit.distributed.sharded_objective`: :class:`ShardedObjective`, the sum
  over ranks of each rank's shard of the loss (every derivative all-reduced).
* :mod:`~eoskit.distributed.sharded_problem`: a run's problem sharded for one rank.
* :mod:`~eoskit.distributed.worker`: one rank's run (rank 0 writes).
* :mod:`~eoskit.distributed.launch`: ``eoskit run --nproc N`` and ``torchrun``.
* :mod:`~eoskit.distributed.user_loop`: the Monitor in a user's own distributed loop.
"""

from eoskit.distributed.group import (
    DEFAULT_TIMEOUT_S,
    Rank,
    RankDivergence,
    all_reduce_sum,
    assert_same_params,
    backend_for,
    env_rank,
    init_from_env,
    param_checksum,
    shutdown,
)
from eoskit.distributed.launch import launch, train_parallel
from eoskit.distributed.sharded_objective import ShardedObjective, ShardedPoint, ShardModelObjective
from eoskit.distributed.sharded_problem import shard_objective, shard_problem
from eoskit.distributed.shards import shard_bounds, shard_samples
from eoskit.distributed.user_loop import across_ranks, in_process_group, is_main_rank
from eoskit.distributed.worker import RankGroup, mark_failed, run_rank

__all__ = [
    # process groups
    "Rank", "env_rank", "backend_for", "init_from_env", "shutdown", "DEFAULT_TIMEOUT_S",
    # reductions and checks
    "all_reduce_sum", "param_checksum", "assert_same_params", "RankDivergence",
    # shards and objectives
    "shard_bounds", "shard_samples", "ShardModelObjective", "ShardedObjective",
    "ShardedPoint", "shard_objective", "shard_problem",
    # running
    "RankGroup", "run_rank", "mark_failed", "train_parallel", "launch",
    # a user's own loop (the Monitor)
    "across_ranks", "in_process_group", "is_main_rank",
]
