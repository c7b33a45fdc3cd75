"""Top-k *algebraic* Hessian eigenvalues from Hessian-vector products, and their tracking.

* :mod:`~eoskit.eigs.solvers`: :func:`lanczos`, :func:`lobpcg`, and
  :func:`top_eigenpairs` / :func:`hessian_eigs` at a point of an objective.
* :mod:`~eoskit.eigs.subspace`: :func:`subspace_eigs` (block Rayleigh–Ritz
  warm start, thick restarts under a bound on its basis).
* :mod:`~eoskit.eigs.krylov`: the basis arithmetic they share (work dtype,
  orthonormalisation, the a-posteriori eigenvalue bounds) and :class:`EigResult`.
* :mod:`~eoskit.eigs.tracker`: :class:`SharpnessTracker` (the shared base) and
  :class:`LanczosTracker`; :mod:`~eoskit.eigs.streaming`: :class:`StreamingTracker`,
  ~one product per step; :mod:`~eoskit.eigs.tracker_modes`: :data:`TRACKERS`
  and :func:`make_tracker`; :mod:`~eoskit.eigs.shared_tracker`: :class:`SharedTracker`,
  raw and preconditioned together from one set of products
  (:mod:`~eoskit.eigs.shared_basis`); :mod:`~eoskit.eigs.lean_tracker`:
  :class:`LeanTracker`, the same two quantities one after the other in a few d-long
  vectors (:mod:`~eoskit.eigs.thick_lanczos`); :mod:`~eoskit.eigs.warm_stopping`: the
  stopping rules of both, :mod:`~eoskit.eigs.warm_tracker`: what both carry between
  measurements.
* :mod:`~eoskit.eigs.preconditioned_operator`: :func:`preconditioned_matvec`
  (``P^{-1/2} H P^{-1/2}``, the operator of the preconditioned sharpness).

Example:
    >>> import torch
    >>> A = torch.diag(torch.tensor([-5.0, 1.0, 2.0, 3.0], dtype=torch.float64))
    >>> [round(float(e), 8) for e in lanczos(lambda v: A @ v, 4, 2, tol=1e-10).eigenvalues]
    [3.0, 2.0]
"""

from eoskit.eigs.krylov import CRITERIA, EigResult, MatVec, work_dtype
from eoskit.eigs.lean_tracker import LeanTracker, default_lean_vectors
from eoskit.eigs.preconditioned_operator import preconditioned_matvec
from eoskit.eigs.shared_budget import default_shared_vectors
from eoskit.eigs.shared_tracker import SharedTracker
from eoskit.eigs.solvers import SOLVERS, hessian_eigs, lanczos, lobpcg, top_eigenpairs
from eoskit.eigs.streaming import TURBULENT_TOL, StreamingTracker
from eoskit.eigs.subspace import subspace_eigs
from eoskit.eigs.tracker import LanczosTracker, SharpnessTracker, default_max_vectors
from eoskit.eigs.tracker_modes import TRACKERS, make_tracker

__all__ = [
    # results and options
    "EigResult", "MatVec", "CRITERIA", "work_dtype",
    # solvers
    "lanczos", "subspace_eigs", "lobpcg", "SOLVERS",
    # at a point of an objective
    "top_eigenpairs", "hessian_eigs",
    # trackers
    "SharpnessTracker", "LanczosTracker", "StreamingTracker", "TRACKERS", "make_tracker",
    "default_max_vectors", "TURBULENT_TOL", "SharedTracker", "default_shared_vectors",
    "LeanTracker", "default_lean_vectors",
    # operators
    "preconditioned_matvec",
]
