"""Top-k *algebraic* Hessian eigenvalues from Hessian-vector products.

Sharpness is the largest algebraic eigenvalue, never the largest in
magnitude: early in training the largest-magnitude eigenvalue can be
negative, and a ``which='LM'`` solver then reports the wrong number.

:func:`lanczos` is Lanczos with full reorthogonalisation, started from a
warm vector (the previous step's eigenvectors) when one is given. It stops
when every wanted Ritz pair meets ``‖Hv − θv‖ ≤ tol·|θ|``
(``criterion='residual'``) or, for ``criterion='eigenvalue'``, when the
a-posteriori eigenvalue bound ``‖r‖²/gap`` meets ``tol·|θ|``; the gap is taken
from the next Ritz value *plus that value's own error estimate*
(:func:`~eoskit.eigs.krylov._eigenvalue_bounds`), so an unconverged second
Ritz value cannot fake a wide gap.

Tridiagonal and Rayleigh–Ritz arithmetic is float64. The Lanczos basis is
float32 for float32 products (row-major, one Gram–Schmidt pass plus a second
only when needed), float64 otherwise; the small warm-start blocks are float64.

:func:`subspace_eigs` is the warm-start solver used for tracking: it starts
from a *block* of carried vectors (the previous step's top Ritz vectors),
keeps their exact images, and expands by residuals (Rayleigh–Ritz each step;
from one vector this is Lanczos).

Example:
    >>> import torch
    >>> A = torch.diag(torch.tensor([-5.0, 1.0, 2.0, 3.0], dtype=torch.float64))
    >>> res = lanczos(lambda v: A @ v, dim=4, k=2, tol=1e-10)
    >>> [round(float(e), 8) for e in res.eigenvalues]
    [3.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from eoskit._threads import limit_blas_threads
from eoskit.eigs.krylov import (
    WORK,
    MatVec,
    _apply,
    _basis_dtype,
    _check_request,
    _eigenvalue_bounds,
    _fresh_direction,
    _grown,
    _orthonormal_columns,
    _reorthogonalised,
    _start_vector,
)
from eoskit.objective import FunctionObjective, Objective


@dataclass
class EigResult:
    eigenvalues: np.ndarray  # (k,) float64, descending
    eigenvectors: Tensor  # (d, k), unit columns
    residuals: np.ndarray  # (k,) ‖Hv − θv‖ estimates
    n_matvecs: int
    converged: bool
    # extra Rayleigh-Ritz data (subspace_eigs only): a few more top Ritz pairs, float64,
    # with their images H·Y, so a caller can carry them (or a power step H·Y) to the next point
    ritz_values: np.ndarray | None = None
    ritz_vectors: Tensor | None = None
    ritz_images: Tensor | None = None

    def __iter__(self):
        # unpacks as (eigenvalues, eigenvectors)
        return iter((self.eigenvalues, self.eigenvectors))


# ---------------------------------------------------------------- Lanczos
def lanczos(
    matvec: MatVec,
    dim: int,
    k: int = 1,
    *,
    tol: float = 1e-6,
    v0: Tensor | None = None,
    max_iter: int | None = None,
    criterion: str = "residual",
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    seed: int = 0,
    warm_noise: float = 0.0,
    min_iter: int = 1,
    keep: int | None = None,
) -> EigResult:
    """Top-k algebraic eigenpairs of a symmetric operator by Lanczos (full reorthogonalisation).

    ``v0``: warm start, (d,) or (d, m); a small random component (``warm_noise``)
    is added so the Krylov space cannot collapse onto an exact eigenvector.
    ``dtype`` is the dtype of the vectors handed to ``matvec`` and of the
    returned eigenvectors (and of the basis, see
    :func:`~eoskit.eigs.krylov._basis_dtype`). ``keep`` (> k): also return that
    many top Ritz pairs (converged or not) in ``ritz_values``/``ritz_vectors``,
    e.g. to seed a warm block.
    """
    _check_request(k, dim, criterion)
    limit_blas_threads()
    device = torch.device(device)
    max_iter = min(dim, max_iter or max(300, 4 * k))
    gen = torch.Generator().manual_seed(seed)
    bdt = _basis_dtype(dtype)
    # the basis is stored row by row (contiguous vectors: Q[:j] @ w is one gemv)
    Q = torch.empty(min(max_iter + 1, 64), dim, dtype=bdt, device=device)  # grows by doubling
    Q[0] = _start_vector(dim, v0, dtype, device, gen, warm_noise).to(bdt)
    alpha: list[float] = []
    beta: list[float] = []
    converged = False
    for j in range(max_iter):
        w, a, b = _reorthogonalised(matvec(Q[j].to(dtype)).to(bdt), Q[: j + 1])
        alpha.append(a)
        theta, S, resid = _tridiagonal_ritz(alpha, beta, b)
        if len(theta) >= k and j + 1 >= min_iter and _meets(theta, resid, k, tol, criterion):
            converged = True
            break
        if j + 1 == max_iter:
            break
        if j + 1 >= Q.shape[0]:
            Q = _grown(Q, max_iter + 1)
        if b <= 1e-12 * max(1.0, float(np.max(np.abs(theta)))):
            # exact invariant subspace: continue in a fresh random direction (decoupled block)
            Q[j + 1] = _fresh_direction(Q[: j + 1], gen)
            beta.append(0.0)
        else:
            Q[j + 1] = w / b
            beta.append(b)
    n_mv = len(alpha)  # one product per Lanczos step
    return _lanczos_result(theta, S, resid, Q[:n_mv], k, keep, dtype, converged)


def _tridiagonal_ritz(alpha: list[float], beta: list[float], b: float):
    """Descending Ritz values θ, their (j, j) coefficient vectors S and residuals |β·S[-1]|."""
    theta, S = scipy.linalg.eigh_tridiagonal(np.array(alpha), np.array(beta), lapack_driver="stev")
    order = np.argsort(theta)[::-1]
    theta, S = theta[order], S[:, order]
    return theta, S, np.abs(b * S[-1, :])


def _meets(theta: np.ndarray, resid: np.ndarray, k: int, tol: float, criterion: str) -> bool:
    """Every wanted Ritz pair meets ``err ≤ tol·|θ|`` for the criterion."""
    m = min(k, len(theta))
    scale = np.maximum(np.abs(theta[:m]), np.finfo(float).tiny)
    err = resid[:m] if criterion == "residual" else _eigenvalue_bounds(theta, resid)[:m]
    return bool(np.all(err <= tol * scale))


def _lanczos_result(theta, S, resid, Q: Tensor, k: int, keep: int | None, dtype,
                    converged: bool) -> EigResult:
    """Ritz vectors from the (n, d) basis ``Q``: the top k, and ``keep`` pairs if asked."""
    m = min(k, len(theta))
    mk = min(max(m, keep or 0), len(theta))
    Sk = torch.as_tensor(S[:, :mk].T.copy(), dtype=Q.dtype, device=Q.device)
    vecs = (Sk @ Q).T  # (d, mk)
    vecs = vecs / torch.sqrt((vecs * vecs).sum(dim=0, keepdim=True))
    out = EigResult(theta[:m].copy(), vecs[:, :m].to(dtype), resid[:m].copy(), Q.shape[0],
                    converged)
    if keep:
        out.ritz_values, out.ritz_vectors = theta[:mk].copy(), vecs.to(WORK)
    return out


# ---------------------------------------------------------------- block Rayleigh-Ritz
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
    ``gap_floor`` see :func:`~eoskit.eigs.krylov._eigenvalue_bounds`.

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
    _check_request(k, dim, criterion)
    limit_blas_threads()
    device = torch.device(device)
    max_iter = min(dim, max_iter or 40)
    keep = min(dim, keep or k + 1)
    gen = torch.Generator().manual_seed(seed)

    def rand() -> Tensor:
        return torch.randn(dim, 1, dtype=WORK, generator=gen).to(device)

    # the basis Q and its images W are stored as rows (m, d): contiguous vectors
    Q, W, n_mv = _start_block(matvec, dim, v0, w0, dtype, device, max_iter, rand)
    while True:
        th, Y, HY, R, resid = _ritz_block(Q, W, max(keep, k + 2))
        m, p = Q.shape[0], Y.shape[0]
        kk = min(k, m)
        scale = np.maximum(np.abs(th[:kk]), np.finfo(float).tiny)
        if criterion == "residual":
            err = resid[:kk]
        else:
            err = _eigenvalue_bounds(th[:p], resid, upper, gap_floor)[:kk]
        done = m >= k and bool(np.all(err <= tol * scale))
        if done or n_mv >= max_iter:
            break
        q = _expansion(R, resid, err, tol, scale, criterion, Q, rand)
        if q is None:
            break
        Q = torch.cat([Q, q[None]], 0)
        W = torch.cat([W, _apply(matvec, q, dtype)[None]], 0)
        n_mv += 1
    keep = min(keep, p)
    return EigResult(th[:kk].copy(), Y[:kk].T.to(dtype), resid[:kk].copy(), n_mv, done,
                     ritz_values=th[:keep].copy(), ritz_vectors=Y[:keep].T,
                     ritz_images=HY[:keep].T)


def _start_block(matvec, dim, v0, w0, dtype, device, max_iter, rand):
    """The first rows (m, d) of the basis and of its images, and the products they cost."""
    if w0 is not None:
        Q = v0.to(device=device, dtype=WORK).reshape(dim, -1).T.contiguous()
        W = w0.to(device=device, dtype=WORK).reshape(dim, -1).T.contiguous()
        return Q, W, 0
    B = _orthonormal_columns(v0.to(device).reshape(dim, -1)) if v0 is not None else None
    if B is None or B.shape[1] == 0:
        B = _orthonormal_columns(rand())
    Q = B[:, :max_iter].T.contiguous()
    W = torch.stack([_apply(matvec, q, dtype) for q in Q], 0)
    return Q, W, Q.shape[0]


def _ritz_block(Q: Tensor, W: Tensor, p_max: int):
    """Rayleigh–Ritz on the rows of Q (m, d) with images W: the top p ≤ p_max pairs.

    Returns all m Ritz values (descending, numpy), the Ritz vectors Y (p, d), their
    images HY (p, d), residuals R = HY − θY (p, d) and their norms (p,).
    """
    G = Q @ W.T
    G = 0.5 * (G + G.T)
    theta, S = torch.linalg.eigh(G)
    theta, S = theta.flip(0), S.flip(1)
    p = min(Q.shape[0], p_max)
    St = S[:, :p].T.contiguous()
    Y = St @ Q  # (p, d) Ritz vectors as rows
    HY = St @ W
    R = HY - theta[:p, None] * Y
    resid = torch.sqrt((R * R).sum(1)).cpu().numpy()
    return theta.cpu().numpy(), Y, HY, R, resid


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
    new = _orthonormal_columns(R[i], Q.T, drop=1e-10)
    if new.shape[1] == 0:
        new = _orthonormal_columns(rand(), Q.T)
        if new.shape[1] == 0:
            return None
    return new[:, 0]


# ---------------------------------------------------------------- SciPy LOBPCG
def lobpcg(
    matvec: MatVec,
    dim: int,
    k: int = 1,
    *,
    tol: float = 1e-6,
    v0: Tensor | None = None,
    max_iter: int | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> EigResult:
    """Top-k algebraic eigenpairs by SciPy's LOBPCG (block, warm-startable)."""
    import scipy.sparse.linalg as sla

    limit_blas_threads()
    device = torch.device(device)
    n_mv = 0

    def apply(block: np.ndarray) -> np.ndarray:
        nonlocal n_mv
        block = block.reshape(dim, -1)
        n_mv += block.shape[1]
        V = torch.as_tensor(block, dtype=dtype, device=device)
        return torch.stack([matvec(V[:, i]) for i in range(V.shape[1])], 1).cpu().double().numpy()

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((dim, k))
    if v0 is not None:
        w = v0.reshape(dim, -1).detach().cpu().double().numpy()
        X[:, : min(k, w.shape[1])] = w[:, :k] + 1e-3 * X[:, : min(k, w.shape[1])]
    op = sla.LinearOperator((dim, dim), matvec=apply, matmat=apply, dtype=np.float64)
    vals, vecs = sla.lobpcg(op, X, largest=True, tol=tol, maxiter=max_iter or 200)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    V = torch.as_tensor(vecs, dtype=dtype, device=device)
    resid = np.array(
        [float((matvec(V[:, i]) - vals[i] * V[:, i]).norm()) for i in range(k)]
    )
    return EigResult(vals, V, resid, n_mv + k, bool(np.all(resid <= tol * np.abs(vals) * 10)))


