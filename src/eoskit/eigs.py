"""Top-k *algebraic* Hessian eigenvalues from Hessian-vector products.

Sharpness is the largest algebraic eigenvalue, never the largest in
magnitude: early in training the largest-magnitude eigenvalue can be
negative, and a ``which='LM'`` solver then reports the wrong number.

The solver is Lanczos with full reorthogonalisation, started from a warm
vector (the previous step's eigenvectors) when one is given. It stops when
every wanted Ritz pair meets ``‖Hv − θv‖ ≤ tol·|θ|`` (``criterion='residual'``)
or, for ``criterion='eigenvalue'``, when the a-posteriori eigenvalue bound
``‖r‖²/gap`` meets ``tol·|θ|``; the gap is taken from the next Ritz value
*plus that value's own error estimate* (``_eigenvalue_bounds``), so an
unconverged second Ritz value cannot fake a wide gap.

Tridiagonal and Rayleigh–Ritz arithmetic is float64; norms are ``sqrt(v·v)``:
``Tensor.norm`` over ~10⁵ float32 entries loses ~10⁻⁶ relative, which used to
cap float32 accuracy there. The Lanczos basis is float32 for float32 products
(row-major, one Gram–Schmidt pass plus a second only when needed), float64
otherwise; the small warm-start blocks are float64.

:func:`subspace_eigs` is the warm-start solver used for tracking: it starts
from a *block* of carried vectors (the previous step's top Ritz vectors),
keeps their exact images, and expands by residuals (Rayleigh–Ritz each step;
from one vector this is Lanczos). :class:`SharpnessTracker` wraps it
(``mode='lanczos'``) or runs a ~one-product-per-step streaming estimate
(``mode='streaming'``).

Example:
    >>> import torch
    >>> A = torch.diag(torch.tensor([-5.0, 1.0, 2.0, 3.0], dtype=torch.float64))
    >>> res = lanczos(lambda v: A @ v, dim=4, k=2, tol=1e-10)
    >>> [round(float(e), 8) for e in res.eigenvalues]
    [3.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from eoskit._threads import limit_blas_threads
from eoskit.objective import FunctionObjective, Objective

MatVec = Callable[[Tensor], Tensor]
CRITERIA = ("residual", "eigenvalue")
WORK = torch.float64  # dtype of every Krylov basis and inner product


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


def _norm(v: Tensor) -> Tensor:
    # sqrt(v·v): Tensor.norm on large float32 vectors loses ~1e-6 relative; a dot does not
    return torch.sqrt(v @ v)


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
    returned eigenvectors (and of the basis, see :func:`_basis_dtype`).
    ``keep`` (> k): also return that many top Ritz pairs (converged or not) in
    ``ritz_values``/``ritz_vectors``, e.g. to seed a warm block.
    """
    if not 1 <= k <= dim:
        raise ValueError(f"k must be between 1 and the dimension {dim}, got {k}")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
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
    n_mv = 0
    theta = resid = S = None
    converged = False
    for j in range(max_iter):
        w = matvec(Q[j].to(dtype)).to(bdt)
        n_mv += 1
        Qj = Q[: j + 1]
        # full reorthogonalisation, classical Gram-Schmidt with a second pass only when the
        # first one cancelled much of w (the DGKS test, as in ARPACK)
        n0 = _norm(w)
        h = Qj @ w
        a = float(h[j])
        w = w - h @ Qj
        b = _norm(w)
        if b < 0.7071 * n0:
            w = w - (Qj @ w) @ Qj
            b = _norm(w)
        b = float(b)
        alpha.append(a)
        theta, S = scipy.linalg.eigh_tridiagonal(
            np.array(alpha), np.array(beta), lapack_driver="stev"
        )
        order = np.argsort(theta)[::-1]
        theta, S = theta[order], S[:, order]
        resid = np.abs(b * S[-1, :])
        m = min(k, len(theta))
        scale = np.maximum(np.abs(theta[:m]), np.finfo(float).tiny)
        err = resid[:m] if criterion == "residual" else _eigenvalue_bounds(theta, resid)[:m]
        invariant = b <= 1e-12 * max(1.0, float(np.max(np.abs(theta))))
        if len(theta) >= k and j + 1 >= min_iter and np.all(err <= tol * scale):
            converged = True
            break
        if j + 1 == max_iter:
            break
        if j + 1 >= Q.shape[0]:
            grow = min(Q.shape[0], max_iter + 1 - Q.shape[0])
            Q = torch.cat([Q, torch.empty(grow, dim, dtype=bdt, device=device)], 0)
            Qj = Q[: j + 1]
        if invariant:
            # exact invariant subspace: continue in a fresh random direction (decoupled block)
            r = torch.randn(dim, dtype=WORK, generator=gen).to(device=device, dtype=bdt)
            r = r - (Qj @ r) @ Qj
            r = r - (Qj @ r) @ Qj
            Q[j + 1] = r / _norm(r)
            beta.append(0.0)
        else:
            Q[j + 1] = w / b
            beta.append(b)
    m = min(k, len(theta))
    mk = min(max(m, keep or 0), len(theta))
    Sk = torch.as_tensor(S[:, :mk].T.copy(), dtype=bdt, device=device)
    vecs = (Sk @ Q[: len(alpha)]).T
    vecs = vecs / torch.sqrt((vecs * vecs).sum(dim=0, keepdim=True))
    out = EigResult(theta[:m].copy(), vecs[:, :m].to(dtype), resid[:m].copy(), n_mv, converged)
    if keep:
        out.ritz_values, out.ritz_vectors = theta[:mk].copy(), vecs.to(WORK)
    return out


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
    ``gap_floor`` see :func:`_eigenvalue_bounds`.

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
    if not 1 <= k <= dim:
        raise ValueError(f"k must be between 1 and the dimension {dim}, got {k}")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    limit_blas_threads()
    device = torch.device(device)
    max_iter = min(dim, max_iter or 40)
    keep = min(dim, keep or k + 1)
    gen = torch.Generator().manual_seed(seed)

    def rand() -> Tensor:
        return torch.randn(dim, 1, dtype=WORK, generator=gen).to(device)

    # the basis Q and its images W are stored as rows (m, d): contiguous vectors
    if w0 is not None:
        Q = v0.to(device=device, dtype=WORK).reshape(dim, -1).T.contiguous()
        W = w0.to(device=device, dtype=WORK).reshape(dim, -1).T.contiguous()
        n_mv = 0
    else:
        B = _orthonormal_columns(v0.to(device).reshape(dim, -1)) if v0 is not None else None
        if B is None or B.shape[1] == 0:
            B = _orthonormal_columns(rand())
        Q = B[:, :max_iter].T.contiguous()
        W = torch.stack([_apply(matvec, q, dtype) for q in Q], 0)
        n_mv = Q.shape[0]
    while True:
        m = Q.shape[0]
        G = Q @ W.T
        G = 0.5 * (G + G.T)
        theta, S = torch.linalg.eigh(G)
        theta, S = theta.flip(0), S.flip(1)
        p = min(m, max(keep, k + 2))
        St = S[:, :p].T.contiguous()
        Y = St @ Q  # (p, d) Ritz vectors as rows
        HY = St @ W
        R = HY - theta[:p, None] * Y
        resid = torch.sqrt((R * R).sum(1)).cpu().numpy()
        th = theta.cpu().numpy()
        kk = min(k, m)
        scale = np.maximum(np.abs(th[:kk]), np.finfo(float).tiny)
        if criterion == "residual":
            err = resid[:kk]
        else:
            err = _eigenvalue_bounds(th[:p], resid, upper, gap_floor)[:kk]
        done = m >= k and bool(np.all(err <= tol * scale))
        if done or n_mv >= max_iter:
            break
        # expand by the residual of the first unconverged wanted pair, or of the pair below
        # it when that one's larger residual is what keeps the gap (and the bound) small
        bad = [i for i in range(kk) if err[i] > tol * scale[i]] or [kk if kk < p else 0]
        i = bad[0]
        if criterion == "eigenvalue" and i + 1 < p and resid[i + 1] > resid[i]:
            i += 1
        new = _orthonormal_columns(R[i], Q.T, drop=1e-10)
        if new.shape[1] == 0:
            new = _orthonormal_columns(rand(), Q.T)
            if new.shape[1] == 0:
                break
        q = new[:, 0]
        Q = torch.cat([Q, q[None]], 0)
        W = torch.cat([W, _apply(matvec, q, dtype)[None]], 0)
        n_mv += 1
    keep = min(keep, p)
    return EigResult(th[:kk].copy(), Y[:kk].T.to(dtype), resid[:kk].copy(), n_mv, done,
                     ritz_values=th[:keep].copy(), ritz_vectors=Y[:keep].T,
                     ritz_images=HY[:keep].T)


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


