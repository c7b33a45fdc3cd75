"""Top-k *algebraic* Hessian eigenvalues from Hessian-vector products, and their tracking.

* :mod:`~eoskit.eigs.solvers`: :func:`lanczos`, :func:`subspace_eigs` (block
  Rayleigh–Ritz warm start), :func:`lobpcg`, and :func:`top_eigenpairs` /
  :func:`hessian_eigs` at a point of an objective.
* :mod:`~eoskit.eigs.krylov`: the float64 basis arithmetic they share
  (orthonormalisation, the a-posteriori eigenvalue bounds).
* :mod:`~eoskit.eigs.tracker`: :class:`SharpnessTracker` (the shared base;
  constructing it returns the class of its ``mode``) and :class:`LanczosTracker`.
* :mod:`~eoskit.eigs.streaming`: :class:`StreamingTracker`, ~one product per step.

Example:
    >>> import torch
    >>> A = torch.diag(torch.tensor([-5.0, 1.0, 2.0, 3.0], dtype=torch.float64))
    >>> [round(float(e), 8) for e in lanczos(lambda v: A @ v, 4, 2, tol=1e-10).eigenvalues]
    [3.0, 2.0]
"""

from eoskit.eigs.krylov import CRITERIA, WORK, MatVec
from eoskit.eigs.krylov import _apply as _apply
from eoskit.eigs.krylov import _basis_dtype as _basis_dtype
from eoskit.eigs.krylov import _eigenvalue_bounds as _eigenvalue_bounds
from eoskit.eigs.krylov import _hcat as _hcat
from eoskit.eigs.krylov import _images as _images
from eoskit.eigs.krylov import _norm as _norm
from eoskit.eigs.krylov import _orthonormal_columns as _orthonormal_columns
from eoskit.eigs.krylov import _start_vector as _start_vector
from eoskit.eigs.solvers import (
    SOLVERS,
    EigResult,
    hessian_eigs,
    lanczos,
    lobpcg,
    subspace_eigs,
    top_eigenpairs,
)
from eoskit.eigs.streaming import TURBULENT_TOL, StreamingTracker
from eoskit.eigs.tracker import TRACKER_MODES, LanczosTracker, SharpnessTracker
from eoskit.eigs.tracker import _overlap as _overlap

__all__ = [
    # results and options
    "EigResult", "MatVec", "CRITERIA", "WORK",
    # solvers
    "lanczos", "subspace_eigs", "lobpcg", "SOLVERS",
    # at a point of an objective
    "top_eigenpairs", "hessian_eigs",
    # trackers
    "SharpnessTracker", "LanczosTracker", "StreamingTracker", "TRACKER_MODES", "TURBULENT_TOL",
]
