"""Thick-restart Lanczos that keeps rows and no images: the top of ``B = P^{-1}H`` in the
``P`` inner product (``P = diag(p)``, or ``I`` for the raw Hessian).

Lanczos keeps the relation ``B W = W T + f bᵀ``: rows W (d, m), P-orthonormal; T = WᵀHW
(m, m), every entry a dot taken when its product was; f (d,), the P-unit direction the
next row takes; b (m,). A Ritz pair ``(θ, z = W s)`` then has the residual
``B z − θ z = f·(bᵀs)``, whose P-norm ``|bᵀs|`` needs no image, so each product's output
becomes the next direction in place and the basis holds ``m + 1`` d-long vectors where a
basis of rows and images holds ``2m`` (:class:`~eoskit.eigs.shared_basis.SharedBasis`). A
restart keeps Ritz vectors only (``W S``, ``Θ``, ``Sᵀb``: the relation survives, a
Krylov–Schur restart); any other kept vector would break it.

``B`` is self-adjoint in the P product, and its Ritz values are those of the
preconditioned Hessian ``A = P^{-1/2} H P^{-1/2}``: a row ``w`` is ``P^{-1/2} u`` for
``A``'s vector ``u`` (``‖u‖ = ‖w‖_P``, ``A u = P^{1/2} B w``). ``p`` is only ever sliced.

Example:
    >>> H = torch.diag(torch.tensor([4.0, 1.0, 0.5], dtype=torch.float64))
    >>> b = ThickLanczos(lambda v: H @ v, None)
    >>> b.begin(torch.ones(3, dtype=torch.float64)), [b.expand() for _ in range(3)]
    (True, [True, True, True])
    >>> values, S, resid = b.ritz()
    >>> [round(float(x), 6) for x in values], bool(resid.max() < 1e-8)
    ([4.0, 1.0, 0.5], True)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from eoskit.eigs.krylov import MatVec
from eoskit.eigs.shared_basis import (
    bordered,
    combine_in_place,
    orthonormalised,
    scale_by,
    weighted_dot,
    weighted_dots,
)


class ThickLanczos:
    """Rows, the projected matrix and the residual direction of one Lanczos search.

    ``hvp``: ``v ↦ H v``; ``p``: the preconditioner's diagonal (sliceable) or None;
    ``dtype``: the products' dtype (the rows are kept in the dtype they come in).
    """

    def __init__(self, hvp: MatVec, p, dtype=None):
        self.hvp, self.p, self.dtype = hvp, p, dtype
        self.rows: list[Tensor] = []
        self.T = torch.zeros(0, 0, dtype=torch.float64)
        self.b = torch.zeros(0, dtype=torch.float64)
        self.f: Tensor | None = None
        self.products = 0

    def __len__(self) -> int:
        return len(self.rows)

    def begin(self, v: Tensor) -> bool:
        """Take ``v`` (consumed) as the first direction; False if it is zero or not finite."""
        self.f, _ = self._orthonormal(v)
        return self.f is not None

    def expand(self, fallback: Tensor | None = None) -> bool:
        """One product: the direction ``f`` becomes a row and its image the next ``f``.

        ``fallback`` (consumed) replaces ``f`` where the search has none (the rows span an
        invariant subspace, or ``f`` turned dependent). False if neither gives a row."""
        w, self.f = self.f, None
        if w is not None:  # rounding: f drifts off the rows
            w, _ = self._orthonormal(w)
        if w is None and fallback is not None:
            w, _ = self._orthonormal(fallback)
        if w is None:
            return False
        y = self.hvp(w if self.dtype is None else w.to(self.dtype)).to(w.dtype)
        self.products += 1
        (col,) = weighted_dots([([*self.rows, w], y, 1)], None)  # [w_i·H w]
        self.T = bordered(self.T, torch.tensor(col, dtype=torch.float64))
        self.rows.append(w)
        if self.p is not None:
            scale_by(y, self.p, -1)  # B w = P^{-1} H w
        for c, r in zip(col, self.rows, strict=True):
            y.sub_(r, alpha=c)
        self.f, beta = self._orthonormal(y)
        self.b = torch.zeros(len(self.rows), dtype=torch.float64)
        self.b[-1] = beta  # tiny where f is None: the rows span an invariant subspace
        return True

    def ritz(self) -> tuple[np.ndarray, Tensor, np.ndarray]:
        """Ritz values (descending), their coefficients S (m, m) and residual P-norms."""
        th, S = torch.linalg.eigh(0.5 * (self.T + self.T.T))
        th, S = th.flip(0), S.flip(1)
        resid = (self.b @ S).abs()
        return th.numpy(), S, resid.numpy()

    def compress(self, S: Tensor) -> None:
        """Keep the Ritz vectors ``W S`` (S: orthonormal Ritz coefficients, (m, q)), in place."""
        self.rows = combine_in_place(self.rows, S)
        self.T = S.T @ self.T @ S
        self.b = S.T @ self.b

    def take_top(self, k: int, vectors: bool = False) -> tuple[list[Tensor] | None,
                                                                list[Tensor]]:
        """The top k Ritz vectors (copies, with ``vectors``) and the next starts: each Ritz
        vector advanced by one power step (``B z = θ z + (bᵀs) f``: no product), in ``A``'s
        own space and unit. The rows become the starts in place: the basis is spent."""
        th, S, _ = self.ritz()
        k = min(k, len(th))
        self.compress(S[:, :k])
        ritz = [self.own(r.clone()) for r in self.rows] if vectors else None
        starts = []
        for i, z in enumerate(self.rows):
            if self.f is not None:
                z.mul_(float(th[i])).add_(self.f, alpha=float(self.b[i]))
            starts.append(self.own(z))
        self.rows, self.f = [], None
        return ritz, starts

    def own(self, w: Tensor) -> Tensor:
        """A row-space vector in ``A``'s own space (``P^{1/2} w``), unit, in place."""
        if self.p is not None:
            scale_by(w, self.p, 0.5)
        n = weighted_dot(w, w, None) ** 0.5
        return w.div_(n) if n > 0 else w

    def _orthonormal(self, v: Tensor) -> tuple[Tensor | None, float]:
        """``v`` P-orthonormalised against the rows, in place, and the P-norm of its part
        off them (:func:`~eoskit.eigs.shared_basis.orthonormalised`)."""
        return orthonormalised(v, self.rows, self.p)

