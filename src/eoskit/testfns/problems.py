"""The built-in problems of ``eoskit orbits`` and ``bifurcation`` (see :mod:`eoskit.testfns`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from eoskit.objective import FunctionObjective, ModelObjective, Objective
from eoskit.objective.failures import ObjectiveError

DTYPE = torch.float64


@dataclass
class ObjectiveProblem:
    """An objective with a default start ``x0`` and, where known, a fixed point ``x_star``."""

    name: str
    objective: Objective
    x0: Tensor
    x_star: Tensor | None = None
    description: str = ""
    meta: dict | None = None


def _t(values) -> Tensor:
    return torch.tensor(values, dtype=DTYPE)


# ---------------------------------------------------------------- analytic examples
def theory_example(x: Tensor) -> Tensor:
    """docs/theory.md's worked example ``x1² + 0.25 x2² + 1.3 x1² x2 + x1⁴/8 + 0.7 x2³/6``."""
    x1, x2 = x[0], x[1]
    return x1**2 + 0.25 * x2**2 + 1.3 * x1**2 * x2 + x1**4 / 8 + 0.7 * x2**3 / 6


def double_well(x: Tensor) -> Tensor:
    """``(x² − 1)²/4`` (1-D)."""
    return ((x[0] ** 2 - 1) ** 2) / 4


def supercritical_1d(x: Tensor) -> Tensor:
    """``x² + x³ + x⁴/2``: ``Q = −3.5`` at 0."""
    return x[0] ** 2 + x[0] ** 3 + x[0] ** 4 / 2


def subcritical_1d(x: Tensor) -> Tensor:
    """``x² + x³/3 + x⁴/2``: ``Q = +0.5`` at 0."""
    return x[0] ** 2 + x[0] ** 3 / 3 + x[0] ** 4 / 2


def _analytic(name, fn, dim, x0, x_star, description, **meta) -> ObjectiveProblem:
    return ObjectiveProblem(name, FunctionObjective(fn, dim), _t(x0), _t(x_star), description,
                            meta)


# ---------------------------------------------------------------- linear network
def _orthonormal(rows: int, cols: int, gen: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(rows, cols, dtype=DTYPE, generator=gen))
    return q * torch.sign(torch.diagonal(r))


def linear_net(
    seed: int = 0,
    n: int = 200,
    d_in: int = 10,
    hidden: int = 3,
    d_out: int = 5,
    singular_values: tuple[float, ...] = (3.0, 2.0, 1.0),
    init_scale: float = 0.1,
) -> ObjectiveProblem:
    """The two-layer linear network problem (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in, dtype=DTYPE, generator=gen)
    # exact whitening: X^T X / n = I (samples are rows)
    cov = X.T @ X / n
    evals, evecs = torch.linalg.eigh(cov)
    X = X @ evecs @ torch.diag(evals.rsqrt()) @ evecs.T
    r = len(singular_values)
    U, V = _orthonormal(d_out, r, gen), _orthonormal(d_in, r, gen)
    S = torch.tensor(singular_values, dtype=DTYPE)
    M = U @ torch.diag(S) @ V.T
    Y = X @ M.T
    model = nn.Sequential(nn.Linear(d_in, hidden, bias=False), nn.Linear(hidden, d_out, bias=False))
    model = model.to(DTYPE)
    obj = ModelObjective(model, "mse", X, Y, count_correct=False)
    x0 = init_scale * torch.randn(obj.dim, dtype=DTYPE, generator=gen)
    meta = dict(target_map=M, U=U, V=V, singular_values=S, inputs=X, targets=Y,
                d_in=d_in, hidden=hidden, d_out=d_out)
    desc = (f"two-layer linear net {d_in}->{hidden}->{d_out}, n={n}, whitened inputs, "
            f"rank-{r} target with singular values {tuple(singular_values)}")
    return ObjectiveProblem("linear-net", obj, x0, None, desc, meta)


def linear_net_balanced_minimum(problem: ObjectiveProblem) -> Tensor:
    """A balanced minimum ``W1 = S^½ Vᵀ``, ``W2 = U S^½`` of the ``linear-net`` problem."""
    m = problem.meta
    if m is None or "target_map" not in m:
        raise ObjectiveError("linear_net_balanced_minimum needs the linear-net problem")
    if m["hidden"] != len(m["singular_values"]):
        raise ObjectiveError("balanced minimum implemented for hidden = target rank")
    root = torch.diag(m["singular_values"].sqrt())
    W1 = root @ m["V"].T
    W2 = m["U"] @ root
    return torch.cat([W1.reshape(-1), W2.reshape(-1)])


# ---------------------------------------------------------------- digits MLP
def digits_mlp(seed: int = 0, n: int = 48, n_components: int = 8, hidden: int = 12,
               weight_decay: float = 1e-3) -> ObjectiveProblem:
    """A small tanh MLP regressing the digit value on load_digits (see the module docstring)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data[:n].astype(np.float64) / 16.0
    labels = data.target[:n]
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    z = x @ vt[:n_components].T
    z = z / z.std()
    y = ((labels.astype(np.float64) - 4.5) / 3.0)[:, None]
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(n_components, hidden), nn.Tanh(), nn.Linear(hidden, 1))
    finally:
        torch.random.set_rng_state(gen_state)
    model = model.to(DTYPE)
    mse = ModelObjective(model, "mse", torch.tensor(z), torch.tensor(y), count_correct=False)
    fns = list(mse.term_fns())
    wd = float(weight_decay)

    def loss(theta: Tensor) -> Tensor:
        return sum(f(theta) for f in fns) + 0.5 * wd * (theta @ theta)

    obj = FunctionObjective(loss, mse.dim)
    desc = (f"tanh MLP {n_components}->{hidden}->1 on {n} load_digits samples (top-"
            f"{n_components} PCA inputs, standardised digit value as target), "
            f"MSE + {wd:g}/2 |theta|^2")
    return ObjectiveProblem("digits-mlp", obj, mse.x0(), None, desc,
                   dict(labels=labels, mse=mse, weight_decay=wd))


# ---------------------------------------------------------------- registry
BUILTINS: dict[str, Callable[[], ObjectiveProblem]] = {
    "theory-example": lambda: _analytic(
        "theory-example", theory_example, 2, [0.01, 0.0], [0.0, 0.0],
        "x1^2 + 0.25 x2^2 + 1.3 x1^2 x2 + x1^4/8 + 0.7 x2^3/6 (docs/theory.md worked check)"),
    "double-well": lambda: _analytic(
        "double-well", double_well, 1, [1.01], [1.0], "(x^2 - 1)^2 / 4"),
    "supercritical-1d": lambda: _analytic(
        "supercritical-1d", supercritical_1d, 1, [0.01], [0.0], "x^2 + x^3 + x^4/2"),
    "subcritical-1d": lambda: _analytic(
        "subcritical-1d", subcritical_1d, 1, [0.01], [0.0], "x^2 + x^3/3 + x^4/2"),
    "linear-net": linear_net,
    "digits-mlp": digits_mlp,
}


def builtin(name: str) -> ObjectiveProblem:
    """A built-in problem by name (see ``BUILTINS``)."""
    if name not in BUILTINS:
        raise ObjectiveError(f"unknown objective {name!r}; built-ins are {', '.join(BUILTINS)}, "
                             "or give FILE.py:NAME or package.module:NAME")
    return BUILTINS[name]()
