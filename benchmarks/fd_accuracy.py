"""Top Hessian eigenvalues of the issue-22 GPT-2 by finite differences against double backward.

The model of ``eoskit bench monitor --settings gpt-small`` (d = 5.29M, float32), trained 60
AdamW steps (lr 3e-4) on fresh random token batches, measured on one fixed batch. Lanczos
(top 2, eigenvalue criterion, tol 1e-6) runs with each product engine; the table gives the
two values and their relative error against ``retained`` (double backward), and the
Rayleigh quotient of double backward's top eigenvector by each engine. The row
"fd, old step" replaces :func:`eoskit.objective.fd_step` by the rule it had before
(``ε^(1/3)·max(1, ‖x‖)``), to show why it changed.

``--one-sided`` adds the question whether a product could cost one gradient instead of
two: the measurement has ∇f(x) already, so ``(∇f(x + h v) − ∇f(x))/h`` would do. The
second table gives that quotient's error along the top eigenvector, beside the central
one's, for several steps h: the one-sided error is the third-derivative term
``h/2 · ∇³f[v, v, v]``, which the central difference cancels.

    PYTHONPATH=src python benchmarks/fd_accuracy.py [--steps 60] [--threads 2] [--compile]
        [--one-sided]
"""

from __future__ import annotations

import argparse
import json

import torch

from eoskit.bench.monitor_settings import (
    SETTINGS,
    batches,
    build_model,
    make_optimizer,
    next_token_loss,
)
from eoskit.eigs import lanczos
from eoskit.objective import ModelObjective, fd_step, products


def _old_step(x: torch.Tensor) -> float:
    return torch.finfo(x.dtype).eps ** (1 / 3) * max(1.0, float(x.detach().norm()))


def top_values(model, probe, method: str, step_rule=None, top=None) -> dict:
    """Lanczos's top two values with one engine and, given the reference top eigenvector
    ``top``, its Rayleigh quotient by that engine."""
    obj = ModelObjective(model, next_token_loss, probe, probe, hvp_method=method,
                         count_correct=False)
    x = obj.x0()
    saved = products.fd_step
    if step_rule is not None:
        products.fd_step = step_rule
    try:
        with torch.enable_grad(), obj.at(x) as point:
            res = lanczos(point.hvp, obj.dim, 2, tol=1e-6, criterion="eigenvalue",
                          dtype=x.dtype, max_iter=60)
            v = res.eigenvectors[:, 0] if top is None else top
            quotient = float(v @ point.hvp(v)) / float(v @ v)
    finally:
        products.fd_step = saved
    h = (step_rule or fd_step)(x)
    return {"values": res.eigenvalues.tolist(), "products": res.n_matvecs, "h": h,
            "rayleigh_top": quotient, "top": v.clone()}


def one_sided(model, probe, top, steps=(1e-4, 3e-4, 1e-3, None)) -> list[dict]:
    """Relative errors of one-sided and central quotients ``vᵀ(∇f(x ± h v) …)/h`` along the
    unit ``top`` against double backward's ``vᵀHv`` (``None``: :func:`fd_step`)."""
    obj = ModelObjective(model, next_token_loss, probe, probe, hvp_method="retained",
                         count_correct=False)
    x, v = obj.x0(), top / top.norm()
    with torch.enable_grad(), obj.at(x) as point:
        exact = float(v @ point.hvp(v))

    def grad(z):
        return obj.value_and_grad(z)[1].detach()

    g0, rows = grad(x), []
    for h in steps:
        h = fd_step(x) if h is None else h
        up, down = float(v @ grad(x + h * v)), float(v @ grad(x - h * v))
        g = float(v @ g0)
        rows.append({"h": h, "one_sided": ((up - g) / h) / exact - 1,
                     "central": ((up - down) / (2 * h)) / exact - 1})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also fd+compile")
    ap.add_argument("--one-sided", action="store_true",
                    help="also one-sided against central quotients along the top eigenvector")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    s = SETTINGS["gpt-small"]
    model = build_model(s, 0)
    opt = make_optimizer("adamw", model, s.lr["adamw"])
    stream = batches(s, model.vocab, 1)
    for _ in range(args.steps):
        ids = next(stream)
        opt.zero_grad()
        next_token_loss(model(ids), ids).backward()
        opt.step()
    probe = torch.randint(0, model.vocab, (s.batch, s.seq),
                          generator=torch.Generator().manual_seed(2))
    rows = {"retained": top_values(model, probe, "retained")}
    top = rows["retained"]["top"]
    sided = one_sided(model, probe, top) if args.one_sided else None
    rows["fd"] = top_values(model, probe, "fd", top=top)
    rows["fd, old step"] = top_values(model, probe, "fd", _old_step, top=top)
    if args.compile:
        rows["fd+compile"] = top_values(model, probe, "fd+compile", top=top)
    ref, ref_q = rows["retained"]["values"], rows["retained"]["rayleigh_top"]
    for row in rows.values():
        del row["top"]
        row["rel_error"] = [abs(v / r - 1) for v, r in zip(row["values"], ref, strict=True)]
        row["rayleigh_rel_error"] = abs(row["rayleigh_top"] / ref_q - 1)
    print(json.dumps(rows, indent=1))
    print("| engine | step h | λ₁ | λ₂ | rel. error λ₁ / λ₂ | products | Rayleigh quotient of "
          "the top eigenvector, rel. error |")
    print("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        v, e = row["values"], row["rel_error"]
        h = "–" if name == "retained" else f"{row['h']:.2e}"
        print(f"| {name} | {h} | {v[0]:.6f} | {v[1]:.6f} | {e[0]:.1e} / {e[1]:.1e} | "
              f"{row['products']} | {row['rayleigh_rel_error']:.1e} |")
    if sided is not None:
        print(json.dumps(sided))
        print("\n| step h | one-sided quotient, rel. error | central quotient, rel. error |")
        print("|---|---|---|")
        for r in sided:
            print(f"| {r['h']:.2e} | {r['one_sided']:+.1e} | {r['central']:+.1e} |")


if __name__ == "__main__":
    main()
