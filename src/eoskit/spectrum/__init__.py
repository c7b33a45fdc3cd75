"""The whole Hessian spectrum, not only its top: density, trace, Gauss–Newton split, blocks, λ_min.

Each quantity is a short function on a Hessian-vector product (``matvec``) and a
wrapper taking a loss ``f`` (a callable or an :class:`~eoskit.objective.Objective`)
at a point ``x``; the eigenvalue quantities also have a warm-started tracker whose
``measure`` takes the product at the current point, for use along a run.

* :mod:`~eoskit.spectrum.density`: :func:`slq` / :func:`spectral_density`, stochastic
  Lanczos quadrature, → :class:`SpectralDensity` (``nodes``, ``weights``,
  ``density(grid, sigma)``, ``moment(j)``).
* :mod:`~eoskit.spectrum.trace`: :func:`hessian_trace`, :func:`hutchinson`,
  :func:`hutch_plus_plus` → :class:`TraceEstimate`.
* :mod:`~eoskit.spectrum.gauss_newton`: :func:`gauss_newton_eigs` (``G = Jᵀ∇²ℓJ`` and
  ``H − G``), :class:`GaussNewtonTracker`.
* :mod:`~eoskit.spectrum.blocks`: :func:`block_sharpness` (per-module λ₁),
  :func:`block_eigs`, :class:`BlockSharpnessTracker`.
* :mod:`~eoskit.spectrum.negative`: :func:`lambda_min`, :class:`LambdaMinTracker`.
* :mod:`~eoskit.spectrum.operand`: the probes (:func:`rademacher`) and :func:`as_objective`.

Example:
    >>> import torch
    >>> x = torch.zeros(4, dtype=torch.float64)
    >>> f = lambda x: (torch.tensor([3.0, 1.0, 0.5, -2.0], dtype=torch.float64) * x ** 2).sum()
    >>> round(slq(f, x, probes=3, steps=4).trace, 8), round(hessian_trace(f, x).estimate, 8)
    (5.0, 5.0)
    >>> round(float(lambda_min(f, x).eigenvalues[0]), 8)
    -4.0
"""

from eoskit.spectrum.blocks import (
    BlockSharpnessTracker,
    block_eigs,
    block_product,
    block_sharpness,
    module_blocks,
)
from eoskit.spectrum.density import (
    SpectralDensity,
    gauss_quadrature,
    lanczos_tridiagonal,
    slq,
    spectral_density,
)
from eoskit.spectrum.gauss_newton import (
    GaussNewtonSplit,
    GaussNewtonTracker,
    gauss_newton_eigs,
)
from eoskit.spectrum.negative import LambdaMinTracker, bottom_eigenpairs, lambda_min
from eoskit.spectrum.operand import as_objective, rademacher, rademacher_stream
from eoskit.spectrum.trace import (
    TRACE_METHODS,
    TraceEstimate,
    hessian_trace,
    hutch_plus_plus,
    hutchinson,
)

__all__ = [
    # density
    "slq", "spectral_density", "SpectralDensity", "lanczos_tridiagonal", "gauss_quadrature",
    # trace
    "hessian_trace", "hutchinson", "hutch_plus_plus", "TraceEstimate", "TRACE_METHODS",
    # Gauss-Newton split
    "gauss_newton_eigs", "GaussNewtonSplit", "GaussNewtonTracker",
    # per-block sharpness
    "block_sharpness", "block_eigs", "block_product", "module_blocks", "BlockSharpnessTracker",
    # negative curvature
    "lambda_min", "bottom_eigenpairs", "LambdaMinTracker",
    # probes and operands
    "rademacher", "rademacher_stream", "as_objective",
]
