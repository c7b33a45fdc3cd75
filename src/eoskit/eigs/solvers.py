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
(:func:`~eoskit.eigs.krylov.eigenvalue_bounds`), so an unconverged second
Ritz value cannot fake a wide gap.

Tridiagonal and Rayleigh–Ritz arithmetic is float64; every d-long vector is in
the work dtype (:func:`~eoskit.eigs.krylov.work_dtype`: float32 unless the
products are float64). The Lanczos basis is row-major, one Gram–Schmidt pass
plus a second only when needed. ``max_basis`` bounds the d-long vectors a
solve keeps: a full basis is compressed to its top Ritz vectors and their
images (a thick restart, which costs no product).

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

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from eoskit._threads import limit_blas_threads
from eoskit.eigs.krylov import (
    EigResult,
    MatVec,
    check_request,
    eigenvalue_bounds,
    fresh_direction,
    grown,
    reorthogonalised,
    start_vector,
    work_dtype,
)
from eoskit.eigs.subspace import basis_rows, subspace_eigs
from eoskit.objective import FunctionObjective, Objective


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
    max_basis: int | None = None,
) -> EigResult:
    """Top-k algebraic eigenpairs of a symmetric operator by Lanczos (full reorthogonalisation).

    ``v0``: warm start, (d,) or (d, m); a small random component (``warm_noise``)
    is added so the Krylov space cannot collapse onto an exact eigenvector.
    ``dtype`` is the dtype of the vectors handed to ``matvec`` and of the
    returned eigenvectors (the basis is in :func:`~eoskit.eigs.krylov.work_dtype`).
    ``keep`` (> k): also return that many top Ritz pairs (converged or not) in
    ``ritz_values``/``ritz_vectors``, e.g. to seed a warm block. ``max_basis``
    (≥ k + 3): at most that many basis vectors; a full basis hands its top Ritz
    pairs with their images (known without products) to :func:`subspace_eigs`,
    which goes on with thick restarts under the same bound.
    """
    check_request(k, dim, criterion)
    limit_blas_threads()
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    bdt = work_dtype(dtype)
    cap = basis_rows(max_basis, k)
    max_iter = max_iter or max(300, 4 * k)
    if cap is None or cap >= dim:
        # dim products span the whole space only in a basis that is never restarted
        max_iter = min(dim, max_iter)
    rows = max_iter + 1 if cap is None else min(max_iter + 1, cap)
    # the basis is stored row by row (contiguous vectors: Q[:j] @ w is one gemv)
    Q = torch.empty(min(rows, 64), dim, dtype=bdt, device=device)  # grows by doubling
    Q[0] = start_vector(dim, v0, dtype, device, gen, warm_noise).to(bdt)
    alpha: list[float] = []
    beta: list[float] = []
    converged = False
    for j in range(max_iter):
        w, a, b = reorthogonalised(matvec(Q[j].to(dtype)).to(bdt), Q[: j + 1])
        alpha.append(a)
        theta, S, resid = _tridiagonal_ritz(alpha, beta, b)
        if len(theta) >= k and j + 1 >= min_iter and _meets(theta, resid, k, tol, criterion):
            converged = True
            break
        if j + 1 == max_iter:
            break
        if j + 1 == rows:
            # the basis is full: go on restarted from its Ritz pairs (keeps the products made)
            Y, HY = _ritz_pairs(theta, S, Q[: j + 1], w, max(k + 1, min(k + 2, rows - 2)))
            del Q, w
            res = subspace_eigs(matvec, dim, k, tol=tol, v0=Y.T, w0=HY.T, keep=keep or k,
                                max_iter=max_iter - j - 1, criterion=criterion, dtype=dtype,
                                device=device, seed=seed + 1, max_basis=cap)
            res.n_matvecs += j + 1
            return res
        if j + 1 >= Q.shape[0]:
            Q = grown(Q, rows)
        if b <= 1e-12 * max(1.0, float(np.max(np.abs(theta)))):
            # exact invariant subspace: continue in a fresh random direction (decoupled block)
            Q[j + 1] = fresh_direction(Q[: j + 1], gen)
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
    err = resid[:m] if criterion == "residual" else eigenvalue_bounds(theta, resid)[:m]
    return bool(np.all(err <= tol * scale))


def _ritz_pairs(theta, S, Q: Tensor, w: Tensor, p: int) -> tuple[Tensor, Tensor]:
    """The top p Ritz vectors of the Lanczos basis Q (j, d) and their images, as rows.

    No product: H·Q = Q·T + w·e_jᵀ for the unnormalised next Lanczos vector w,
    so H·(Q s) = θ·(Q s) + s_j·w.
    """
    p = min(p, len(theta))
    St = torch.as_tensor(S[:, :p].T.copy(), dtype=Q.dtype, device=Q.device)
    Y = St @ Q  # (p, d)
    HY = Y * torch.as_tensor(theta[:p, None], dtype=Q.dtype, device=Q.device)
    HY.addr_(St[:, -1], w)
    return Y, HY


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
        out.ritz_values, out.ritz_vectors = theta[:mk].copy(), vecs
    return out


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
