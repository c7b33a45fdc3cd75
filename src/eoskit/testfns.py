"""Built-in objectives for the orbit and bifurcation tools, and a loader for user objectives.

Built-ins (``BUILTINS``; each gives an :class:`ObjectiveProblem`: the objective, a
default start ``x0`` and, where known, a fixed point ``x_star``):

``theory-example``
    ``L(x1, x2) = x1² + 0.25 x2² + 1.3 x1² x2 + x1⁴/8 + 0.7 x2³/6`` (docs/theory.md
    worked check). ``x* = 0``, ``λ = 2`` along ``e1``, ``Q = −3.13``.
``double-well``
    ``L(x) = (x² − 1)²/4`` in 1-D; ``x* = 1``: ``L'' = 2``, ``L''' = 6``,
    ``L'''' = 6``, ``Q = 1/2 − 36/8 = −4`` (supercritical, ``η_c = 1``).
``supercritical-1d``
    ``L(x) = x² + x³ + x⁴/2``; ``x* = 0``, ``Q = 1 − 36/8 = −3.5``, ``η_c = 1``.
``subcritical-1d``
    ``L(x) = x² + x³/3 + x⁴/2``; ``x* = 0``, ``Q = 1 − 4/8 = 0.5``, ``η_c = 1``.
``linear-net``
    Two-layer linear network ``x ↦ W2 W1 x`` (input 10, hidden 3, output 5,
    no biases; 45 parameters, ``W1`` first), MSE ``½‖W2 W1 X − Y‖²/n`` over
    ``n = 200`` samples. Inputs are Gaussian, then whitened so that
    ``X Xᵀ/n = I`` exactly; the target map ``M* = U diag(3, 2, 1) Vᵀ`` has
    random orthonormal ``U`` (5×3), ``V`` (10×3), so ``Y = M* X`` is rank 3.
    Every minimum has ``W2 W1 = M*``: a 9-dimensional manifold (the GL(3)
    orbit ``W2 A, A⁻¹ W1``), so the Hessian there has a 9-dimensional null
    space. At a *balanced* minimum (``W1 W1ᵀ = W2ᵀ W2``) the sharpness is
    exactly ``2 σ₁(M*) = 6`` (with whitened inputs), i.e. ``η_c = 1/σ₁``;
    :func:`linear_net_balanced_minimum` builds one. ``x0`` is a small seeded
    random start (std 0.1) for GD.
``digits-mlp``
    A tanh MLP (8 → 12 → 1, with biases, 121 parameters) on 48 samples of
    scikit-learn's ``load_digits``: pixels /16, centred, projected on their
    top 8 principal components and scaled to unit overall std; the target is
    the digit value standardised, ``(label − 4.5)/3``. Loss: MSE plus
    ``(10⁻³/2)|θ|²``. Without the ridge term the tanh net's loss keeps
    sliding down flat valleys (eigenvalues ``~1e-8`` that shrink under
    Newton): no isolated minimum at finite parameters, hence no fixed point to
    reduce at. With it the minimum is isolated (smallest eigenvalue ``~8e-6``).
    One scalar output avoids the near-degenerate top eigenvalues that a
    one-hot output layer brings (its Hessian block is ``I₁₀ ⊗ Σ_h``). ``x0`` is
    PyTorch's default initialisation under the seed.

User objectives (:func:`load_objective`): ``FILE.py:NAME`` or
``package.module:NAME`` naming a callable that maps a 1-D float64 tensor to a
scalar tensor (its dimension comes from ``x0`` or from an attribute ``dim``
on the callable; an attribute ``x0`` gives the default start), or an
:class:`~eoskit.objective.Objective` instance.

Example:
    >>> p = builtin("theory-example")
    >>> float(p.objective.value(torch.tensor([1.0, 0.0], dtype=torch.float64)))
    1.125
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from eoskit.objective import FunctionObjective, ModelObjective, Objective

__all__ = [
    "BUILTINS",
    "ObjectiveError",
    "ObjectiveProblem",
    "Problem",
    "builtin",
    "linear_net_balanced_minimum",
    "load_objective",
    "parse_vector",
    "theory_example",
]

DTYPE = torch.float64


class ObjectiveError(ValueError):
    """An objective spec, or a start vector, that cannot be used."""


@dataclass
class ObjectiveProblem:
    """An objective with a default start ``x0`` and, where known, a fixed point ``x_star``.

    (Not :class:`eoskit.problem.Problem`, which is a training run's model and data.)
    """

    name: str
    objective: Objective
    x0: Tensor
    x_star: Tensor | None = None
    description: str = ""
    meta: dict | None = None


# the name of the previous release
Problem = ObjectiveProblem


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


# ---------------------------------------------------------------- parsing and loading
def parse_vector(spec: str | Path | Tensor | np.ndarray | None, dim: int | None = None,
                 what: str = "x0") -> Tensor | None:
    """A float64 1-D tensor from comma-separated numbers, an ``.npy`` file, or an array.

    ``dim``, when given, is the length the vector must have.
    """
    if spec is None:
        return None
    if isinstance(spec, Tensor):
        vec = spec.detach().to(DTYPE).reshape(-1).clone()
    elif isinstance(spec, np.ndarray):
        vec = torch.as_tensor(spec, dtype=DTYPE).reshape(-1).clone()
    else:
        text = str(spec).strip()
        if text.endswith(".npy"):
            path = Path(text)
            if not path.is_file():
                raise FileNotFoundError(f"{what}: no such file: {text}")
            try:
                arr = np.load(path, allow_pickle=False)
            except Exception as err:  # noqa: BLE001 - any unreadable file is bad input
                raise ObjectiveError(f"{what}: cannot read {text}: {err}") from err
            if not np.issubdtype(arr.dtype, np.number):
                raise ObjectiveError(f"{what}: {text} does not hold numbers")
            vec = torch.as_tensor(arr.astype(np.float64)).reshape(-1)
        else:
            parts = [p.strip() for p in text.split(",")]
            try:
                vals = [float(p) for p in parts if p != ""]
            except ValueError as err:
                raise ObjectiveError(f"{what}: cannot parse {text!r} as comma-separated "
                                     "numbers or an .npy file") from err
            if not vals:
                raise ObjectiveError(f"{what}: empty vector {text!r}")
            vec = torch.tensor(vals, dtype=DTYPE)
    if vec.numel() == 0:
        raise ObjectiveError(f"{what}: empty vector")
    if not torch.isfinite(vec).all():
        raise ObjectiveError(f"{what}: contains non-finite values")
    if dim is not None and vec.numel() != dim:
        raise ObjectiveError(f"{what} has length {vec.numel()} but the objective has "
                             f"dimension {dim}")
    return vec


def _import_target(spec: str):
    if ":" not in spec:
        raise ObjectiveError(f"unknown objective {spec!r}; built-ins are {', '.join(BUILTINS)}, "
                             "or give FILE.py:NAME or package.module:NAME")
    where, name = spec.rsplit(":", 1)
    if not name.isidentifier():
        raise ObjectiveError(f"objective {spec!r}: {name!r} is not a Python name")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise FileNotFoundError(f"objective file not found: {where}")
        mod_name = f"_eoskit_user_objective_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        if module_spec is None or module_spec.loader is None:
            raise ObjectiveError(f"cannot import {where}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:  # noqa: BLE001 - user code: report, do not trace
            sys.modules.pop(mod_name, None)
            raise ObjectiveError(f"importing {where} failed: {type(err).__name__}: {err}") from err
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as err:
            raise ObjectiveError(f"cannot import module {where!r}: {err}") from err
    if not hasattr(module, name):
        raise ObjectiveError(f"{where} has no attribute {name!r}")
    return getattr(module, name)


def load_objective(spec: str, x0: str | Path | Tensor | np.ndarray | None = None,
                   what: str = "x0") -> ObjectiveProblem:
    """Resolve ``spec`` (built-in name, ``FILE.py:NAME``, ``package.module:NAME``) to a problem.

    ``x0`` (comma-separated numbers, an ``.npy`` path, or an array) overrides the
    default start and fixes the dimension of a plain callable; ``what`` names it
    in error messages.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ObjectiveError("give an objective: a built-in name, FILE.py:NAME or "
                             "package.module:NAME")
    spec = spec.strip()
    if spec in BUILTINS:
        problem = builtin(spec)
        if x0 is not None:
            problem.x0 = parse_vector(x0, problem.objective.dim, what)
        return problem
    target = _import_target(spec)
    if isinstance(target, Objective):
        x = parse_vector(x0, target.dim, what)
        if x is None:
            x = target.x0() if hasattr(target, "x0") and callable(target.x0) else torch.zeros(
                target.dim, dtype=target.dtype)
        return ObjectiveProblem(spec, target, x.to(target.dtype), None, f"objective {spec}")
    if not callable(target):
        raise ObjectiveError(f"{spec} is neither callable nor an Objective")
    dim_attr = getattr(target, "dim", None)
    if dim_attr is not None and (not isinstance(dim_attr, int) or dim_attr <= 0):
        raise ObjectiveError(f"{spec}: attribute dim must be a positive integer, got {dim_attr!r}")
    x = parse_vector(x0, dim_attr, what)
    if x is None:
        default = getattr(target, "x0", None)
        if default is not None:
            x = parse_vector(torch.as_tensor(np.asarray(default, dtype=np.float64)), dim_attr)
        elif dim_attr is not None:
            x = torch.zeros(dim_attr, dtype=DTYPE)
        else:
            raise ObjectiveError(f"{spec}: give {what} (its length sets the dimension) or an "
                                 "attribute dim on the callable")
    dim = x.numel()
    try:
        val = target(x.clone())
    except Exception as err:  # noqa: BLE001 - user code: report, do not trace
        raise ObjectiveError(f"{spec} failed at {what}: {type(err).__name__}: {err}") from err
    if not isinstance(val, Tensor) or val.numel() != 1:
        raise ObjectiveError(f"{spec} must return a scalar tensor, got {type(val).__name__}"
                             + (f" of shape {tuple(val.shape)}" if isinstance(val, Tensor) else ""))
    if not math.isfinite(float(val)):
        raise ObjectiveError(f"{spec} is not finite at {what}")

    def scalar(z: Tensor, f=target) -> Tensor:
        return f(z).reshape(())

    return ObjectiveProblem(spec, FunctionObjective(scalar, dim), x, None, f"callable {spec}")
