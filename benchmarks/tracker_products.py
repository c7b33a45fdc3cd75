"""Products per measurement of the warm-started trackers on a drifting problem.

An MLP (20-64-64-10, tanh, float32, d = 6,154) trained on synthetic labels
with Adam (or SGD) on minibatches; every ``--every`` steps the raw and the
preconditioned (``P = √v̂ + ε``, Adam's) sharpness are measured on a fixed
batch of 512 by two trackers (``--mode``, ``--tol``, eigenvalue criterion),
each counting its Hessian-vector products. Every measurement is compared with
a tight cold Lanczos solve (tol 1e-7) at the same parameters.

    PYTHONPATH=src python benchmarks/tracker_products.py --every 10 --measurements 40

Prints the median products per measurement (raw + preconditioned, steady
state: after the first 5) and the share of measurements within tol.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from eoskit.eigs import SharedTracker, lanczos, make_tracker, preconditioned_matvec
from eoskit.objective.model import ModelObjective, flatten_params


def _problem(seed: int):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(4096, 20, generator=g)
    teacher = torch.randn(20, 10, generator=g)
    Y = (X @ teacher + 0.5 * torch.randn(4096, 10, generator=g)).argmax(1)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.Tanh(),
                                torch.nn.Linear(64, 64), torch.nn.Tanh(),
                                torch.nn.Linear(64, 10))
    return model, X, Y


def _adam_p(opt, model) -> torch.Tensor:
    """Adam's diagonal preconditioner √v̂ + ε, flattened in the parameter order."""
    (group,) = opt.param_groups
    b2, eps = group["betas"][1], group["eps"]
    parts = []
    for p in model.parameters():
        st = opt.state[p]
        vhat = st["exp_avg_sq"] / (1 - b2 ** float(st["step"]))
        parts.append((vhat.sqrt() + eps).reshape(-1))
    return torch.cat(parts)


def _counted(mv, count):
    def f(v):
        count[0] += 1
        return mv(v)
    return f


def run(args) -> dict:
    torch.set_num_threads(1)
    model, X, Y = _problem(args.seed)
    meas = slice(0, 512)
    opt = (torch.optim.Adam(model.parameters(), lr=args.lr) if args.optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=args.lr))
    shared = (SharedTracker(1, args.tol, 0, max_vectors=args.max_vectors)
              if args.mode == "shared" else None)
    trackers = {} if shared else {q: make_tracker(args.mode, 1, args.tol, 0,
                                                  criterion="eigenvalue") for q in ("raw", "pre")}
    g = torch.Generator().manual_seed(args.seed + 1)
    rows = []
    for i in range(args.measurements * args.every):
        idx = torch.randint(0, len(X), (args.batch,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X[idx]), Y[idx]).backward()
        opt.step()
        if (i + 1) % args.every:
            continue
        obj = ModelObjective(model, "ce", X[meas], Y[meas])
        x = flatten_params(model)
        p = _adam_p(opt, model) if args.optimizer == "adam" else torch.ones_like(x)
        row = {"step": i + 1}
        with obj.at(x) as point:
            ops = (("raw", point.hvp), ("pre", preconditioned_matvec(point.hvp, p)))
            if shared is not None:  # both from one set of products
                count = [0]
                both = shared.measure(_counted(point.hvp, count), obj.dim, x.dtype, x.device, p)
                row["shared_products"] = count[0]
            for q, mv in ops:
                count = [0]
                res = (both[q] if shared is not None else
                       trackers[q].measure(_counted(mv, count), obj.dim, x.dtype, x.device))
                ref = lanczos(mv, obj.dim, 1, tol=1e-7, dtype=x.dtype)
                row[q] = {"products": count[0], "value": float(res.eigenvalues[0]),
                          "rel_error": abs(float(res.eigenvalues[0] / ref.eigenvalues[0]) - 1)}
        rows.append(row)
    steady = rows[5:]
    both = [r.get("shared_products", r["raw"]["products"] + r["pre"]["products"])
            for r in steady]
    within = [r[q]["rel_error"] <= args.tol for r in steady for q in ("raw", "pre")]
    return {"args": vars(args), "median_products": float(np.median(both)),
            "mean_products": float(np.mean(both)), "within_tol": float(np.mean(within)),
            "max_rel_error": max(r[q]["rel_error"] for r in steady for q in ("raw", "pre")),
            "first_products": rows[0].get("shared_products", rows[0]["raw"]["products"] +
                                          rows[0]["pre"]["products"]),
            "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--measurements", type=int, default=40)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--mode", default="lanczos")
    ap.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-vectors", type=int, default=None, help="shared mode's budget")
    ap.add_argument("--json", default=None)
    out = run(ap.parse_args())
    print(f"median products per measurement (raw + preconditioned, steady state): "
          f"{out['median_products']:.1f} (mean {out['mean_products']:.2f}); "
          f"within tol: {out['within_tol']:.1%}; max rel error {out['max_rel_error']:.2e}; "
          f"first measurement {out['first_products']}")
    if out["args"]["json"]:
        with open(out["args"]["json"], "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
