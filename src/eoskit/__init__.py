"""eoskit: the Edge of Stability toolkit.

The core abstraction is an :class:`Objective` on a flat parameter vector;
training, diagnostics and orbit analysis all build on it. The theory every
function computes is derived in ``docs/theory.md``.

Example:
    >>> import torch, eoskit
    >>> x = torch.ones(3, dtype=torch.float64)
    >>> vals, vecs = eoskit.hessian_eigs(lambda x: (x ** 2).sum(), x)
    >>> round(float(vals[0]), 10)
    2.0
"""

from __future__ import annotations

from eoskit._version import __version__
from eoskit.diagnostics import (
    DIAGNOSTIC_COLUMNS,
    ForcingTracker,
    diagnose_step,
    edge_coupling,
    edge_coupling_grads,
    effective_curvature,
    localisation_points,
    loss_change_residual,
    segment_quadrature,
    step_recurrence_residual,
)
from eoskit.eigs import EigResult, hessian_eigs, lanczos, lobpcg, top_eigenpairs
from eoskit.objective import FunctionObjective, ModelObjective, Objective, PointObjective
from eoskit.optim import UpdateRule, stability_threshold
from eoskit.training.config import RunConfig

__all__ = [
    "__version__",
    # objectives on a flat parameter vector
    "Objective", "PointObjective", "FunctionObjective", "ModelObjective",
    # eigensolvers (top-k algebraic)
    "EigResult", "hessian_eigs", "lanczos", "lobpcg", "top_eigenpairs",
    # training
    "RunConfig", "UpdateRule", "stability_threshold", "train", "load_run",
    # edge-coupling diagnostics (docs/theory.md §1-4)
    "DIAGNOSTIC_COLUMNS", "ForcingTracker", "diagnose_step", "edge_coupling",
    "edge_coupling_grads", "effective_curvature", "localisation_points",
    "loss_change_residual", "segment_quadrature", "step_recurrence_residual",
    # fixed points, period-two orbits, bifurcations (docs/theory.md §5)
    "find_orbit", "find_minimum", "floquet_multipliers", "orbit_checks",
    "reduce_at_fixed_point", "half_amplitude_coefficient", "bifurcation_sweep",
    # your model, your loop
    "Monitor",
]

# heavy modules load on first use so `import eoskit` stays quick
_LAZY = {
    "train": ("eoskit.training", "train"),
    "load_run": ("eoskit.training.stored_run", "load_run"),
    "Monitor": ("eoskit.monitor", "Monitor"),
    **{name: ("eoskit.orbits", name) for name in (
        "find_orbit", "find_minimum", "floquet_multipliers", "orbit_checks",
        "reduce_at_fixed_point", "half_amplitude_coefficient", "bifurcation_sweep")},
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'eoskit' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)

# the whole spectrum (issue 23): density, trace, Gauss-Newton split, per-block λ₁, λ_min
_SPECTRUM = ("slq", "hessian_trace", "gauss_newton_eigs", "block_sharpness", "lambda_min")
__all__ += list(_SPECTRUM)
_LAZY.update({name: ("eoskit.spectrum", name) for name in _SPECTRUM})
