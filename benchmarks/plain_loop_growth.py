"""How far the plain loop's own peak resident memory grows after its first two steps, with
no Monitor anywhere (issue 22).

``eoskit bench monitor`` takes the plain loop's peak over its first two steps as the
baseline of "peak above the plain loop". That is the loop's peak for good only if the
loop's resident set stops growing there. Under glibc's default allocator a loop whose
tensors are below the mmap threshold (which rises to 32 MB) keeps freed heap memory, so
its peak can grow for many steps; with ``MALLOC_MMAP_THRESHOLD_=65536`` freed tensors go
back to the system. Prints the peak after 2 steps and its growth by steps 5, 10, 20, 32.

    PYTHONPATH=src python benchmarks/plain_loop_growth.py gpt-small
    MALLOC_MMAP_THRESHOLD_=65536 PYTHONPATH=src python benchmarks/plain_loop_growth.py gpt-small
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from eoskit.bench.monitor_bench import bench_start, peak_mb, reset_peak, train_step


def main() -> None:
    setting = sys.argv[1] if len(sys.argv) > 1 else "gpt-small"
    torch.set_num_threads(2)
    model, opt, stream, _ = bench_start(setting, "adamw")
    vector_mb = sum(p.numel() for p in model.parameters()) * 4 / 2**20
    reset_peak()
    for _ in range(2):
        train_step(model, opt, next(stream))
    base = peak_mb()
    grown = []
    for step in range(3, 33):
        train_step(model, opt, next(stream))
        if step in (5, 10, 20, 32):
            mb = peak_mb() - base
            grown.append(f"step {step}: +{mb:.0f} MB ({mb / vector_mb:.1f} vectors)")
    threshold = os.environ.get("MALLOC_MMAP_THRESHOLD_", "default")
    print(f"{setting}, MALLOC_MMAP_THRESHOLD_={threshold}: peak after 2 steps {base:.0f} MB; "
          + "; ".join(grown))


if __name__ == "__main__":
    if not Path("/proc/self/status").exists():
        sys.exit("needs Linux's /proc for the resident set")
    main()
