"""eoskit: the Edge of Stability toolkit.

The core abstraction is an :class:`Objective` on a flat parameter vector;
training, diagnostics and orbit analysis all build on it.

Example:
    >>> import torch, eoskit
    >>> x = torch.ones(3, dtype=torch.float64)
    >>> vals, vecs = eoskit.hessian_eigs(lambda x: (x ** 2).sum(), x)
    >>> round(float(vals[0]), 10)
    2.0
"""

from __future__ import annotations

__version__ = "0.1.0"

from eoskit.config import RunConfig, stability_threshold
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
from eoskit.optim import UpdateRule

__all__ = [
    "EigResult", "ForcingTracker", "FunctionObjective", "ModelObjective", "Objective",
    "PointObjective", "RunConfig", "UpdateRule", "effective_curvature", "hessian_eigs",
    "lanczos", "lobpcg", "stability_threshold", "top_eigenpairs", "train", "load_run",
    "DIAGNOSTIC_COLUMNS", "diagnose_step", "edge_coupling", "edge_coupling_grads",
    "localisation_points", "loss_change_residual", "segment_quadrature",
    "step_recurrence_residual", "find_orbit", "find_minimum", "reduce_at_fixed_point",
    "half_amplitude_coefficient", "bifurcation_sweep", "floquet_multipliers", "orbit_checks",
]

_ORBITS = {"find_orbit", "find_minimum", "reduce_at_fixed_point", "half_amplitude_coefficient",
           "bifurcation_sweep", "floquet_multipliers", "orbit_checks"}


def __getattr__(name):
    # heavy modules load on first use so `import eoskit` stays quick
    if name == "train":
        from eoskit.train import train

        return train
    if name in _ORBITS:
        from eoskit import orbits

        return getattr(orbits, name)
    if name == "load_run":
        from eoskit.store import load_run

        return load_run
    raise AttributeError(name)