TRACKER_MODES = ("lanczos", "streaming")
TURBULENT_TOL = 1e-3  # streaming: eigenvalue tolerance on steps where the vectors turn fast


def _hcat(*blocks: Tensor) -> Tensor:
    """Columns side by side, each stored contiguously (a transposed row-major block)."""
    return torch.cat([b.T for b in blocks], 0).T


def _overlap(A: Tensor, B: Tensor) -> float:
    """Smallest cosine between the column spaces of two orthonormal blocks (|a·b| for vectors)."""
    if A.shape[1] != B.shape[1]:
        return 0.0
    return float(torch.linalg.svdvals(A.T @ B).min())


@dataclass
class SharpnessTracker:
    """Top-k sharpness along a trajectory, warm-started, with a periodic cold restart.

    ``mode='lanczos'`` (default): each solve is :func:`subspace_eigs` started
    from the previous point's top ``k+1`` Ritz vectors advanced by one free
    power step (their images ``H·y`` are known, so ``H·y/‖H·y‖`` costs
    nothing), converged to ``tol`` by ``criterion``. Carrying the ``k+1``-th
    vector resolves the gap from the first products, so the eigenvalue
    criterion is safe where λ_k and λ_{k+1} nearly cross (as they do at the
    Edge of Stability); ~2-3 products per step at ``tol=1e-4``.

    ``mode='streaming'``: about one product per step. The ``k`` tracked
    vectors get a fresh product each step (so the reported value is an exact
    Rayleigh–Ritz value, never a stale one); the ``k+1``-th vector's curvature
    is carried from its last refresh, with an allowance for drift, and gives
    the eigenvalue criterion its gap. That vector is refreshed (one more
    product, a Rayleigh–Ritz swap if it overtook) every ``refresh_every``
    steps (a quarter of that while turbulent), or sooner when its allowance
    could put it above the k-th value by more than ``tol``. On *turbulent*
    steps (the tracked vectors turned by more than ~8° lately, or the values
    move by more than tol/4 a step: the EoS spike, period-two eigenvector
    flips) a loose tolerance would accept a Ritz vector with a residual large
    enough to hide a swapped eigenvector, so those steps are converged to
    ``TURBULENT_TOL`` from both candidate generations (see ``_choose_start``).
    Meant for ``tol`` around 1e-2: ~1.2-1.3 products per step through the EoS
    phase of the benchmark, within 0.5% of the true sharpness.

    Every ``restart_every`` solves a random-start Lanczos solve probes as well,
    so an eigenvalue that rose in a direction orthogonal to the tracked ones is
    not missed; it replaces the tracked vectors only when its top-k sum is
    larger (:meth:`_probe`), so a restart never lowers the reported value.
    """

    k: int
    tol: float
    restart_every: int = 50
    solves: int = 0
    warm: Tensor | None = None
    mode: str = "lanczos"
    criterion: str = "residual"
    refresh_every: int = 16
    max_matvecs: int = 40
    carried: Tensor | None = None  # (d, k+1) float64 start block for the next solve
    next_value: float | None = None  # streaming: curvature of the (k+1)-th carried vector
    next_error: float = 0.0
    next_age: int = 0
    drift: float = 0.0
    last_values: np.ndarray | None = None
    last_info: dict | None = None
    _history: list = field(default_factory=list, repr=False)
    _calm: list = field(default_factory=list, repr=False)
    _alternate: Tensor | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.mode not in TRACKER_MODES:
            raise ValueError(f"mode must be one of {TRACKER_MODES}, got {self.mode!r}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")

    def measure(self, hvp, dim: int, dtype, device) -> EigResult:
        k = self.k
        if self.carried is None:
            res = self._adopt(self._cold(hvp, dim, dtype, device))
        else:
            if self.mode == "lanczos":
                res = subspace_eigs(hvp, dim, k, tol=self.tol, v0=self.carried, dtype=dtype,
                                    device=device, seed=self.solves, criterion=self.criterion,
                                    max_iter=self.max_matvecs, keep=min(dim, k + 1))
                if not res.converged:
                    res = self._adopt(self._cold(hvp, dim, dtype, device))
                else:
                    self._carry(res, dim)
            else:
                res = self._stream(hvp, dim, dtype, device)
            if self.restart_every and self.solves % self.restart_every == 0:
                res = self._probe(res, hvp, dim, dtype, device)
        self.solves += 1
        self.warm = res.eigenvectors.detach()
        self._choose_start(res.eigenvectors)
        if self.last_values is not None and len(self.last_values) == len(res.eigenvalues):
            step = float(np.max(np.abs(res.eigenvalues - self.last_values)))
            self.drift = max(0.5 * self.drift, step)
        self.last_values = res.eigenvalues.copy()
        return res

    # ---- pieces
    def _choose_start(self, Y: Tensor) -> None:
        """Period-two aware warm start.

        At the Edge of Stability GD oscillates, so the Hessian alternates and the
        top eigenvector at step t+1 is often much closer to that of step t-1 than
        to that of step t (overlap 0.84 vs 0.02 at the worst step measured). When
        the last three solutions show that pattern (|⟨y_t, y_{t-2}⟩| > |⟨y_t, y_{t-1}⟩|),
        the next solve starts from the block carried out of step t-1 instead.
        """
        hist = self._history
        hist.append((Y.detach(), self.carried))
        del hist[:-3]
        if len(hist) >= 2:
            o1 = _overlap(hist[-1][0], hist[-2][0])
            o2 = _overlap(hist[-1][0], hist[-3][0]) if len(hist) == 3 else 0.0
            self._calm.append(max(o1, o2))
            del self._calm[:-3]
            self._alternate = hist[1][1] if len(hist) == 3 else None
            if len(hist) == 3 and hist[1][1] is not None and o2 > o1:
                self._alternate, self.carried = self.carried, hist[1][1]

    def _turbulent(self, theta: float) -> bool:
        """The tracked vectors turned fast lately, or the values move by more than tol/4 a step."""
        turning = bool(self._calm) and min(self._calm) < 0.99
        return turning or self.drift > 0.25 * self.tol * abs(theta)

    def _cold(self, hvp, dim, dtype, device) -> EigResult:
        """Lanczos from a random vector, converged for the wanted k, keeping k+1 Ritz pairs."""
        crit = "eigenvalue" if self.mode == "streaming" else self.criterion
        # a cold Lanczos stopped at a loose tolerance can settle on λ₂ before λ₁ shows up
        tol = min(self.tol, TURBULENT_TOL) if self.mode == "streaming" else self.tol
        return lanczos(hvp, dim, self.k, tol=tol, dtype=dtype, device=device,
                       seed=self.solves, criterion=crit, keep=min(dim, self.k + 1))

    def _adopt(self, res: EigResult) -> EigResult:
        """Start tracking afresh from a cold solve: its k+1 Ritz vectors become the block."""
        k = self.k
        self._history.clear()
        self._calm.clear()
        self._alternate = None
        V = res.ritz_vectors
        self.carried = V
        self.next_value = float(res.ritz_values[k]) if V.shape[1] > k else None
        # its error is unknown (not converged): allow the distance to the k-th value
        self.next_error = (float(res.ritz_values[k - 1] - res.ritz_values[k]) / 2
                           if V.shape[1] > k else 0.0)
        self.next_age = 0
        return res

    def _probe(self, warm: EigResult, hvp, dim, dtype, device) -> EigResult:
        """The periodic restart: a cold solve that replaces the warm one only if it finds more.

        Both are Rayleigh-Ritz values, lower bounds of the true ones, so the larger
        sum of the top k (Ky Fan) is the better answer. A cold solve that simply
        replaced the tracked block was measured 2-3% low after a restart at a loose
        tolerance (it stopped before the top eigenvalue showed up).
        """
        cold = self._cold(hvp, dim, dtype, device)
        n_mv = warm.n_matvecs + cold.n_matvecs
        m = min(len(cold.eigenvalues), len(warm.eigenvalues))
        found = float(np.sum(cold.eigenvalues[:m])) > float(np.sum(warm.eigenvalues[:m])) * (
            1 + 0.1 * self.tol)
        if self.last_info is not None:
            self.last_info["probe"] = "adopted" if found else "kept"
        best = self._adopt(cold) if found else warm
        return EigResult(best.eigenvalues, best.eigenvectors, best.residuals, n_mv,
                         best.converged)

    def _carry(self, res: EigResult, dim: int) -> None:
        """Next start block: the Ritz vectors advanced by one (free) power step."""
        Y, HY = res.ritz_vectors, res.ritz_images
        A = _orthonormal_columns(HY)
        self.carried = A if A.shape[1] == Y.shape[1] else _orthonormal_columns(Y)

    def _stream(self, hvp, dim, dtype, device) -> EigResult:
        k = self.k
        C = self.carried
        prev = float(self.last_values[-1]) if self.last_values is not None else 0.0
        if self._alternate is not None and self._turbulent(prev):
            return self._stream_turbulent(hvp, dim, dtype, device, prev)
        top = C[:, :k]
        Wt = _images(hvp, top, dtype)
        n_mv = k
        extra = C[:, k:k + 1] if C.shape[1] > k else None
        # Rayleigh-Ritz in span(top) from two Gram matrices (one pass over the data each):
        # ‖Hy − θy‖² = yᵀH²y − θ² for the orthonormal Ritz vectors y = top·S
        G = top.T @ Wt
        theta_t, S = torch.linalg.eigh(0.5 * (G + G.T))
        theta_t, S = theta_t.flip(0), S.flip(1)
        r2 = (S * ((Wt.T @ Wt) @ S)).sum(0) - theta_t ** 2
        theta = theta_t.cpu().numpy()
        resid = np.sqrt(np.maximum(r2.cpu().numpy(), 0.0))
        theta_k = float(theta[k - 1])
        self.next_age += 1
        upper = None
        if extra is not None and self.next_value is not None:
            upper = self.next_value + self.next_error + self.next_age * self.drift
        # refresh the carried (k+1)-th vector when it is due, or when its allowance could put
        # it above the k-th by more than tol (closer than that, confusing them costs < tol)
        refresh = extra is not None and (
            self.next_value is None
            or self.next_age >= (max(1, self.refresh_every // 4) if self._turbulent(theta_k)
                                 else self.refresh_every)
            or upper > theta_k + self.tol * abs(theta_k))
        gap_floor = self.tol * abs(theta_k)
        if not refresh:
            err = _eigenvalue_bounds(theta, resid, upper, gap_floor)
            if np.all(err <= self.tol * np.maximum(np.abs(theta), np.finfo(float).tiny)):
                # the common step: one product per tracked vector and nothing else
                Y = (S.T @ top.T).T  # (d, k), columns contiguous like every carried block
                self._stream_info(False, upper, theta_k, 0, float(resid[-1]))
                # next start: the power step H·top (its span is that of the Ritz images H·Y)
                A = _orthonormal_columns(Wt)
                if A.shape[1] < k:
                    A = _orthonormal_columns(Y)
                self._carry_extra(A, extra)
                return EigResult(theta, Y.to(dtype), resid, n_mv, True)
        if refresh:
            extra = _orthonormal_columns(extra, top)
            refresh = extra.shape[1] > 0
        if refresh:
            v0 = _hcat(top, extra)
            w0 = _hcat(Wt, _apply(hvp, extra[:, 0], dtype)[:, None])
            n_mv += 1
            upper = None
        else:
            v0, w0 = top, Wt
        res = subspace_eigs(hvp, dim, k, tol=self.tol, v0=v0, w0=w0, dtype=dtype,
                            device=device, seed=self.solves, criterion="eigenvalue",
                            max_iter=self.max_matvecs, keep=min(dim, k + 1), upper=upper,
                            gap_floor=gap_floor)
        n_mv += res.n_matvecs
        self._stream_info(bool(refresh), upper, theta_k, res.n_matvecs,
                          float(res.residuals[-1]))
        # the next start: tracked Ritz vectors advanced by a power step; the (k+1)-th from
        # this solve when it was refreshed (or a Ritz vector beyond k exists), else kept
        Y, HY = res.ritz_vectors, res.ritz_images
        A = _orthonormal_columns(HY[:, :k])
        if A.shape[1] < k:
            A = _orthonormal_columns(Y[:, :k])
        better = (Y.shape[1] > k and self.next_value is not None
                  and res.ritz_values[k] > self.next_value)
        if Y.shape[1] > k and (refresh or better):
            nxt = _orthonormal_columns(HY[:, k:k + 1], A)
            if nxt.shape[1]:
                self.next_value = float(res.ritz_values[k])
                rk = HY[:, k] - res.ritz_values[k] * Y[:, k]
                self.next_error = float(_norm(rk))
                self.next_age = 0
                extra = nxt
        self._carry_extra(A, extra)
        return EigResult(res.eigenvalues, res.eigenvectors, res.residuals, n_mv, res.converged)

    def _stream_info(self, refresh, upper, theta_k, expansions, residual) -> None:
        """What a streaming step decided, for inspection (``last_info``)."""
        self.last_info = {"refresh": refresh, "upper": upper, "theta_k": theta_k,
                          "next_value": self.next_value, "next_error": self.next_error,
                          "drift": self.drift, "expansions": expansions, "residual": residual}

    def _carry_extra(self, A: Tensor, extra: Tensor | None) -> None:
        """Next start block: ``A`` (the tracked directions), then ``extra`` as it is.

        ``extra`` is made orthogonal to the tracked vectors where it is used (a
        refresh, or a solve that orthonormalises its start block), not every step.
        """
        self.carried = A if extra is None or extra.shape[1] == 0 else _hcat(A, extra)

    def _stream_turbulent(self, hvp, dim, dtype, device, prev: float) -> EigResult:
        """Fast-turning vectors (the EoS spike, a period-two flip): a converged block solve.

        The start block holds both candidate generations (the carried block and
        the other one's top vectors), every vector with a fresh product, so an
        eigenvector that swapped between alternating Hessians is still caught.
        """
        k = self.k
        v0 = _hcat(self.carried, self._alternate[:, :k])
        # a loose tolerance accepts a residual large enough to hide a swapped eigenvector;
        # converge these steps as tightly as the tracking mode does
        res = subspace_eigs(hvp, dim, k, tol=min(self.tol, TURBULENT_TOL), v0=v0, dtype=dtype,
                            device=device, seed=self.solves, criterion="eigenvalue",
                            max_iter=self.max_matvecs, keep=min(dim, k + 1))
        self._carry(res, dim)
        if res.ritz_vectors.shape[1] > k:
            self.next_value = float(res.ritz_values[k])
            rk = res.ritz_images[:, k] - res.ritz_values[k] * res.ritz_vectors[:, k]
            self.next_error = float(_norm(rk))
            self.next_age = 0
        self.last_info = {"refresh": "turbulent", "expansions": res.n_matvecs,
                          "residual": float(res.residuals[-1])}
        return EigResult(res.eigenvalues, res.eigenvectors, res.residuals, res.n_matvecs,
                         res.converged)

    # ---- checkpoints
    def state_dict(self) -> dict:
        def cpu(t):
            return None if t is None else t.detach().cpu()

        return {"solves": self.solves, "warm": cpu(self.warm), "carried": cpu(self.carried),
                "next_value": self.next_value, "next_error": self.next_error,
                "next_age": self.next_age, "drift": self.drift,
                "last_values": None if self.last_values is None else self.last_values.tolist(),
                # the period-two start choice reads the last three solutions: resume needs them
                "history": [(cpu(y), cpu(c)) for y, c in self._history]}

    def load_state_dict(self, s: dict, device) -> None:
        self.solves = s["solves"]
        self.warm = None if s["warm"] is None else s["warm"].to(device)
        carried = s.get("carried")
        if carried is None and self.warm is not None:
            carried = self.warm.to(WORK)  # an older checkpoint: warm vectors only
        self.carried = None if carried is None else carried.to(device)
        self.next_value = s.get("next_value")
        self.next_error = s.get("next_error", 0.0)
        self.next_age = s.get("next_age", 0)
        self.drift = s.get("drift", 0.0)
        lv = s.get("last_values")
        self.last_values = None if lv is None else np.asarray(lv, dtype=float)
        self._history = [(y.to(device), None if c is None else c.to(device))
                         for y, c in s.get("history", [])]


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
