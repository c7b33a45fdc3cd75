"""Block Rayleigh–Ritz from a warm start, grown by residuals, within a bound on its basis.

:func:`subspace_eigs` is the warm-start solver used for tracking: it starts
from a *block* of carried vectors (the previous step's top Ritz vectors),
keeps their exact images, and expands by residuals (Rayleigh–Ritz each step;
from one vector this is Lanczos). Basis and images are d-long rows in the work
dtype (:func:`~eoskit.eigs.krylov.work_dtype`); the projected matrix is
float64. With ``max_basis`` a full basis is compressed to its top Ritz
vectors and their images (a thick restart: no product is repeated).

Example:
    >>> import torch
    >>> A = torch.diag(torch.arange(1.0, 51.0, dtype=torch.float64))
    >>> res = subspace_eigs(lambda v: A @ v, 50, 1, tol=1e-10, max_basis=6, max_iter=200)
    >>> round(float(res.eigenvalues[0]), 8)
    50.0
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from eoskit._threads import limit_blas_threads
from eoskit.eigs.krylov import (
    EigResult,
    MatVec,
    check_request,
    dots,
    eigenvalue_bounds,
    grown,
    norm,
    orthonormal_columns,
    product,
    work_dtype,
)


def basis_rows(max_basis: int | None, k: int) -> int | None:
    """The basis bound checked: room for the k wanted pairs, one more and an expansion."""
    if max_basis is not None and max_basis < k + 3:
        raise ValueError(f"max_basis must be at least k + 3 = {k + 3}, got {max_basis}")
    return max_basis


def subspace_eigs(
    matvec: MatVec,
    dim: int,
    k: int = 1,
    *,
    tol: float = 1e-6,
    v0: Tensor | None = None,
    max_iter: int | None = None,
    criterion: str = "eigenvalue",
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    seed: int = 0,
    keep: int | None = None,
    w0: Tensor | None = None,
    upper: float | None = None,
    gap_floor: float = 0.0,
    max_basis: int | None = None,
) -> EigResult:
    """Top-k algebraic eigenpairs by Rayleigh–Ritz on a block warm start grown by residuals.

    ``v0`` (d,) or (d, p): start block, typically the previous point's top ``k+1`` Ritz
    vectors; each costs one product. Each further product is applied to the
    residual of the first unconverged wanted Ritz pair (from a single start
    vector this spans the Lanczos space). Carrying the second vector too means
    the gap to λ_{k+1} is resolved from the first products, so the eigenvalue
    criterion stops early *and* safely, even when λ₁ and λ₂ nearly cross.
    ``max_iter`` bounds the number of products (default 40). ``keep`` Ritz
    pairs (default ``k+1``) are returned in ``ritz_*`` with their images.
    ``w0``: the products ``H·v0`` if already known (then they cost nothing; ``v0``
    must then be orthonormal). ``upper``: an upper estimate of the first
    eigenvalue outside the wanted ones, for the eigenvalue criterion;
    ``gap_floor`` see :func:`~eoskit.eigs.krylov.eigenvalue_bounds`.
    ``max_basis`` (≥ k + 3): at most that many basis vectors (and as many
    images); a full basis restarts from its top ``max(keep, k + 2)`` Ritz pairs.

    Example:
        >>> import torch
        >>> A = torch.diag(torch.arange(1.0, 51.0, dtype=torch.float64))
        >>> cold = subspace_eigs(lambda v: A @ v, 50, 1, tol=1e-10)
        >>> round(float(cold.eigenvalues[0]), 8)
        50.0
        >>> warm = subspace_eigs(lambda v: A @ v, 50, 1, tol=1e-10, v0=cold.ritz_vectors)
        >>> warm.n_matvecs < cold.n_matvecs
        True
    """
    check_request(k, dim, criterion)
    limit_blas_threads()
    device = torch.device(device)
    keep = min(dim, keep or k + 1)
    p_max = max(keep, k + 2)
    cap = basis_rows(max_basis, k)
    max_iter = max_iter or 40
    if cap is None or cap >= dim:
        # dim products span the whole space only in a basis that is never restarted
        max_iter = min(dim, max_iter)
    wd = work_dtype(dtype)
    gen = torch.Generator().manual_seed(seed)

    def rand() -> Tensor:
        return torch.randn(dim, 1, dtype=wd, generator=gen).to(device)

    # the basis Q and its images W are stored as rows (m, d): contiguous vectors
    Q, W, m, n_mv = _start_block(matvec, dim, v0, w0, dtype, device, max_iter, cap, rand)
    rows = m + max_iter if cap is None else cap
    while True:
        th, S, Y, R, resid = _ritz_block(Q[:m], W[:m], p_max)
        p = Y.shape[0]
        kk = min(k, m)
        scale = np.maximum(np.abs(th[:kk]), np.finfo(float).tiny)
        if criterion == "residual":
            err = resid[:kk]
        else:
            err = eigenvalue_bounds(th[:p], resid, upper, gap_floor)[:kk]
        done = m >= k and bool(np.all(err <= tol * scale))
        if done or n_mv >= max_iter:
            break
        q = _expansion(R, resid, err, tol, scale, criterion, Q[:m], rand)
        del R
        if q is None:
            break
        if m == rows == cap:
            # the basis is full: keep the top Ritz vectors and their images (exact, no product)
            Q, W, m = _thick_restart(Q, W, m, S, Y, k)
        del Y  # before the next Rayleigh-Ritz makes its own: one (p, d) block alive, not two
        if m == Q.shape[0]:
            Q, W = grown(Q, rows), grown(W, rows)
        Q[m] = q
        W[m] = product(matvec, q, dtype)
        m, n_mv = m + 1, n_mv + 1
    keep = min(keep, p)
    HY = _combined(S[:, :keep], W[:m])  # the images of the kept Ritz vectors, no product
    return EigResult(th[:kk].copy(), Y[:kk].T.to(dtype), resid[:kk].copy(), n_mv, done,
                     ritz_values=th[:keep].copy(), ritz_vectors=Y[:keep].T, ritz_images=HY.T)


def _start_block(matvec, dim, v0, w0, dtype, device, max_iter, cap, rand):
    """Buffers for the basis rows and their images, filled with the start block.

    Returns ``(Q, W, m, products)``: ``m`` rows are in use.
    """
    wd = work_dtype(dtype)
    if w0 is not None:
        B, HB = v0.reshape(dim, -1), w0.reshape(dim, -1)
    else:
        B = orthonormal_columns(v0.to(device).reshape(dim, -1)) if v0 is not None else None
        if B is None or B.shape[1] == 0:
            B = orthonormal_columns(rand())
        B, HB = B[:, :max_iter], None
    m = B.shape[1] if cap is None else min(B.shape[1], cap - 1)
    rows = min(m + max_iter, 2 * m + 4) if cap is None else min(cap, m + max_iter)
    Q = torch.empty(rows, dim, dtype=wd, device=device)
    W = torch.empty(rows, dim, dtype=wd, device=device)
    Q[:m] = B[:, :m].T
    if HB is not None:
        W[:m] = HB[:, :m].T
        return Q, W, m, 0
    for i in range(m):
        W[i] = product(matvec, Q[i], dtype)
    return Q, W, m, m


def _combined(St: Tensor, rows: Tensor) -> Tensor:
    """``Sᵀ·rows`` for float64 coefficients S (m, p) and rows (m, d): (p, d), rows' dtype."""
    return St.T.to(rows.dtype) @ rows