SOLVERS = {"lanczos": lanczos, "lobpcg": lobpcg, "subspace": subspace_eigs}


# ---------------------------------------------------------------- at a point of an objective
def top_eigenpairs(
    objective: Objective,
    x: Tensor,
    k: int = 1,
    *,
    tol: float = 1e-6,
    v0: Tensor | None = None,
    method: str = "lanczos",
    **kwargs,
) -> EigResult:
    """Top-k algebraic eigenpairs of the objective's Hessian at ``x``."""
    if method not in SOLVERS:
        raise ValueError(f"method must be one of {tuple(SOLVERS)}, got {method!r}")
    x = x.detach()
    with objective.at(x) as point:
        return SOLVERS[method](
            point.hvp, x.numel(), k, tol=tol, v0=v0, dtype=x.dtype, device=x.device, **kwargs
        )


def hessian_eigs(
    f: Callable[[Tensor], Tensor] | Objective,
    x: Tensor,
    k: int = 1,
    tol: float = 1e-8,
    **kwargs,
) -> tuple[np.ndarray, Tensor]:
    """Top-k algebraic eigenvalues (descending) and unit eigenvectors (d, k) of ∇²f(x).

    ``f`` is any callable mapping a 1-D tensor to a scalar tensor, or an
    :class:`~eoskit.objective.Objective`.

    Example:
        >>> import torch
        >>> f = lambda x: x[0] ** 2 - 3 * x[1] ** 2 + x[0] * x[2]
        >>> vals, vecs = hessian_eigs(f, torch.zeros(3, dtype=torch.float64), k=2)
        >>> [round(float(v), 6) for v in vals]
        [2.414214, -0.414214]
    """
    obj = f if isinstance(f, Objective) else FunctionObjective(
        f, x.numel(), dtype=x.dtype, device=x.device
    )
    res = top_eigenpairs(obj, x, k, tol=tol, **kwargs)
    return res.eigenvalues, res.eigenvectors
