"""Each top value of a Monitor measurement against the Rayleigh quotient of its own Ritz vector.

At the first measurement point of ``eoskit bench monitor`` (same seed, model, batches and
measurement set; AdamW; step 5 for ``gpt2``, 10 for ``gpt-small``), one cold solve of the
Monitor's shared tracker (its budget of 5 rows, its seed, ``criterion="change"``) with its
Ritz vectors kept, then one fresh product per quantity: ``yᵀHy / yᵀy`` for the raw Ritz
vector ``y`` and ``zᵀHz / zᵀPz`` for the preconditioned one (``z = P^{-1/2} u``), every dot
summed in float64. A Ritz value is the Rayleigh quotient of its vector; the two differ by
the projected matrices' error and the fresh product's (an ``fd`` product's error along a
top direction is ~5e-5 on GPT-2 small). No reference eigensolve: at 124M parameters a
float32 Lanczos reference would keep up to 41 rows, 20 GB.

    PYTHONPATH=src python benchmarks/ritz_check.py gpt2
"""

from __future__ import annotations

import argparse
import time

import torch

from eoskit.bench.monitor_bench import bench_after
from eoskit.bench.monitor_settings import SETTINGS, next_token_loss
from eoskit.eigs import SharedTracker
from eoskit.eigs.krylov import dots
from eoskit.monitor import Monitor


def quotient(v: torch.Tensor, image: torch.Tensor, metric: torch.Tensor | None = None) -> float:
    """``vᵀ(image) / vᵀ(metric∘v)`` with float64 sums."""
    weighted = v if metric is None else metric * v
    return float(dots(v[None], image)[0] / dots(v[None], weighted)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("setting", choices=sorted(SETTINGS))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    every = 5 if a.setting == "gpt2" else 10  # the bench's first measurement
    model, opt, _, probe = bench_after(a.setting, "adamw", every, a.seed)
    mon = Monitor(model, next_token_loss, (probe, probe), every=every, optimizer=opt,
                  criterion="change")
    obj, p = mon.objective, mon.preconditioner()  # (d,)
    # the Monitor's budget (18 vectors, 5 rows) plus the two Ritz vectors kept here
    tracker = SharedTracker(1, 1e-3, max_vectors=20, criterion="change", eigenvectors=True)
    started = time.perf_counter()
    with torch.enable_grad(), obj.at(None, live=obj.live_parameters()) as point:
        out = tracker.measure(point.hvp, obj.dim, obj.dtype, obj.device, p)
        print(f"{a.setting}: {out['raw'].n_matvecs} products, converged raw "
              f"{out['raw'].converged} pre {out['pre'].converged}, "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        y = out["raw"].eigenvectors[:, 0].contiguous()
        raw = quotient(y, point.hvp(y))
        z = out["pre"].eigenvectors[:, 0].contiguous() / p.sqrt()
        pre = quotient(z, point.hvp(z), p)
    for name, rq in (("raw", raw), ("pre", pre)):
        value = float(out[name].eigenvalues[0])
        estimate = float(out[name].error_estimates[0]) / abs(value)
        print(f"{name}: value {value:.7g} (error estimate {estimate:.1e}), Rayleigh quotient "
              f"of its vector {rq:.7g}, relative difference {abs(value / rq - 1):.1e}")


if __name__ == "__main__":
    main()
