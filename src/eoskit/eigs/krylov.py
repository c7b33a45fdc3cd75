"""Basis arithmetic shared by the eigensolvers and the trackers.

Vectors of length d (bases, images, carried blocks) are kept in the *work
dtype* of the products (:func:`work_dtype`): float64 for float64 products,
float32 otherwise (float32 models, and half-precision ones, whose 3-digit
rounding would exceed the tolerances asked of the solvers). Only the small
projected problems (tridiagonal and Rayleigh–Ritz matrices, a few dozen rows)
are float64. Inner products are BLAS dots in the work dtype; Gram–Schmidt runs
twice where cancellation can occur. Norms are ``sqrt(v·v)``: ``Tensor.norm``
over ~10⁵ float32 entries loses ~10⁻⁶ relative, which used to cap float32
accuracy there. Blocks of vectors are (d, m) tensors whose columns are
contiguous in memory (a transposed row-major block), so ``Q @ w`` over the
columns is one gemv.

Example:
    >>> import torch
    >>> V = torch.tensor([[3.0, 6.0], [4.0, 8.0]], dtype=torch.float64)
    >>> orthonormal_columns(V)  # the second column is dependent: dropped
    tensor([[0.6000],
            [0.8000]], dtype=torch.float64)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

MatVec = Callable[[Tensor], Tensor]
CRITERIA = ("residual", "eigenvalue")


@dataclass
class EigResult:
    eigenvalues: np.ndarray  # (k,) float64, descending
    eigenvectors: Tensor  # (d, k), unit columns
    residuals: np.ndarray  # (k,) ‖Hv − θv‖ estimates
    n_matvecs: int
    converged: bool
    # extra Rayleigh-Ritz data (subspace_eigs; lanczos with keep): a few more top Ritz pairs in
    # the work dtype, with their images H·Y (subspace_eigs), so a caller can carry them (or a
    # power step H·Y) to the next point
    ritz_values: np.ndarray | None = None
    ritz_vectors: Tensor | None = None
    ritz_images: Tensor | None = None
    # (k,) estimates of |λ_i − θ_i| where the solver gives them (SharedTracker), else None
    error_estimates: np.ndarray | None = None

    def __iter__(self):
        # unpacks as (eigenvalues, eigenvectors)
        return iter((self.eigenvalues, self.eigenvectors))



def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype of the d-long work vectors for products in ``dtype``: float64 or float32.

    Example:
        >>> work_dtype(torch.bfloat16), work_dtype(torch.float64)
        (torch.float32, torch.float64)
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


# Below float64, sums over more elements than this are taken by slices added in float64: a
# float32 BLAS dot of 124M elements (GPT-2 small) is 4e-4 off, by 1M-element slices 4e-7. A
# float32 gemm sums its slices less accurately than a dot: 64K columns keep it at 3e-8.
# SLICE is also the shared basis's slice of an elementwise step (4 MB of float32).
SLICE, _GEMM_SLICE = 1 << 20, 1 << 16


def norm(v: Tensor) -> Tensor:
    """``sqrt(v·v)`` (0-dim, ``v``'s dtype), summed by slices in float64 past 1M float32
    elements (``Tensor.norm`` loses ~1e-6 relative already at 1e5)."""
    flat = v.reshape(-1)
    if flat.dtype == torch.float64 or flat.numel() <= SLICE:
        return torch.sqrt(flat @ flat)
    total = torch.zeros((), dtype=torch.float64, device=v.device)
    for part in flat.split(SLICE):
        total += (part @ part).double()
    return total.sqrt().to(v.dtype)


def dots(A: Tensor, B: Tensor) -> Tensor:
    """``A·Bᵀ`` in float64 for rows ``A`` (m, d) and rows ``B`` (n, d) or a vector (d,),
    summed by slices in float64 past 1M float32 columns (as :func:`norm`): the Gram and projected
    matrices of a 124M-parameter model are otherwise 4e-4 off, which floors residual norms
    near 2% of the values.

    Example:
        >>> dots(torch.ones(2, 3), torch.arange(3.0)).tolist()
        [3.0, 3.0]
    """
    def block(a, b):
        a, b = _blas_rows(a), _blas_rows(b)
        return (a @ b.T if b.ndim == 2 else a @ b).to(torch.float64)

    d = A.shape[-1]
    if A.dtype == torch.float64 or d <= SLICE:
        return block(A, B)
    out = block(A[:, :_GEMM_SLICE], B[..., :_GEMM_SLICE])
    for lo in range(_GEMM_SLICE, d, _GEMM_SLICE):
        out += block(A[:, lo:lo + _GEMM_SLICE], B[..., lo:lo + _GEMM_SLICE])
    return out


def _blas_rows(x: Tensor) -> Tensor:
    """``x`` with the strides BLAS expects. One row viewed off a (d, 1) column has strides
    (1, 1), and a product with it takes a path 60× slower in float32 (0.76 ms against 11 µs
    at d = 141K): it made the streaming tracker's every step 5% slower."""
    return x.reshape(1, -1) if x.ndim == 2 and x.shape[0] == 1 else x


def check_request(k: int, dim: int, criterion: str) -> None:
    if not 1 <= k <= dim:
        raise ValueError(f"k must be between 1 and the dimension {dim}, got {k}")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")


def start_vector(dim, v0, dtype, device, generator, noise):
    """Unit start vector in the work dtype: ``v0`` (its columns summed) plus ``noise`` random."""
    wd = work_dtype(dtype)
    # drawn on the CPU generator so a seed gives the same vector on every device
    rand = torch.randn(dim, dtype=wd, device="cpu", generator=generator).to(device)
    if v0 is None:
        return rand / norm(rand)
    v0 = v0.to(dtype=wd, device=device)
    if v0.ndim == 2:
        # one start vector holding every warm direction: each is then in the first Krylov space
        v0 = (v0 / v0.norm(dim=0, keepdim=True).clamp_min(1e-300)).sum(dim=1)
    v = v0 / norm(v0) + noise * rand / norm(rand)
    return v / norm(v)


def product(matvec: MatVec, q: Tensor, dtype) -> Tensor:
    """One product in the caller's ``dtype``, returned in ``q``'s (work) dtype."""
    return matvec(q.to(dtype)).to(q.dtype)


def images(matvec: MatVec, V: Tensor, dtype) -> Tensor:
    """``H·V`` for a (d, m) block, one product per column, columns contiguous, V's dtype."""
    if V.shape[1] == 1:
        return product(matvec, V[:, 0], dtype)[:, None]
    return torch.stack([product(matvec, V[:, i], dtype) for i in range(V.shape[1])], 0).T


def eigenvalue_bounds(theta: np.ndarray, resid: np.ndarray, upper: float | None = None,
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
        >>> eigenvalue_bounds(np.array([3.0, 1.0]), np.array([0.1, 0.2])).round(6).tolist()
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


def reorthogonalised(w: Tensor, Qj: Tensor) -> tuple[Tensor, float, float]:
    """``w`` minus its projection on the rows of ``Qj`` (j, d), with α = q_j·w and β = ‖w‖.

    Classical Gram-Schmidt with a second pass only when the first one cancelled
    much of ``w`` (the DGKS test, as in ARPACK).
    """
    n0 = norm(w)
    h = dots(Qj, w)  # (j,)
    a = float(h[-1])
    w = w - h.to(w.dtype) @ Qj
    b = norm(w)
    if b < 0.7071 * n0:
        w = w - dots(Qj, w).to(w.dtype) @ Qj
        b = norm(w)
    return w, a, float(b)


def grown(Q: Tensor, rows: int) -> Tensor:
    """The row-major basis with room for twice its rows (at most ``rows``)."""
    grow = min(Q.shape[0], rows - Q.shape[0])
    return torch.cat([Q, torch.empty(grow, Q.shape[1], dtype=Q.dtype, device=Q.device)], 0)


def fresh_direction(Qj: Tensor, gen: torch.Generator) -> Tensor:
    """A random unit vector orthogonal to the rows of ``Qj`` (two Gram-Schmidt passes)."""
    r = torch.randn(Qj.shape[1], dtype=Qj.dtype, generator=gen).to(Qj.device)
    for _ in range(2):
        r = r - dots(Qj, r).to(r.dtype) @ Qj
    return r / norm(r)


def orthonormal_columns(V: Tensor, basis: Tensor | None = None, drop: float = 1e-8) -> Tensor:
    """Columns of V made orthonormal (and orthogonal to ``basis``); near-dependent ones dropped.

    Gram-Schmidt, twice per column against ``basis`` and the columns kept so far
    (each pass one fused gemv pair); the result's columns are contiguous in memory.
    """
    rows = V.to(work_dtype(V.dtype)).reshape(V.shape[0], -1).T  # (m, d)
    B = None if basis is None or basis.shape[1] == 0 else basis.to(rows.dtype).T  # (p, d)
    kept: list[Tensor] = []
    for v in rows:
        n0 = norm(v)
        P = B if not kept else torch.stack(kept, 0) if B is None else torch.cat(
            [B, torch.stack(kept, 0)], 0)
        n = n0
        if P is not None:
            for _ in range(2):
                v = torch.addmv(v, P.T, dots(P, v).to(v.dtype), alpha=-1.0)
            n = norm(v)
        n, n0 = float(n), float(n0)
        if n > drop * n0 and n > 0:
            kept.append(v / n)
    if not kept:
        return rows.new_zeros((V.shape[0], 0))
    return kept[0][:, None] if len(kept) == 1 else torch.stack(kept, 0).T


def hcat(*blocks: Tensor) -> Tensor:
    """Columns side by side, each stored contiguously (a transposed row-major block)."""
    return torch.cat([b.T for b in blocks], 0).T
