"""Where a monitored loop's time goes: cProfile of examples/monitor_overhead.py's loop.

    PYTHONPATH=src python examples/monitor_profile.py [--full-batch] [--sort tottime]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import monitor_overhead  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full-batch", action="store_true")
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--sort", default="cumulative")
    p.add_argument("--lines", type=int, default=35)
    a = p.parse_args()
    args = argparse.Namespace(n=256 if a.full_batch else 4096, inputs=64, width=256, classes=10,
                              batch=256, probe=256, steps=a.steps, every=10, tol=1e-3, lr=0.1,
                              adam_lr=1e-3, dtype="float32", full_batch=a.full_batch,
                              mode="lanczos", no_curvature=False)
    torch.set_num_threads(1)
    monitor_overhead.loop(args, a.optimizer, True)  # imports and first-call costs out of the way
    prof = cProfile.Profile()
    prof.enable()
    elapsed, _, mon = monitor_overhead.loop(args, a.optimizer, True)
    prof.disable()
    print(f"loop {elapsed:.3f}s, HVPs per measurement {[r['hvps'] for r in mon.rows]}")
    pstats.Stats(prof).sort_stats(a.sort).print_stats(a.lines)


if __name__ == "__main__":
    main()
