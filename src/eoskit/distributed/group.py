"""Who this process is in a distributed run, its process group, and the reductions.

One run over ``world`` processes: each is a *rank* (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` in its environment, as ``torchrun`` and ``eoskit run --nproc``
set them). The backend follows the device (``gloo`` on the CPU, ``nccl`` on
CUDA) and every collective has an explicit timeout, so a rank that vanished
ends the others within that time instead of torch's default of 30 minutes.

Example:
    >>> backend_for("cpu"), backend_for("cuda:1")
    ('gloo', 'nccl')
    >>> env_rank({"RANK": "1", "WORLD_SIZE": "2"})
    Rank(rank=1, world=2, local_rank=1)
    >>> env_rank({}) is None
    True
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

# a collective waiting longer than this means a peer is gone (a step is far shorter)
DEFAULT_TIMEOUT_S = 60.0


class RankDivergence(RuntimeError):
    """Ranks hold different parameters: they no longer take the same step."""


@dataclass(frozen=True)
class Rank:
    """This process's place in the run: rank ``rank`` of ``world``."""

    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run directory."""
        return self.rank == 0


def env_rank(environ: Mapping[str, str] | None = None) -> Rank | None:
    """The rank described by ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; None outside a launch."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    rank = int(env["RANK"])
    return Rank(rank, int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", rank)))


def backend_for(device: str) -> str:
    """``nccl`` for a CUDA device, ``gloo`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_from_env(device: str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S) -> Rank:
    """Join the process group the environment describes (``MASTER_ADDR``/``MASTER_PORT``).

    On CUDA the rank's device is ``cuda:LOCAL_RANK`` (a plain ``"cuda"`` in the
    configuration then means it), so the stored configuration is the same on all ranks.
    """
    me = env_rank()
    if me is None:
        raise RuntimeError("not launched as a rank: RANK and WORLD_SIZE are not set")
    if torch.device(device).type == "cuda" and torch.device(device).index is None:
        torch.cuda.set_device(me.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device), init_method="env://", rank=me.rank,
                                world_size=me.world,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return me


def shutdown() -> None:
    """Leave the process group (a no-op when none was joined).

    Every rank first waits for the others at a barrier: a rank that tore its
    transport down while a peer still used it could abort the peer at exit
    (gloo: "terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        except RuntimeError:  # a peer already died: leave anyway
            pass
        dist.destroy_process_group()


def all_reduce_sum(t: Tensor) -> Tensor:
    """The sum of ``t`` over all ranks (a new tensor; ``t`` is left alone)."""
    out = t.detach().clone().contiguous()
    if out.ndim == 0:  # some backends want at least one dimension
        return all_reduce_sum(out.reshape(1)).reshape(())
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def param_checksum(x: Tensor | Sequence[Tensor]) -> int:
    """A 56-bit hash of the bytes of ``x``, a flat vector or the tensors that hold it (the
    same hash either way: equal iff the ranks hold bitwise-equal vectors)."""
    h = hashlib.blake2b(digest_size=7)
    for t in [x] if isinstance(x, Tensor) else x:
        h.update(t.detach().contiguous().reshape(-1).view(torch.uint8).cpu().numpy().tobytes())
    return int.from_bytes(h.digest(), "big")


def assert_same_params(x: Tensor | Sequence[Tensor], step: int) -> None:
    """Raise :class:`RankDivergence` unless every rank holds the same bits of ``x`` (a flat
    vector or the tensors that hold it)."""
    h = param_checksum(x)
    device = (x if isinstance(x, Tensor) else x[0]).device
    both = torch.tensor([h, -h], dtype=torch.int64, device=device)  # max(h), -min(h)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    if int(both[0]) != -int(both[1]):
        raise RankDivergence(f"ranks hold different parameters at step {step} "
                             f"(checksums {int(both[0]):x} vs {-int(both[1]):x})")
