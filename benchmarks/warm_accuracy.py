"""How accurate can a warm measurement be with a few products? The issue-22 GPT-2 under AdamW.

Every ``--every`` optimiser steps (after ``--warmup`` steps), at the same parameters:

* a reference: Lanczos (top 2, eigenvalue criterion, tol 1e-6, ≤ 60 products, warm from
  the last reference vector plus an equal random part) of the raw Hessian ``H`` and of
  the Adam-preconditioned ``P^{-1/2} H P^{-1/2}``; also the cosine between this and the
  last reference top vector (how far the top eigenvector turned);
* a warm shared basis (:class:`~eoskit.eigs.shared_basis.SharedBasis`, what the Monitor's
  default tracker builds) started from the last measurement's raw and preconditioned Ritz
  vectors: 2 products, then one more per step (the residual of the target whose relative
  residual is larger), up to 5. After each product: each target's top Ritz value, its
  relative error against the reference and its relative residual ‖r‖/θ.

The rows answer whether any warm method can hold tol 1e-3 with ≤ 3 products here: a
Ritz value from the last vectors is off by about sin²∠ times the relative gap, whatever
the bound or the stopping rule says.

    PYTHONPATH=src python benchmarks/warm_accuracy.py --every 10 --measurements 8 --warmup 8
    PYTHONPATH=src python benchmarks/warm_accuracy.py --every 10 --measurements 6 --warmup 400
"""

from __future__ import annotations

import argparse
import json

import torch

from eoskit.bench.monitor_bench import bench_operator, train_step
from eoskit.eigs import lanczos, preconditioned_matvec
from eoskit.eigs.krylov import norm
from eoskit.eigs.shared_basis import SharedBasis


def _references(point, p, dim, dtype, last: dict, seed: int) -> dict:
    out = {}
    for t in ["raw"] + (["pre"] if p is not None else []):
        mv = point.hvp if t == "raw" else preconditioned_matvec(point.hvp, p)
        r = lanczos(mv, dim, 2, tol=1e-6, criterion="eigenvalue", dtype=dtype,
                    v0=last.get(t), warm_noise=1.0 if t in last else 0.0, max_iter=60,
                    seed=seed)
        out[t] = r.eigenvalues.tolist()
        top = r.eigenvectors[:, 0].clone()
        if t in last:
            out[t + "_cos"] = float(abs(top @ last[t]) / norm(last[t]) / norm(top))
        last[t] = top
    return out


def _warm(point, p, carried: dict, refs: dict, max_products: int) -> list[dict]:
    """The warm basis's top Ritz values after each product; ``carried`` is updated."""
    b = SharedBasis(point.hvp, p)
    starts = [carried["raw"].clone()] + ([carried["pre"] / p.sqrt()] if p is not None else [])
    for v in starts:
        w = b.orthogonal(v)
        if w is not None:
            b.add(w)
    hist = []
    while True:
        row = {"products": b.products}
        for t in b.targets:
            rz = b.ritz(t)
            th = float(rz.values[0])
            row[t] = {"theta": th, "rel_err": 1 - th / refs[t][0],
                      "resid_rel": b.residual_norm(t, rz.coef[:, 0], th) / th}
        hist.append(row)
        if b.products >= max_products:
            break
        worst = max(b.targets, key=lambda t: row[t]["resid_rel"])
        rz = b.ritz(worst)
        b.add(b.orthogonal(b.expansion(worst, rz.coef[:, 0], float(rz.values[0]))))
    for t in b.targets:
        rz = b.ritz(t)
        carried[t] = b.vector(t, rz.coef[:, 0]).clone()
    return hist


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--measurements", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--max-products", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, opt, stream, mon = bench_operator("gpt-small", args.optimizer)
    obj = mon.objective

    def train(n):
        for _ in range(n):
            train_step(model, opt, next(stream))

    train(2)
    last, carried = {}, {}
    for m in range(args.measurements):
        train(args.every if m else args.warmup)
        x, p = obj.x0(), mon.preconditioner()
        with torch.enable_grad(), obj.at(x) as point:
            refs = _references(point, p, obj.dim, x.dtype, last, m)
            rec = {"measurement": m, "ref": refs}
            if carried:
                rec["warm"] = _warm(point, p, carried, refs, args.max_products)
            else:
                carried = {t: v.clone() for t, v in last.items()}
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
