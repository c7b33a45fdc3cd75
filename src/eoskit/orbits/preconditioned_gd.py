"""Orbits and the reduction with a fixed diagonal preconditioner (docs/theory.md §6).

Preconditioned GD ``x' = x − η P⁻¹∇L(x)`` with a fixed positive diagonal
``P`` is plain GD on ``L̃(z) = L(P^{-1/2} z)`` in the variables ``z = P^{1/2} x``:
``∇L̃(z) = P^{-1/2}∇L(x)``, so ``z' = z − η∇L̃(z)`` is ``x' = x − ηP⁻¹∇L(x)``.
The same change of variables turns ``A_η^P(x, y) = L(x) + L(y) − |x − y|²_P/(2η)``
into the plain coupling of ``L̃``, and ``∇²L̃ = P^{-1/2} H P^{-1/2}``, whose
eigenvalues are those of ``P⁻¹H``. So every orbit tool runs unchanged on
:class:`PreconditionedObjective` (the objective in ``z``), and the results are
mapped back to ``x`` by :func:`orbit_to_x` and :func:`reduction_to_x`.

What stays in the ``P``-metric after mapping back (it is the natural one):
half-amplitudes are ``|x − y|_P/2``; eigenvalues, ``η_c = 2/λ₁(P⁻¹H)`` and
``Q`` are those of ``L̃``; the Floquet multipliers are invariant (the two-step
maps are conjugate). Points (``x``, ``y``, ``x*``) and directions (eigenvectors
of ``P⁻¹H``, not unit in the Euclidean norm but in ``|·|_P``) are in ``x``.

Example (``P`` rescales the coordinates: ``L = Σ cᵢ xᵢ²/2`` with ``P = diag(c)``
makes every direction critical at ``η = 2``):
    >>> import torch
    >>> from eoskit.objective import FunctionObjective
    >>> from eoskit.orbits import reduce_at_fixed_point
    >>> c = torch.tensor([1.0, 4.0], dtype=torch.float64)
    >>> obj = FunctionObjective(lambda x: (c * x * x).sum() / 2 + (x ** 4).sum(), 2)
    >>> pobj = PreconditionedObjective(obj, c)
    >>> red = reduce_at_fixed_point(pobj, pobj.to_z(torch.zeros(2, dtype=torch.float64)), k=1)
    >>> round(red.directions[0].eta_c, 12)
    2.0
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from eoskit.objective import Objective
from eoskit.orbits.orbit import OrbitResult
from eoskit.orbits.reduction import Reduction

__all__ = ["PreconditionedObjective", "check_preconditioner", "orbit_to_x", "reduction_to_x"]


def check_preconditioner(p, dim: int, *, dtype=torch.float64) -> Tensor:
    """``p`` as a 1-D tensor of length ``dim``, finite and positive, else ``ValueError``."""
    p = torch.as_tensor(p)
    if not (p.is_floating_point() or p.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"the preconditioner must hold real numbers, got dtype {p.dtype}")
    p = p.to(dtype)
    if p.ndim != 1:
        raise ValueError(f"the preconditioner must be a 1-D vector (the diagonal of P), got "
                         f"shape {tuple(p.shape)}")
    if p.numel() != dim:
        raise ValueError(f"the preconditioner has length {p.numel()} but the objective has "
                         f"dimension {dim}")
    if not torch.isfinite(p).all():
        raise ValueError("the preconditioner has non-finite entries")
    if not bool((p > 0).all()):
        bad = int((p <= 0).nonzero()[0])
        raise ValueError(f"the preconditioner must be positive (a diagonal P ≻ 0); entry {bad} "
                         f"is {float(p[bad]):g}")
    return p


class PreconditionedObjective(Objective):
    """``L̃(z) = L(P^{-1/2} z)`` for a fixed positive diagonal ``P`` (its diagonal ``p``).

    Every derivative (values, gradients, HVPs, ``d3``, ``d4``) follows from the
    base objective's terms through the change of variables, so nothing else
    needs to know about ``P``.
    """

    def __init__(self, base: Objective, p):
        super().__init__(base.hvp_method)
        self.base = base
        self.dim = base.dim
        self.dtype = base.dtype
        self.device = getattr(base, "device", torch.device("cpu"))
        self.p = check_preconditioner(p, base.dim, dtype=base.dtype).to(self.device)
        self.sqrt_p = self.p.sqrt()
        self.inv_sqrt_p = 1.0 / self.sqrt_p

    def terms(self):
        for term in self.base.terms():
            yield lambda z, term=term: term(z * self.inv_sqrt_p)

    def to_z(self, x: Tensor) -> Tensor:
        return x.to(self.dtype) * self.sqrt_p

    def to_x(self, z: Tensor) -> Tensor:
        return z * self.inv_sqrt_p


def orbit_to_x(res: OrbitResult, pobj: PreconditionedObjective) -> OrbitResult:
    """The orbit found in ``z`` with its points in ``x`` (amplitudes stay in ``|·|_P``)."""
    return dataclasses.replace(res, x=pobj.to_x(res.x), y=pobj.to_x(res.y))


def reduction_to_x(red: Reduction, pobj: PreconditionedObjective) -> Reduction:
    """The reduction found in ``z`` with ``x*``, directions and ``H⁺t`` in ``x``.

    The mapped :meth:`~Reduction.predicted_orbit` is then the predicted orbit of
    preconditioned GD in ``x`` (the prediction is affine in the direction and ``H⁺t``).
    """
    dirs = [dataclasses.replace(d, eigenvector=pobj.to_x(d.eigenvector),
                                h_pinv_t=pobj.to_x(d.h_pinv_t)) for d in red.directions]
    return dataclasses.replace(red, x_star=pobj.to_x(red.x_star), directions=dirs)

