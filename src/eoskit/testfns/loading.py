"""Start vectors and user objectives: :func:`parse_vector`, :func:`load_objective`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from eoskit.components import import_target
from eoskit.objective import FunctionObjective, Objective
from eoskit.objective.failures import ObjectiveError, checked_callable
from eoskit.testfns.problems import BUILTINS, DTYPE, ObjectiveProblem, builtin


def read_npy(path: str | Path, what: str) -> np.ndarray:
    """A float64 array from an ``.npy`` file; bad input raises one message naming ``what``.

    Complex arrays are refused (casting would silently drop the imaginary part), as is
    anything pickled.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what}: no such file: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is bad input
        raise ObjectiveError(f"{what}: cannot read {path} as a .npy array ({err})") from err
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number) or (
            np.iscomplexobj(arr)):
        raise ObjectiveError(f"{what}: {path} does not hold real numbers")
    return arr.astype(np.float64)


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
            vec = torch.as_tensor(read_npy(text, what)).reshape(-1)
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
    return import_target(spec, "objective", ObjectiveError).target


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
    loss = checked_callable(target, spec)
    try:
        val = float(loss(x.clone()))
    except ObjectiveError as err:
        raise err.where(step=what) from None
    if not math.isfinite(val):
        raise ObjectiveError(f"its value {val} is not finite", objective=spec, step=what)
    return ObjectiveProblem(spec, FunctionObjective(loss, x.numel()), x, None, f"callable {spec}")
