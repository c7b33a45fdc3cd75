"""Section ``costs``: one gradient, and one HVP by each method, as a ratio to a gradient.

Methods: eoskit's retained graph (single, and per vector of a block of 4),
its rebuilt double backward and jvp∘grad, Cohen et al.'s chunked double
backward, curvlinops, and PyHessian's list-format product.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from eoskit.bench.bench_problem import BenchProblem, set_params
from eoskit.bench.peers import cohen_hvp_fn, curvlinops_operator, have, pyhessian_setup
from eoskit.bench.rows import median_time, row


def bench_costs(prob: BenchProblem, x: Tensor, label: str, peers: bool,
                repeats: int) -> list[dict]:
    obj, d = prob.obj, prob.dim
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(d, generator=gen, dtype=torch.float64).to(prob.dtype)  # (d,)
    V = torch.randn(d, 4, generator=gen, dtype=torch.float64).to(prob.dtype)  # (d, 4)
    t_grad, _ = median_time(lambda: obj.value_and_grad(x), repeats)
    rows = [row("costs", "gradient", label, 0, t_grad, None, per_gradient=1.0)]

    def add(method: str, seconds: float, k: int = 1) -> None:
        rows.append(row("costs", method, label, k, seconds / k, None,
                        per_gradient=seconds / k / t_grad, note=None))

    _eoskit_costs(prob, x, v, V, repeats, label, t_grad, rows, add)
    set_params(prob.model, x)
    cohen = cohen_hvp_fn(prob, prob.setting.cohen_chunk)
    add(f"cohen HVP (double backward, chunks of {prob.setting.cohen_chunk})",
        median_time(lambda: cohen(v), repeats)[0])
    if peers:
        _peer_costs(prob, v, repeats, add)
    return rows


def _eoskit_costs(prob: BenchProblem, x: Tensor, v: Tensor, V: Tensor, repeats: int,
                  label: str, t_grad: float, rows: list[dict],
                  add: Callable[..., None]) -> None:
    """eoskit's products: at(x) then the retained graph; then each rebuilt method."""
    obj = prob.obj
    t_at, point = median_time(lambda: obj.at(x), repeats)
    rows.append(row("costs", "eoskit at(x) (gradient + kept graph)", label, 0, t_at, None,
                    per_gradient=t_at / t_grad))
    add("eoskit HVP retained graph", median_time(lambda: point.hvp(v), repeats)[0])
    add("eoskit HVP retained graph, block of 4 (per vector)",
        median_time(lambda: point.hvp(V), repeats)[0], 4)
    point.release()
    for method, name in (("rev-rev", "eoskit HVP rebuilt double backward"),
                         ("fwd-rev", "eoskit HVP jvp∘grad")):
        obj.hvp_method = method
        try:
            add(name, median_time(lambda: obj.hvp(x, v), repeats)[0])
            if method == "fwd-rev":
                add(name + ", block of 4 (per vector)",
                    median_time(lambda: obj.hvp(x, V), repeats)[0], 4)
        finally:
            obj.hvp_method = "retained"


def _peer_costs(prob: BenchProblem, v: Tensor, repeats: int, add: Callable[..., None]) -> None:
    """curvlinops' and PyHessian's products, those installed (the model holds ``x``)."""
    if have("curvlinops"):
        H = curvlinops_operator(prob)
        add("curvlinops HVP", median_time(lambda: H @ v, repeats)[0])
    if have("pyhessian"):
        from pyhessian.utils import hessian_vector_product

        h = pyhessian_setup(prob)
        vl = [t.reshape(p.shape) for t, p in zip(
            torch.split(v, [p.numel() for p in h.params]), h.params, strict=True)]
        add("pyhessian HVP (retained graph, list format)",
            median_time(lambda: hessian_vector_product(h.gradsH, h.params, vl), repeats)[0])
        for p in prob.model.parameters():
            p.grad = None
