"""Which samples a rank holds: deterministic contiguous shards.

Shards are made of whole chunks of the one-process chunking (``physical_batch``)
whenever there are at least as many chunks as ranks, so each rank evaluates
exactly the chunks one process would (what a BatchNorm model needs); with
fewer chunks the samples split evenly and each rank's part is one chunk.

Example:
    >>> [shard_bounds(10, r, 3) for r in range(3)]
    [(0, 3), (3, 6), (6, 10)]
    >>> shard_samples(10, 4, 1, 2)  # chunks 0-4, 4-8, 8-10: rank 1 holds the last two
    (4, 10, [4, 2])
    >>> shard_samples(10, None, 1, 2)
    (5, 10, None)
"""

from __future__ import annotations

from collections.abc import Sequence

from eoskit.objective.model import chunk_bounds


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rank ``rank``'s part ``[lo, hi)`` of ``range(n)``: contiguous, sizes differing by ≤ 1."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0..{world - 1}")
    return n * rank // world, n * (rank + 1) // world


def shard_samples(n: int, chunk: int | Sequence[int] | None, rank: int,
                  world: int) -> tuple[int, int, list[int] | None]:
    """``(lo, hi, local chunk sizes)`` of rank ``rank``'s samples (sizes None: one chunk)."""
    if n < world:
        raise ValueError(f"{n} samples cannot be shared by {world} processes")
    chunks = chunk_bounds(n, chunk)
    if len(chunks) >= world:
        a, b = shard_bounds(len(chunks), rank, world)
        lo, hi = chunks[a][0], chunks[b - 1][1]
        return lo, hi, (None if chunk is None else [h - lo_ for lo_, h in chunks[a:b]])
    lo, hi = shard_bounds(n, rank, world)
    return lo, hi, None
