"""Top-k *algebraic* Hessian eigenvalues from Hessian-vector products.

Sharpness is the largest algebraic eigenvalue, never the largest in
magnitude: early in training the largest-magnitude eigenvalue can be
negative, and a ``which='LM'`` solver then reports the wrong number.

The solver is Lanczos with full reorthogonalisation, started from a warm
vector (the previous step's eigenvectors) when one is given. It stops when
every wanted Ritz pair meets ``‖Hv − θv‖ ≤ tol·|θ|`` (``criterion='residual'``)
or, for ``criterion='eigenvalue'``, when the a-posteriori eigenvalue bound
``‖r‖²/gap`` (gap from the next Ritz value) meets ``tol·|θ|``.

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
from eoskit.objective import FunctionObjective, Objective

MatVec = Callable[[Tensor], Tensor]
CRITERIA = ("residual", "eigenvalue")


@dataclass
class EigResult:
    eigenvalues: np.ndarray  # (k,) float64, descending
    eigenvectors: Tensor  # (d, k), unit columns
    residuals: np.ndarray  # (k,) ‖Hv − θv‖ estimates
    n_matvecs: int
    converged: bool

    def __iter__(self):
        # unpacks as (eigenvalues, eigenvectors)
        return iter((self.eigenvalues, self.eigenvectors))


def _start_vector(dim, v0, dtype, device, generator, noise):
    rand = torch.randn(dim, dtype=dtype, device="cpu", generator=generator).to(device)
    if v0 is None:
        return rand / rand.norm()
    v0 = v0.to(dtype=dtype, device=device)
    if v0.ndim == 2:
        # one start vector holding every warm direction: each is then in the first Krylov space
        v0 = (v0 / v0.norm(dim=0, keepdim=True).clamp_min(1e-300)).sum(dim=1)
    v = v0 / v0.norm() + noise * rand / rand.norm()
    return v / v.norm()


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
) -> EigResult:
    """Top-k algebraic eigenpairs of a symmetric operator by Lanczos (full reorthogonalisation).

    ``v0``: warm start, (d,) or (d, m); a small random component (``warm_noise``)
    is added so the Krylov space cannot collapse onto an exact eigenvector.
    """
    if not 1 <= k <= dim:
        raise ValueError(f"k must be between 1 and the dimension {dim}, got {k}")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    limit_blas_threads()
    device = torch.device(device)
    max_iter = min(dim, max_iter or max(300, 4 * k))
    gen = torch.Generator().manual_seed(seed)
    Q = torch.empty(dim, min(max_iter + 1, 64), dtype=dtype, device=device)  # grows by doubling
    Q[:, 0] = _start_vector(dim, v0, dtype, device, gen, warm_noise)
    alpha: list[float] = []
    beta: list[float] = []
    n_mv = 0
    theta = resid = S = None
    converged = False
    for j in range(max_iter):
        w = matvec(Q[:, j])
        n_mv += 1
        a = float(Q[:, j] @ w)
        Qj = Q[:, : j + 1]
        # two passes of classical Gram-Schmidt: orthogonality to working precision
        w = w - Qj @ (Qj.T @ w)
        w = w - Qj @ (Qj.T @ w)
        b = float(w.norm())
        alpha.append(a)
        theta, S = scipy.linalg.eigh_tridiagonal(
            np.array(alpha), np.array(beta), lapack_driver="stev"
        )
        order = np.argsort(theta)[::-1]
        theta, S = theta[order], S[:, order]
        resid = np.abs(b * S[-1, :])
        m = min(k, len(theta))
        scale = np.maximum(np.abs(theta[:m]), np.finfo(float).tiny)
        err = resid[:m] if criterion == "residual" else _eigenvalue_bound(theta, resid, m)
        invariant = b <= 1e-12 * max(1.0, float(np.max(np.abs(theta))))
        if len(theta) >= k and j + 1 >= min_iter and np.all(err <= tol * scale):
            converged = True
            break
        if j + 1 == max_iter:
            break
        if j + 1 >= Q.shape[1]:
            grow = min(Q.shape[1], max_iter + 1 - Q.shape[1])
            Q = torch.cat([Q, torch.empty(dim, grow, dtype=dtype, device=device)], 1)
        if invariant:
            # exact invariant subspace: continue in a fresh random direction (decoupled block)
            r = torch.randn(dim, dtype=dtype, generator=gen).to(device)
            r = r - Qj @ (Qj.T @ r)
            r = r - Qj @ (Qj.T @ r)
            Q[:, j + 1] = r / r.norm()
            beta.append(0.0)
        else:
            Q[:, j + 1] = w / b
            beta.append(b)
    m = min(k, len(theta))
    Sk = torch.as_tensor(S[:, :m].copy(), dtype=dtype, device=device)
    vecs = Q[:, : len(alpha)] @ Sk
    vecs = vecs / vecs.norm(dim=0, keepdim=True)
    return EigResult(theta[:m].copy(), vecs, resid[:m].copy(), n_mv, converged)


def _eigenvalue_bound(theta: np.ndarray, resid: np.ndarray, m: int) -> np.ndarray:
    """‖r‖²/gap for each wanted Ritz value; ‖r‖ where no gap is known yet."""
    out = resid[:m].copy()
    for i in range(m):
        gaps = np.abs(np.delete(theta, i) - theta[i])
        if gaps.size and gaps.min() > 0:
            out[i] = min(resid[i], resid[i] ** 2 / gaps.min())
    return out


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


SOLVERS = {"lanczos": lanczos, "lobpcg": lobpcg}


@dataclass
class SharpnessTracker:
    """Warm-started top-k Lanczos with a periodic cold (random) restart.

    The previous eigenvectors start the next solve, so a slowly turning top
    eigenvector costs a few products; every ``restart_every`` solves start
    from a random vector instead, so an eigenvalue that rose in a direction
    orthogonal to the tracked ones is not missed.
    """

    k: int
    tol: float
    restart_every: int = 50
    solves: int = 0
    warm: Tensor | None = None

    def measure(self, hvp, dim: int, dtype, device) -> EigResult:
        cold = self.warm is None or (self.restart_every and self.solves % self.restart_every == 0)
        res = lanczos(hvp, dim, self.k, tol=self.tol, v0=None if cold else self.warm,
                      dtype=dtype, device=device, seed=self.solves)
        self.solves += 1
        self.warm = res.eigenvectors.detach()
        return res

    def state_dict(self) -> dict:
        return {"solves": self.solves, "warm": None if self.warm is None else self.warm.cpu()}

    def load_state_dict(self, s: dict, device) -> None:
        self.solves = s["solves"]
        self.warm = None if s["warm"] is None else s["warm"].to(device)



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
    if objective.hvp_method == "retained":
        point = objective.at(x)
        matvec = point.hvp
    else:
        def matvec(v):
            return objective.hvp(x, v)
    try:
        return SOLVERS[method](
            matvec, x.numel(), k, tol=tol, v0=v0, dtype=x.dtype, device=x.device, **kwargs
        )
    finally:
        if objective.hvp_method == "retained":
            point.release()


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
