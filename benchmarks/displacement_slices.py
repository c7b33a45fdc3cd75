"""Displace and undo the gpt-small model's parameters (after 3 AdamW steps, a random
direction, the fd step 1.5e-3) at several slice lengths: medians of 5, two rounds.

    PYTHONPATH=src python benchmarks/displacement_slices.py
"""

from __future__ import annotations

import time

import torch

import eoskit.objective.displacement as displacement
from eoskit.bench.monitor_bench import bench_after


def main() -> None:
    model, *_ = bench_after("gpt-small", "adamw", 3)
    params = list(model.parameters())
    directions = [torch.randn_like(p) for p in params]
    for _ in range(2):
        for length in (1 << 14, 1 << 16, 1 << 18, 1 << 20):
            displacement.SLICE = length
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                record = displacement.displace(params, directions, 1.5e-3)
                t1 = time.perf_counter()
                displacement.undo(params, directions, 1.5e-3, record)
                times.append((t1 - t0, time.perf_counter() - t1))
            shown, back = sorted(times)[2]
            print(f"SLICE {length:8d}: displace {shown * 1e3:.1f} ms, undo {back * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