def _ritz_block(Q: Tensor, W: Tensor, p_max: int):
    """Rayleigh–Ritz on the rows of Q (m, d) with images W: the top p ≤ p_max pairs.

    Returns all m Ritz values (descending, numpy), their float64 coefficients S
    (m, m), the Ritz vectors Y (p, d), residuals R = HY − θY (p, d) and their
    norms (p,). The projected matrix sums work-dtype slices in float64 (:func:`dots`) and
    is solved in float64.
    """
    G = dots(Q, W)
    G = 0.5 * (G + G.T)
    theta, S = torch.linalg.eigh(G)
    theta, S = theta.flip(0), S.flip(1)
    p = min(Q.shape[0], p_max)
    Y = _combined(S[:, :p], Q)  # (p, d) Ritz vectors as rows
    R = _combined(S[:, :p], W)
    for i in range(p):  # in place: R = HY − θY without another (p, d) block
        R[i].sub_(Y[i], alpha=float(theta[i]))
    resid = np.array([float(norm(r)) for r in R])
    return theta.cpu().numpy(), S, Y, R, resid


def _thick_restart(Q: Tensor, W: Tensor, m: int, S: Tensor, Y: Tensor, k: int):
    """Compress a full basis (m rows) to its top Ritz pairs, leaving rows to expand into.

    Keeps ``k + 2`` pairs where that leaves two free rows, else ``k + 1``. The
    next vector is orthogonal to the old basis, hence to the Ritz vectors kept.
    """
    r = min(Y.shape[0], max(k + 1, m - 2))
    HY = _combined(S[:, :r], W[:m])
    Q[:r], W[:r] = Y[:r], HY
    return Q, W, r


def _expansion(R, resid, err, tol, scale, criterion, Q, rand) -> Tensor | None:
    """The next basis vector (d,): a residual orthogonalised against Q; None if none is left.

    The residual of the first unconverged wanted pair, or of the pair below it
    when that one's larger residual is what keeps the gap (and the bound) small.
    """
    kk, p = len(err), R.shape[0]
    bad = [i for i in range(kk) if err[i] > tol * scale[i]] or [kk if kk < p else 0]
    i = bad[0]
    if criterion == "eigenvalue" and i + 1 < p and resid[i + 1] > resid[i]:
        i += 1
    new = orthonormal_columns(R[i], Q.T, drop=1e-10)
    if new.shape[1] == 0:
        new = orthonormal_columns(rand(), Q.T)
        if new.shape[1] == 0:
            return None
    return new[:, 0]
