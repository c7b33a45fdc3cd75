"""What forming the ``fd`` product's displaced points in the model's own parameters costs
(issue 22, tenth stop): time per product against a displaced flat copy restored from the
model (the method before it), alternated in one process, and the size of the record that
gives every bit back.

gpt-small (the bench's 5.3M-parameter GPT-2), AdamW, after ``--steps`` training steps;
the direction is the top Hessian direction's stand-in at scale, a random unit vector, and
the step is :func:`~eoskit.objective.fd_step`'s. Each round takes one product of each
kind; the medians of ``--rounds`` rounds (the first dropped) are printed, with the time of
one displace and undo alone and the recorded coordinates of both displacements.

    PYTHONPATH=src python benchmarks/fd_displacement.py --steps 20 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from eoskit.bench.monitor_bench import bench_after, next_token_loss
from eoskit.objective import ModelObjective, fd_step
from eoskit.objective.displacement import displace, undo
from eoskit.objective.model import flatten_params_into
from eoskit.objective.products import _grad_into


def copy_product(obj: ModelObjective, v: torch.Tensor) -> torch.Tensor:
    """The previous method: the point's flat copy displaced by ``add_`` and restored from
    the model's parameters by a copy (one d-long vector for the point)."""
    (fn,) = obj.term_fns("grad")
    x = obj.x0()
    norm = float(v.norm())
    h = fd_step(obj.parts(x))
    out = torch.zeros_like(x)
    for sign in (1.0, -1.0):
        x.add_(v, alpha=sign * h / norm)
        _grad_into(fn, obj.parts(x), out, sign)
        flatten_params_into(obj.model, x)
    return out.mul_(norm / (2 * h))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    model, _, _, probe = bench_after("gpt-small", "adamw", args.steps)
    obj = ModelObjective(model, next_token_loss, probe, probe, hvp_method="fd")
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(0))
    v /= v.norm()
    times = {"live": [], "copy": []}
    for _ in range(args.rounds):
        t = time.perf_counter()
        live = obj.product(None, v, live=obj.live_parameters())
        times["live"].append(time.perf_counter() - t)
        t = time.perf_counter()
        copied = copy_product(obj, v)
        times["copy"].append(time.perf_counter() - t)
    again = obj.product(None, v, live=obj.live_parameters())
    for name, ts in times.items():
        print(f"{name:5s} product: median {statistics.median(ts[1:]):.3f} s over "
              f"{len(ts) - 1} rounds")
    # a random direction's product is small beside the two gradients it is the difference
    # of, so the gradients' own run-to-run rounding shows: the second line is that floor
    for label, other in (("live against copy", copied), ("live against live again", again)):
        print(f"relative difference, {label}: {float((live - other).norm() / other.norm()):.1e}")
    params, directions = obj.live_parameters(), obj.parts(v)
    h = fd_step(params)
    t = time.perf_counter()
    recorded = []
    for sign in (1.0, -1.0):
        record = displace(params, directions, sign * h)
        recorded.append(sum(len(r[3]) for r in record))
        undo(params, directions, sign * h, record)
    print(f"displace + undo: {(time.perf_counter() - t) / 2 * 1e3:.1f} ms each; recorded "
          f"coordinates {recorded[0]} (+) and {recorded[1]} (−) of {obj.dim}; "
          f"step h = {h:.2e}")


if __name__ == "__main__":
    main()
