"""Where a Monitor measurement's peak memory goes: resident memory sampled every 2 ms during
the products of the first two measurements, against the plain loop's peak (issue 22).

gpt-small, AdamW, the bench's loop (``zero_grad`` at the top of each step, so the loop's
gradients are alive when ``Monitor.step`` runs after ``opt.step``); ``--free-grads``
zeroes them (``set_to_none``) before ``Monitor.step`` instead. Each line: a phase (the
measurement's step, its search's rows before the product, and which of the ``fd``
product's two gradients), its largest resident set, and that above the plain loop's peak
(steps 1–3) in model-sized float32 vectors. Run with ``MALLOC_MMAP_THRESHOLD_=65536`` so
freed vectors go back to the system.

    MALLOC_MMAP_THRESHOLD_=65536 PYTHONPATH=src python benchmarks/measurement_memory.py \\
        --mode lean [--free-grads]
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import torch

import eoskit.eigs.shared_basis as shared_basis
import eoskit.eigs.thick_lanczos as thick_lanczos
import eoskit.objective.products as products
from eoskit.bench.monitor_bench import bench_start, next_token_loss, train_step
from eoskit.monitor import Monitor

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


class Phases:
    """The largest resident set seen under each phase label (a sampling thread)."""

    def __init__(self):
        self.label, self.peak = "start", {}
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        while True:
            r = resident_mb()
            self.peak[self.label] = max(self.peak.get(self.label, 0.0), r)
            time.sleep(0.002)

    def step_label(self) -> str:
        return self.label.split(":")[0]


def instrument(phases: Phases) -> None:
    """Label each product by its search's rows and each ``fd`` gradient by its sign."""
    grad_into = products._grad_into

    def labelled_grad(fn, point, out, sign):
        where = phases.label.split("|")[0]
        phases.label = where + ("|grad+" if sign > 0 else "|grad-")
        try:
            return grad_into(fn, point, out, sign)
        finally:
            phases.label = where + "|between"

    products._grad_into = labelled_grad
    for basis, rows in ((thick_lanczos.ThickLanczos, "expand"), (shared_basis.SharedBasis, "add")):
        method = getattr(basis, rows)

        def labelled(self, *a, _method=method, **k):
            phases.label = f"{phases.step_label()}:rows{len(self.rows)}"
            return _method(self, *a, **k)

        setattr(basis, rows, labelled)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", default="lean", choices=("lean", "shared"))
    ap.add_argument("--free-grads", action="store_true")
    ap.add_argument("--steps", type=int, default=21)
    args = ap.parse_args()
    torch.set_num_threads(2)
    phases = Phases()
    instrument(phases)
    model, opt, stream, probe = bench_start("gpt-small", "adamw")
    vector_mb = sum(p.numel() for p in model.parameters()) * 4 / 2**20
    mon = Monitor(model, next_token_loss, (probe, probe), every=10, optimizer=opt,
                  mode=args.mode, criterion="change")
    for step in range(1, args.steps + 1):
        phases.label = f"train{step}"
        train_step(model, opt, next(stream))
        if args.free_grads:
            opt.zero_grad(set_to_none=True)
        phases.label = f"measure{step}"
        mon.step()
    time.sleep(0.05)
    plain = max(v for k, v in phases.peak.items() if k in ("train1", "train2", "train3"))
    print(f"mode {args.mode}, free grads {args.free_grads}: plain peak {plain:.1f} MB, "
          f"vector {vector_mb:.1f} MB")
    for label, mb in phases.peak.items():
        if "grad" in label:
            print(f"{label:26s} {mb:8.1f} MB {(mb - plain) / vector_mb:6.2f} vectors")


if __name__ == "__main__":
    main()
