"""Stochastic Lanczos quadrature (SLQ): the Hessian's spectral density from products.

For a probe ``v`` the spectral measure ``μ_v = Σᵢ (uᵢ·v)²/‖v‖² δ(λᵢ)`` has
moments ``vᵀHʲv/‖v‖²``. ``m`` Lanczos steps from ``v`` give the tridiagonal
``T``; its eigenvalues (nodes) and the squared first components of its
eigenvectors (weights, summing to 1) are the ``m``-point Gauss quadrature of
``μ_v``, exact for the moments ``j ≤ 2m − 1``. For Rademacher probes
``‖v‖² = d`` and ``E[(uᵢ·v)²] = 1``, so the average of ``μ_v`` over probes is an
unbiased estimate of the eigenvalue distribution ``(1/d) Σᵢ δ(λᵢ)``.

Memory: one probe at a time; its Lanczos basis is ``steps`` d-long vectors in
the model's dtype (full reorthogonalisation needs all of them), plus two
d-vectors. Float64 only for the small ``steps × steps`` tridiagonal problem
(and for the basis when the model is float64). The basis is not
:func:`eoskit.eigs.lanczos`'s: that solver returns Ritz pairs, and the weights
would need every Ritz vector, another ``steps × d`` in float64.

Example:
    >>> import torch
    >>> A = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
    >>> sd = spectral_density(lambda v: A @ v, 4, probes=1, steps=4)
    >>> sorted(round(float(t), 10) for t in sd.nodes[0])
    [1.0, 2.0, 3.0, 4.0]
    >>> round(sd.moment(1), 12), round(sd.moment(0), 12)  # tr(A)/d, total mass
    (2.5, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from eoskit.eigs import MatVec
from eoskit.spectrum.operand import Loss, as_objective, rademacher_stream


@dataclass
class SpectralDensity:
    """Gauss quadrature of each probe's spectral measure.

    ``nodes``, ``weights``: (probes, steps) float64; each row of weights sums to 1.
    A probe whose Krylov space closed early (an invariant subspace) has its unused
    entries padded with zero nodes of zero weight, which change no moment.
    """

    nodes: np.ndarray
    weights: np.ndarray
    dim: int
    n_matvecs: int

    def moment(self, j: int) -> float:
        """The j-th moment estimate ``Σ weights·nodes^j``, averaged over probes (≈ tr(Hʲ)/d)."""
        return float(np.mean(np.sum(self.weights * self.nodes ** j, axis=1)))

    @property
    def trace(self) -> float:
        """``d`` times the first moment: SLQ's estimate of tr(H)."""
        return self.dim * self.moment(1)

    def count_above(self, threshold: float) -> float:
        """Estimated number of eigenvalues above ``threshold``: ``d`` times the mass there.

        E.g. ``threshold = 2/η``: how many directions are past the stability edge.
        """
        mass = np.sum(self.weights * (self.nodes > threshold), axis=1)
        return float(self.dim * np.mean(mass))

    def density(self, grid, sigma: float) -> np.ndarray:
        """The measure convolved with a Gaussian of width ``sigma``, on ``grid``.

        A probability density in the eigenvalue: it integrates to 1 over the line.
        """
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma!r}")
        t = np.asarray(grid, dtype=float)[..., None]
        z = (t - self.nodes.reshape(-1)) / sigma
        kernel = np.exp(-0.5 * z * z) / (sigma * np.sqrt(2 * np.pi))
        return kernel @ self.weights.reshape(-1) / self.nodes.shape[0]


def lanczos_tridiagonal(matvec: MatVec, v: Tensor, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal α (m,) and off-diagonal β (m−1,) of ``m ≤ steps`` Lanczos steps from ``v``.

    Full reorthogonalisation, two classical Gram-Schmidt passes per step; the
    basis is kept in ``v``'s dtype. Stops early when the Krylov space is
    invariant (β below roundoff): the measure is then exactly m nodes.
    """
    dim = v.numel()
    steps = min(steps, dim)
    Q = torch.empty(steps, dim, dtype=v.dtype, device=v.device)
    q = v / torch.sqrt(v @ v)
    alpha, beta = [], []
    scale = 0.0
    floor = torch.finfo(v.dtype).eps ** 0.7  # a β below this relative size closes the space
    for j in range(steps):
        Q[j] = q
        w = matvec(q)
        scale = max(scale, float(torch.sqrt(w @ w)))
        Qj = Q[: j + 1]
        h = Qj @ w
        alpha.append(float(h[-1]))
        w = w - h @ Qj
        w = w - (Qj @ w) @ Qj  # the second pass: "twice is enough"
        b = float(torch.sqrt(w @ w))
        if j + 1 == steps or b <= floor * max(scale, np.finfo(float).tiny):
            break
        beta.append(b)
        q = w / b
    return np.array(alpha), np.array(beta)


def gauss_quadrature(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (ascending) and weights of the Jacobi matrix ``tridiag(β, α, β)``."""
    if len(alpha) == 1:
        return alpha.copy(), np.ones(1)
    theta, S = scipy.linalg.eigh_tridiagonal(alpha, beta, lapack_driver="stev")
    weights = S[0] ** 2
    return theta, weights / weights.sum()


def spectral_density(matvec: MatVec, dim: int, probes: int = 1, steps: int = 80, seed: int = 0,
                     dtype: torch.dtype = torch.float64,
                     device: str | torch.device = "cpu") -> SpectralDensity:
    """SLQ with ``probes`` Rademacher probes of ``steps`` Lanczos steps each (``matvec``: H·v)."""
    if probes < 1 or steps < 1:
        raise ValueError(f"probes and steps must be at least 1, got {probes} and {steps}")
    width = min(steps, dim)
    nodes, weights = np.zeros((probes, width)), np.zeros((probes, width))
    stream = rademacher_stream(dim, seed, dtype, device)
    n_mv = 0
    for p in range(probes):
        alpha, beta = lanczos_tridiagonal(matvec, next(stream), width)
        n_mv += len(alpha)
        theta, w = gauss_quadrature(alpha, beta)
        nodes[p, : len(theta)], weights[p, : len(w)] = theta, w
    return SpectralDensity(nodes, weights, dim, n_mv)


def slq(f: Loss, x: Tensor, probes: int = 1, steps: int = 80, seed: int = 0) -> SpectralDensity:
    """The spectral density of ∇²f(x) by stochastic Lanczos quadrature.

    ``f``: a callable ``f(x) -> scalar`` or an :class:`~eoskit.objective.Objective`.
    Costs ``probes × steps`` Hessian-vector products (fewer if a Krylov space closes).

    Example:
        >>> import torch
        >>> x = torch.zeros(3, dtype=torch.float64)
        >>> sd = slq(lambda x: x[0] ** 2 + 2 * x[1] ** 2 - x[2] ** 2, x, probes=2, steps=3)
        >>> sd.nodes.shape, round(sd.trace, 10)
        ((2, 3), 4.0)
    """
    x = x.detach()
    with as_objective(f, x).at(x) as point:
        return spectral_density(point.hvp, x.numel(), probes, steps, seed, x.dtype, x.device)
