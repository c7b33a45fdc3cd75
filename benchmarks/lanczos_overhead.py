"""A thick-restart Lanczos search's own work, everything but the product, at gpt-small's
d (5.3M) with the AdamW preconditioner read off a real optimiser state: the "product" is a
diagonal scaling (about 5 ms), so what is timed is the search's passes over its rows and
over ``P`` (recomputed from the optimiser's second moments on every read). 8 expansions
at 3 rows (k = 1, the lean tracker's cap), per expansion; two repetitions.

    PYTHONPATH=src python benchmarks/lanczos_overhead.py
"""

from __future__ import annotations

import time

import torch

from eoskit.bench.monitor_bench import bench_after
from eoskit.eigs.thick_lanczos import ThickLanczos
from eoskit.optim.torch_preconditioner import state_preconditioner


def main() -> None:
    model, opt, *_ = bench_after("gpt-small", "adamw", 2)
    params = [p for p in model.parameters() if p.requires_grad]
    P = state_preconditioner(opt, params).to(torch.float32)
    d = P.numel()
    diagonal = torch.rand(d, generator=torch.Generator().manual_seed(0)) * 5
    for label, p in (("raw", None), ("pre", P)):
        for rep in range(2):
            search = ThickLanczos(lambda w: w * diagonal, p, torch.float32)
            search.begin(torch.randn(d, generator=torch.Generator().manual_seed(1)))
            t0 = time.perf_counter()
            for _ in range(8):
                if len(search) >= 3:
                    search.compress(search.ritz()[1][:, :2])
                search.expand()
            print(f"{label} rep {rep}: {(time.perf_counter() - t0) / 8 * 1e3:.1f} ms per expansion")


if __name__ == "__main__":
    main()
