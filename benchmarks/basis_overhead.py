"""What a shared-tracker measurement costs besides its products, at a model's size.

A synthetic operator stands for the Hessian so the products cost almost nothing: ``H v =
diag ∘ v + 12 (uᵀv) u`` with a fast-decaying diagonal and a unit vector ``u`` that turns a
little between measurements (so warm measurements take a few products); ``P`` a fixed
diagonal (1 to 1.1). The tracker is the Monitor's (k = 1, tol 1e-3, values only, the budget
:func:`~eoskit.eigs.shared_budget.budget_for` gives the size, ``criterion="change"``). Per
measurement: products, seconds less the products' seconds per product (the basis's passes
over d: Gram–Schmidt, Gram columns, residuals, restarts), and page faults per product in
d-long float32 vectors (``getrusage``; at 124M parameters a fresh d-long temporary is 0.5 GB
of them). The warm measurements are profiled (``--profile``).

    PYTHONPATH=src python benchmarks/basis_overhead.py 124.4e6      # GPT-2 small's size
    PYTHONPATH=src python benchmarks/basis_overhead.py 5.3e6        # gpt-small's
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import time

import torch

from eoskit.eigs import SharedTracker
from eoskit.eigs.shared_budget import budget_for


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dim", type=float, help="d, the vectors' length")
    ap.add_argument("--drift", type=float, default=0.3, help="how far u turns a measurement")
    ap.add_argument("--measurements", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    d = int(a.dim)
    g = torch.Generator().manual_seed(0)
    diag = torch.rand(d, generator=g) ** 8 * 5
    diag[:3] = torch.tensor([4.0, 3.0, 2.5])
    u = torch.randn(d, generator=g)
    u /= u.norm()
    p = 1 + 0.1 * torch.rand(d, generator=g)
    spent = {"seconds": 0.0, "products": 0}

    def hvp(v):
        t = time.perf_counter()
        out = v * diag
        out.add_(u, alpha=12 * float(u @ v))
        spent["seconds"] += time.perf_counter() - t
        spent["products"] += 1
        return out

    budget = budget_for(1, d, torch.float32, quantities=2, eigenvectors=False)
    tracker = SharedTracker(1, 1e-3, max_vectors=budget, criterion="change", quantities=2,
                            eigenvectors=False)
    profile = cProfile.Profile()
    for i in range(a.measurements):
        if i:
            u.add_(torch.randn(d, generator=g), alpha=a.drift / d ** 0.5)
            u /= u.norm()
        spent.update(seconds=0.0, products=0)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        if i and a.profile:
            profile.enable()
        t = time.perf_counter()
        tracker.measure(hvp, d, torch.float32, "cpu", p)
        total = time.perf_counter() - t
        profile.disable()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        n = spent["products"]
        print(f"d={d} measurement {i} ({'warm' if i else 'cold'}): products {n}, "
              f"{total:.2f} s, besides products {(total - spent['seconds']) / n:.3f} s a "
              f"product, page faults {faults * 4096 / (4 * d) / n:.1f} vectors a product, "
              f"rows {tracker.max_basis(2)}", flush=True)
    if a.profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
