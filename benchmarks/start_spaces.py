"""What can a warm measurement start from? The issue-22 GPT-2 under AdamW (or SGD).

Every ``--every`` optimiser steps (after ``--warmup``), at the same parameters, per operator
(the raw Hessian ``H``; with AdamW also ``A = P^{-1/2} H P^{-1/2}``): a tight reference
(Lanczos, top 2, tol 1e-7, double-backward products), then the top Rayleigh-Ritz value of
small start spaces built from what the last measurements knew, each against the reference:

* ``last``: the last measurement's top eigenvector ``u`` (the reference's, so the best a
  warm tracker can carry); ``+r``, ``+r+r2``: with its residual at the new point and the
  residual of that (the Krylov space of ``u``: what one and two further products buy);
* ``+u2``: the last second eigenvector (a block of k + 1 carried);
* ``+prev``: the top eigenvector of the measurement before (the direction ``u`` moved in);
* ``+dx``: the step the optimiser took since the last measurement (in ``A``'s coordinates
  ``P^{1/2}·Δx``).

A space of s vectors costs s products. The issue asks a measurement to reuse the previous
search direction and the optimiser's step; this says what they are worth against the
Krylov directions, and how many products any of these starts needs for tol 1e-3.

    PYTHONPATH=src python benchmarks/start_spaces.py --every 10 --measurements 6 --warmup 10
    PYTHONPATH=src python benchmarks/start_spaces.py --every 10 --measurements 5 --warmup 300
"""

from __future__ import annotations

import argparse
import json

import scipy.linalg
import torch

from eoskit.bench.monitor_bench import bench_operator, train_step
from eoskit.eigs import lanczos, preconditioned_matvec
from eoskit.eigs.krylov import dots


def top_ritz(V: list, AV: list) -> float:
    """The top Rayleigh-Ritz value of span(V) from the vectors (d,) and their images."""
    V, AV = torch.stack(V), torch.stack(AV)  # (s, d)
    G, K = dots(V, V).numpy(), dots(V, AV).numpy()
    return float(scipy.linalg.eigh((K + K.T) / 2, G, eigvals_only=True)[-1])


def residual(A, u):
    """``(A u − θ u, A u)`` with θ the Rayleigh quotient of ``u``."""
    Au = A(u)
    return Au - float(u @ Au / (u @ u)) * u, Au


def spaces(A, last: dict, before: dict | None, dx) -> dict:
    """Each start space's top Ritz value; ``last``/``before``: the top two eigenvectors
    of the last measurement and the top one of the one before."""
    u = last["u1"]
    r, Au = residual(A, u)
    Ar = A(r)
    r2 = Ar - float(r @ Ar / (r @ r)) * r
    extra = {"u2": last["u2"], "dx": dx}
    if before is not None:
        extra["prev"] = before["u1"]
    images = {name: A(v) for name, v in extra.items()}
    out = {"last": top_ritz([u], [Au]), "last+r": top_ritz([u, r], [Au, Ar]),
           "last+r+r2": top_ritz([u, r, r2], [Au, Ar, A(r2)])}
    for name, v in extra.items():
        out[f"last+{name}"] = top_ritz([u, v], [Au, images[name]])
        out[f"last+{name}+r"] = top_ritz([u, v, r], [Au, images[name], Ar])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--measurements", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, opt, stream, mon = bench_operator("gpt-small", args.optimizer)
    obj, history, x_last = mon.objective, {}, None
    for m in range(args.measurements):
        for _ in range(args.every if m else args.warmup):
            train_step(model, opt, next(stream))
        x, p = obj.x0(), mon.preconditioner()
        rec = {"step": args.warmup + m * args.every}
        with torch.enable_grad(), obj.at(x) as point:
            for t in ["raw"] + (["pre"] if p is not None else []):
                A = point.hvp if t == "raw" else preconditioned_matvec(point.hvp, p)
                ref = lanczos(A, obj.dim, 2, tol=1e-7, criterion="eigenvalue", dtype=x.dtype,
                              max_iter=80, seed=m)
                lam = ref.eigenvalues.tolist()
                rec[t] = {"lambda": lam}
                seen = history.setdefault(t, [])
                if seen:
                    dx = x - x_last if t == "raw" else (x - x_last) * p.sqrt()
                    before = seen[-2] if len(seen) > 1 else None
                    ritz = spaces(A, seen[-1], before, dx)
                    rec[t]["rel_error"] = {k: 1 - v / lam[0] for k, v in ritz.items()}
                    u, top = seen[-1]["u1"], ref.eigenvectors[:, 0]
                    rec[t]["cos_last"] = float(abs(u @ top) / (u.norm() * top.norm()))
                seen.append({"u1": ref.eigenvectors[:, 0].clone(),
                             "u2": ref.eigenvectors[:, 1].clone()})
                del seen[:-2]
        x_last = x
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
