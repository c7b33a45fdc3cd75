"""HVPs per tracked step of the preconditioned sharpness for full-batch Adam at the edge.

Counts the Hessian-vector products that the preconditioned tracker asks for (it wraps the
P^{-1/2} H P^{-1/2} product that the training loop builds) and prints the per-step counts'
median over the steady state (the later half of the tracked steps).

    OMP_NUM_THREADS=1 python benchmarks/adam_hvps.py --eig-tol 1e-4 --every 5 --steps 600
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

import eoskit.training.loop as train_mod
from eoskit.training.config import RunConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--eig-tol", type=float, default=1e-4)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--optimizer", default="adam")
    args = ap.parse_args()
    counts: list[int] = []
    inner = train_mod.preconditioned_matvec

    def counting(matvec, p):
        product = inner(matvec, p)
        counts.append(0)

        def wrapped(v):
            counts[-1] += 1 if v.ndim == 1 else v.shape[1]
            return product(v)

        return wrapped

    train_mod.preconditioned_matvec = counting
    hyper = {"beta1": args.beta1} if args.optimizer != "rmsprop" else {}
    cfg = RunConfig(dataset="mnist-5k", n_train=1000, n_test=0, model="fc-tanh", width=200,
                    depth=2, loss="mse", optimizer=args.optimizer, lr=args.lr, eps=1e-7,
                    steps=args.steps, dtype="float32", physical_batch=1000,
                    sharpness_every=args.every, eig_tol=args.eig_tol, eval_every=0,
                    checkpoint_every=0, **hyper)
    with tempfile.TemporaryDirectory() as out:
        summary = train_mod.train(cfg, out, progress=False)
    steady = counts[len(counts) // 2:]
    print(json.dumps({"optimizer": args.optimizer, "lr": args.lr, "beta1": args.beta1,
                      "eig_tol": args.eig_tol, "every": args.every, "steps": args.steps,
                      "tracked_steps": len(counts), "first": counts[:5],
                      "steady_median": statistics.median(steady),
                      "steady_mean": round(statistics.mean(steady), 2),
                      "steady_max": max(steady),
                      "onset": summary.get("eos_onset_step")}))


if __name__ == "__main__":
    main()
