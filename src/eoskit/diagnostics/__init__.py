"""Edge-coupling diagnostics (docs/theory.md §1-4): every identity, measured on any objective.

One function per quantity, each taking an :class:`~eoskit.objective.Objective`:

* :mod:`~eoskit.diagnostics.identities`: §1 edge coupling (:func:`edge_coupling`,
  :func:`edge_coupling_grads`, :func:`gd_pair_residual`), §3 :func:`effective_curvature`
  and the exact-identity residuals (:func:`step_recurrence_residual`,
  :func:`loss_change_residual`, :func:`kappa_mismatch`)
* :mod:`~eoskit.diagnostics.quadrature`: §2-3 segment averages of the Hessian along a step
  (:func:`segment_quadrature`, :func:`segment_curvature`, :func:`averaged_curvatures`,
  :func:`averaged_hessian_step`)
* :mod:`~eoskit.diagnostics.localisation`: §4 mean-value points τ̄, τ̃
  (:func:`localisation_points`)
* :mod:`~eoskit.diagnostics.forcing`: the forcing identity over a run (:class:`ForcingTracker`)
* :mod:`~eoskit.diagnostics.preconditioned_identities`: §6 every identity with a fixed
  preconditioner P (A^P_η, the P-step recurrence, κ^P, the telescoping identity, the
  localisation bound)
* :mod:`~eoskit.diagnostics.diagnose`: one CSV row per step (:func:`diagnose_step`,
  :data:`DIAGNOSTIC_COLUMNS`)

The figures live in :mod:`eoskit.plots.diagnostics_figures`: this package computes and never
imports matplotlib.

Scope. The step recurrence ``s_{t+1} = (I − ηH̄_t) s_t`` and the GD-pair condition
``∇_x A = 0`` are identities of *plain* gradient descent. They are defined here for
``gd`` (full batch) and, per batch, for ``sgd`` (pass the step's batch objective and
``s_next=None``). For momentum methods (polyak, nesterov) the step is not ``−η g``
and these rows are not meaningful; the segment quantities (q̄, κ, τ̄, τ̃) and the
loss-change formula still hold for *any* step ``s``, but ``2/η`` is then not the
stability boundary.
"""

from __future__ import annotations

from eoskit.diagnostics.adaptive import (
    ADAPTIVE_DIAGNOSTIC_COLUMNS,
    diagnosable,
    diagnose_adaptive_step,
    diagnose_rule_step,
    diagnostic_columns,
)
from eoskit.diagnostics.diagnose import DIAGNOSTIC_COLUMNS, diagnose_step
from eoskit.diagnostics.forcing import ForcingTracker
from eoskit.diagnostics.identities import (
    edge_coupling,
    edge_coupling_grads,
    effective_curvature,
    gd_pair_residual,
    kappa_mismatch,
    loss_change_residual,
    step_recurrence_residual,
)
from eoskit.diagnostics.localisation import Localisation, localisation_points
from eoskit.diagnostics.preconditioned_identities import (
    PreconditionedLocalisation,
    p_norm_sq,
    preconditioned_curvature,
    preconditioned_edge_coupling,
    preconditioned_edge_coupling_grads,
    preconditioned_effective_curvature,
    preconditioned_forcing,
    preconditioned_localisation,
    preconditioned_pair_residual,
    preconditioned_recurrence_residual,
    preconditioned_sharpness,
    preconditioned_step,
    preconditioner_drift,
)
from eoskit.diagnostics.quadrature import (
    DEFAULT_NODES,
    SegmentQuadrature,
    averaged_curvatures,
    averaged_hessian_step,
    gauss_legendre_01,
    segment_curvature,
    segment_quadrature,
)

__all__ = [
    # §1 edge coupling
    "edge_coupling",
    "edge_coupling_grads",
    "gd_pair_residual",
    # §2-3 segment averages by quadrature
    "DEFAULT_NODES",
    "gauss_legendre_01",
    "SegmentQuadrature",
    "segment_quadrature",
    "segment_curvature",
    "averaged_curvatures",
    "averaged_hessian_step",
    # exact-identity residuals
    "effective_curvature",
    "step_recurrence_residual",
    "loss_change_residual",
    "kappa_mismatch",
    # §4 mean-value localisation
    "Localisation",
    "localisation_points",
    # the forcing identity over a run
    "ForcingTracker",
    # §6 with a fixed preconditioner P
    "p_norm_sq",
    "preconditioned_edge_coupling",
    "preconditioned_edge_coupling_grads",
    "preconditioned_step",
    "preconditioned_pair_residual",
    "preconditioned_recurrence_residual",
    "preconditioner_drift",
    "preconditioned_effective_curvature",
    "preconditioned_curvature",
    "preconditioned_forcing",
    "PreconditionedLocalisation",
    "preconditioned_localisation",
    "preconditioned_sharpness",
    # one row per step
    "DIAGNOSTIC_COLUMNS",
    # adaptive runs (docs/theory.md §6 with the step's P_t, and P's drift)
    "ADAPTIVE_DIAGNOSTIC_COLUMNS", "diagnose_adaptive_step", "diagnose_rule_step",
    "diagnosable", "diagnostic_columns",
    "diagnose_step",
]

