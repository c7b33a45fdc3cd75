"""Basis arithmetic shared by the eigensolvers and the trackers.

Inner products and small dense algebra are float64 (``WORK``); norms are
``sqrt(v·v)``: ``Tensor.norm`` over ~10⁵ float32 entries loses ~10⁻⁶
relative, which used to cap float32 accuracy there. Blocks of vectors are
(d, m) tensors whose columns are contiguous in memory (a transposed row-major
block), so ``Q @ w`` over the columns is one gemv.

Example:
    >>> import torch
    >>> V = torch.tensor([[3.0, 6.0], [4.0, 8.0]], dtype=torch.float64)
    >>> _orthonormal_columns(V)  # the second column is dependent: dropped
    tensor([[0.6000],
            [0.8000]], dtype=torch.float64)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

MatVec = Callable[[Tensor], Tensor]
CRITERIA = ("residual", "eigenvalue")
WORK = torch.float64  # dtype of every Krylov basis and inner product


def _norm(v: Tensor) -> Tensor:
    # sqrt(v·v): Tensor.norm on large float32 vectors loses ~1e-6 relative; a dot does not
    return torch.sqrt(v @ v)


def _check_request(k: int, dim: int, criterion: str) -> None:
    if not 1 <= k <= dim:
        raise ValueError(f"k must be between 1 and the dimension {dim}, got {k}")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")


def _start_vector(dim, v0, dtype, device, generator, noise):
    rand = torch.randn(dim, dtype=WORK, device="cpu", generator=generator).to(device)
    if v0 is None:
        return rand / _norm(rand)
    v0 = v0.to(dtype=WORK, device=device)
    if v0.ndim == 2:
        # one start vector holding every warm direction: each is then in the first Krylov space
        v0 = (v0 / v0.norm(dim=0, keepdim=True).clamp_min(1e-300)).sum(dim=1)
    v = v0 / _norm(v0) + noise * rand / _norm(rand)
    return v / _norm(v)


def _apply(matvec: MatVec, q: Tensor, dtype) -> Tensor:
    """One product in the caller's dtype, returned in the working dtype."""
    return matvec(q.to(dtype)).to(WORK)


def _images(matvec: MatVec, V: Tensor, dtype) -> Tensor:
    """``H·V`` for a (d, m) block, one product per column, columns contiguous, working dtype."""
    if V.shape[1] == 1:
        return _apply(matvec, V[:, 0], dtype)[:, None]
    return torch.stack([_apply(matvec, V[:, i], dtype) for i in range(V.shape[1])], 0).T


def _basis_dtype(dtype: torch.dtype) -> torch.dtype:
    """Lanczos basis dtype: float64, except float32 for float32 products.

    With float64 scalars and ``sqrt(w·w)`` norms (never ``Tensor.norm``, which
    loses ~1e-6 relative on 10⁵ float32 entries), a float32 basis is as accurate
    as the float32 products themselves (~1e-7) at half the memory traffic.
    """
    return torch.float32 if dtype == torch.float32 else WORK


def _eigenvalue_bounds(theta: np.ndarray, resid: np.ndarray, upper: float | None = None,
                       gap_floor: float = 0.0) -> np.ndarray:
    """Error estimates for descending Ritz values: ``min(‖r_i‖, ‖r_i‖²/gap_i)``.

    ``gap_i = θ_i − (θ_{i+1} + e_{i+1})``: the next Ritz value raised by its own
    estimate, computed from the bottom up (the last value gets its residual).
    A poorly converged ``θ_{i+1}`` (which sits below its eigenvalue) then
    narrows the gap instead of widening it, so the estimate errs on the safe side.
    ``upper``: a known upper estimate of the first eigenvalue *not* represented
    (e.g. a carried λ_{k+1}); it caps every gap and gives the last value one.
    ``gap_floor``: eigenvalues closer than this to θ_i are treated as one cluster
    (an error that small is accepted), so the gap is at least ``gap_floor``.

    Example:
        >>> import numpy as np
        >>> _eigenvalue_bounds(np.array([3.0, 1.0]), np.array([0.1, 0.2])).round(6).tolist()
        [0.005556, 0.2]
    """
    m = len(theta)
    err = np.asarray(resid, dtype=float).copy()
    for i in range(m - 1, -1, -1):
        below = theta[i + 1] + err[i + 1] if i + 1 < m else -np.inf
        if upper is not None:
            below = max(below, upper)
        gap = max(theta[i] - below, gap_floor)
        if np.isfinite(gap) and gap > 0:
            err[i] = min(resid[i], resid[i] ** 2 / gap)
    return err


def _reorthogonalised(w: Tensor, Qj: Tensor) -> tuple[Tensor, float, float]:
    """``w`` minus its projection on the rows of ``Qj`` (j, d), with α = q_j·w and β = ‖w‖.

    Classical Gram-Schmidt with a second pass only when the first one cancelled
    much of ``w`` (the DGKS test, as in ARPACK).
    """
    n0 = _norm(w)
    h = Qj @ w  # (j,)
    a = float(h[-1])
    w = w - h @ Qj
    b = _norm(w)
    if b < 0.7071 * n0:
        w = w - (Qj @ w) @ Qj
        b = _norm(w)
    return w, a, float(b)


def _grown(Q: Tensor, rows: int) -> Tensor:
    """The row-major basis with room for twice its rows (at most ``rows``)."""
    grow = min(Q.shape[0], rows - Q.shape[0])
    return torch.cat([Q, torch.empty(grow, Q.shape[1], dtype=Q.dtype, device=Q.device)], 0)


def _fresh_direction(Qj: Tensor, gen: torch.Generator) -> Tensor:
    """A random unit vector orthogonal to the rows of ``Qj`` (two Gram-Schmidt passes)."""
    r = torch.randn(Qj.shape[1], dtype=WORK, generator=gen).to(device=Qj.device, dtype=Qj.dtype)
    r = r - (Qj @ r) @ Qj
    r = r - (Qj @ r) @ Qj
    return r / _norm(r)


def _orthonormal_columns(V: Tensor, basis: Tensor | None = None, drop: float = 1e-8) -> Tensor:
    """Columns of V made orthonormal (and orthogonal to ``basis``); near-dependent ones dropped.

    Gram-Schmidt, twice per column against ``basis`` and the columns kept so far
    (each pass one fused gemv pair); the result's columns are contiguous in memory.
    """
    rows = V.to(WORK).reshape(V.shape[0], -1).T  # (m, d)
    B = None if basis is None or basis.shape[1] == 0 else basis.to(WORK).T  # (p, d)
    kept: list[Tensor] = []
    for v in rows:
        n0 = _norm(v)
        P = B if not kept else torch.stack(kept, 0) if B is None else torch.cat(
            [B, torch.stack(kept, 0)], 0)
        n = n0
        if P is not None:
            for _ in range(2):
                v = torch.addmv(v, P.T, P @ v, alpha=-1.0)
            n = _norm(v)
        n, n0 = float(n), float(n0)
        if n > drop * n0 and n > 0:
            kept.append(v / n)
    if not kept:
        return rows.new_zeros((V.shape[0], 0))
    return kept[0][:, None] if len(kept) == 1 else torch.stack(kept, 0).T


def _hcat(*blocks: Tensor) -> Tensor:
    """Columns side by side, each stored contiguously (a transposed row-major block)."""
    return torch.cat([b.T for b in blocks], 0).T
