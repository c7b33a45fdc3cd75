"""What eoskit.Monitor costs in a plain PyTorch loop, and how right it is.

Trains a small MLP by minibatch ``torch.optim.SGD`` and by ``torch.optim.Adam``,
each twice in this process (alternating, best of ``--repeats``): once plain,
once with ``Monitor(every=10)`` on a fixed probe set. Prints the loop-time
ratio, the Hessian-vector products per measurement, and (``--dense``) the
last sharpness against the dense float64 Hessian's top eigenvalue.

    PYTHONPATH=src python examples/monitor_overhead.py            # timing
    PYTHONPATH=src python examples/monitor_overhead.py --dense --width 24 --dtype float64
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from eoskit.monitor import Monitor
from eoskit.objective import ModelObjective


def make(args, seed=0):
    torch.manual_seed(seed)
    dtype = getattr(torch, args.dtype)
    model = nn.Sequential(nn.Linear(args.inputs, args.width), nn.Tanh(),
                          nn.Linear(args.width, args.width), nn.Tanh(),
                          nn.Linear(args.width, args.classes)).to(dtype)
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(args.n, args.inputs, generator=gen).to(dtype)
    y = (X[:, : args.classes] + 0.5 * torch.randn(args.n, args.classes, generator=gen)).argmax(1)
    return model, X, y


def loop(args, optimizer_name, monitored):
    model, X, y = make(args)
    opt = (torch.optim.SGD(model.parameters(), lr=args.lr) if optimizer_name == "sgd"
           else torch.optim.Adam(model.parameters(), lr=args.adam_lr))
    mon = Monitor(model, F.cross_entropy, (X, y), every=args.every, optimizer=opt,
                  probe_size=None if args.full_batch else args.probe, tol=args.tol,
                  mode=args.mode, curvature=not args.no_curvature) if monitored else None
    gen = torch.Generator().manual_seed(2)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        if args.full_batch:  # the measurement set is the training batch
            xb, yb = X, y
        else:
            idx = torch.randint(0, args.n, (args.batch,), generator=gen)
            xb, yb = X[idx], y[idx]
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
        if mon is not None:
            mon.step()
    elapsed = time.perf_counter() - t0
    return elapsed, model, mon


def dense_top(model, mon) -> tuple[float, float | None]:
    """Top eigenvalue of the dense float64 Hessian, and of P^{-1/2} H P^{-1/2} (Adam)."""
    obj = mon.objective
    dense = ModelObjective(model, F.cross_entropy, obj.inputs, obj.targets, dtype=torch.float64,
                           count_correct=False)
    H = dense.hessian(dense.x0())
    p = mon.preconditioner()
    if p is None:
        return float(torch.linalg.eigvalsh(H)[-1]), None
    r = p.to(torch.float64).rsqrt()
    return float(torch.linalg.eigvalsh(H)[-1]), float(
        torch.linalg.eigvalsh(r[:, None] * H * r[None, :])[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--inputs", type=int, default=64)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--probe", type=int, default=256)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--adam-lr", type=float, default=1e-3)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dense", action="store_true", help="check against the dense Hessian")
    p.add_argument("--full-batch", action="store_true",
                   help="full-batch training on all --n samples, measured on the same set")
    p.add_argument("--mode", default="lanczos", help="the Monitor's tracker mode")
    p.add_argument("--no-curvature", action="store_true", help="Monitor(curvature=False)")
    p.add_argument("--optimizers", default="sgd,adam")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.optimizers.split(","):
        plain, monitored = [], []
        for _ in range(args.repeats):
            plain.append(loop(args, name, False)[0])
            t, model, mon = loop(args, name, True)
            monitored.append(t)
        hvps = [r["hvps"] for r in mon.rows]
        line = (f"{name}: d={mon.objective.dim} plain {min(plain):.3f}s, monitored "
                f"{min(monitored):.3f}s, ratio {min(monitored) / min(plain):.3f} "
                f"(median ratio {statistics.median(monitored) / statistics.median(plain):.3f}); "
                f"{len(hvps)} measurements, HVPs first {hvps[0]}, "
                f"mean after {statistics.mean(hvps[1:]):.2f}, max after {max(hvps[1:])}; "
                f"last sharpness {mon.rows[-1]['sharpness']:.6g}, "
                f"threshold {mon.rows[-1]['threshold']:.6g}")
        if "precond_sharpness" in mon.rows[-1]:
            line += f"; last precond_sharpness {mon.rows[-1]['precond_sharpness']:.6g}"
        if args.dense:
            top, ptop = dense_top(model, mon)
            err = abs(mon.rows[-1]["sharpness"] - top) / top
            line += f"; dense {top:.6g}, rel. error {err:.2e}"
            if ptop is not None:
                perr = abs(mon.rows[-1]["precond_sharpness"] - ptop) / ptop
                line += f"; dense precond {ptop:.6g}, rel. error {perr:.2e}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
