"""Cost of ``--spectrum-every``: one spectrum measurement against a GD step and one HVP.

The demo's problem (``examples/mnist_demo.toml``, ``--n-train`` as given), at its
initial point or at stored parameters (``--params run/params_final.pt``). In one
process, alternating: a GD step's pass (loss and gradient), one Hessian-vector
product at a kept point, and a whole :class:`~eoskit.spectrum.along_run.SpectrumMeter`
measurement (cold trackers each time, as a run's first measurement). Prints the
median seconds, the ratios and the products the measurement spent.

    OMP_NUM_THREADS=1 python benchmarks/spectrum_run_cost.py --n-train 1000 \
        --params /tmp/run/params_final.pt
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from eoskit.spectrum.along_run import SpectrumMeter, layout_blocks
from eoskit.training.config import load_toml, run_config_from
from eoskit.training.run_problem import build_problem


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="examples/mnist_demo.toml")
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--params", default=None)
    ap.add_argument("--probes", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    load_toml(a.config)
    cfg = run_config_from(a.config, {"n_train": a.n_train, "n_test": 0})
    obj = build_problem(cfg).train
    x = obj.x0() if a.params is None else torch.load(a.params).to(obj.dtype)
    times = {"gd_pass": [], "hvp": [], "measurement": []}
    row = None
    for _ in range(a.reps):
        t = time.perf_counter()
        obj.value_and_grad(x)
        times["gd_pass"].append(time.perf_counter() - t)
        with obj.at(x) as point:
            point.hvp(torch.ones_like(x))  # the graph is built: time the product alone
            t = time.perf_counter()
            point.hvp(torch.ones_like(x))
            times["hvp"].append(time.perf_counter() - t)
        meter = SpectrumMeter(a.probes, a.steps, cfg.eig_tol, cfg.eig_restart_every,
                              cfg.eig_criterion, blocks=layout_blocks(obj))
        t = time.perf_counter()
        row, _ = meter.measure(obj, x, cfg.threshold, step=0)
        times["measurement"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"d = {obj.dim}, n = {obj.n}, probes {a.probes} x steps {a.steps}, "
          f"params {'initial' if a.params is None else a.params}")
    print({k: round(v, 4) for k, v in med.items()})
    print(f"measurement / GD pass = {med['measurement'] / med['gd_pass']:.0f}, "
          f"HVP / GD pass = {med['hvp'] / med['gd_pass']:.2f}")
    print({k: v for k, v in row.items() if k.startswith("products_")})


if __name__ == "__main__":
    main()
