"""The preconditioned Hessian as a symmetric product: ``v ↦ P^{-1/2} H (P^{-1/2} v)``.

For a diagonal ``P = diag(p)`` (an adaptive optimiser's ``√v̂ + ε``), the matrix
``P^{-1/2} H P^{-1/2}`` is symmetric and similar to ``P^{-1} H``, so Lanczos and the
warm-started trackers apply unchanged; its top eigenvalue is the *preconditioned
sharpness* that Adam's and RMSProp's thresholds are about (docs/theory.md §6).

Example:
    >>> import torch
    >>> H = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    >>> mv = preconditioned_matvec(lambda v: H @ v, torch.tensor([4.0, 0.25], dtype=torch.float64))
    >>> mv(torch.tensor([1.0, 1.0], dtype=torch.float64)).tolist()
    [1.0, 4.0]
"""

from __future__ import annotations

from torch import Tensor

from eoskit.eigs.krylov import MatVec


def preconditioned_matvec(matvec: MatVec, p: Tensor) -> MatVec:
    """``v ↦ P^{-1/2} H P^{-1/2} v`` for ``P = diag(p)``, ``p > 0`` (d,); ``v`` (d,) or (d, k)."""
    inv_root = p.detach().rsqrt()  # (d,)

    def product(v: Tensor) -> Tensor:
        scale = inv_root.to(v.dtype)
        scale = scale if v.ndim == 1 else scale[:, None]  # (d,) or (d, 1)
        return scale * matvec(scale * v)

    return product
