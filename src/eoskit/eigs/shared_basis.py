"""One basis of Hessian-vector products for the raw and the preconditioned operator at once.

For ``P = diag(p)`` and ``D = P^{-1/2}``, one product ``H·w`` serves both
``H`` and ``A = D H D``: ``(w, H·w)`` is a pair of ``H``, and
``(D^{-1}w, D·H·w)`` is a pair of ``A`` (``A·D^{-1}w = D·H·w``). On basis rows
``w_i`` with images ``h_i = H·w_i`` both Rayleigh–Ritz problems share the
projected matrix ``G = [w_i·h_j]``; they differ in the metric:
``M = [w_i·w_j]`` for ``H`` and ``M = [w_i·(p∘w_j)]`` for ``A``
(``(D^{-1}w_i)·(D^{-1}w_j) = w_iᵀ P w_j``). So every product grows *both*
searches, and the two start vectors (the last raw and the last preconditioned
top vector) give both estimates from two products.

Rows are separate d-long tensors in the work dtype (no stacked copies); the
m×m matrices are float64. A thick restart (:meth:`SharedBasis.compress`) rewrites the
rows and images in place, and ``√p`` and ``p∘w`` are formed by slices, so the basis holds
its ``2m`` vectors and nothing beside them while a product runs; ``p`` itself may be
computed a slice at a time.

Example:
    >>> import torch
    >>> H = torch.diag(torch.tensor([4.0, 1.0, 0.5], dtype=torch.float64))
    >>> b = SharedBasis(lambda v: H @ v, torch.tensor([4.0, 1.0, 1.0], dtype=torch.float64))
    >>> for i in range(3):
    ...     b.add(torch.eye(3, dtype=torch.float64)[i])
    >>> [round(float(b.ritz("raw").values[0]), 6), round(float(b.ritz("pre").values[0]), 6)]
    [4.0, 1.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from eoskit.eigs.krylov import SLICE, MatVec

TARGETS = ("raw", "pre")


@dataclass
class Ritz:
    """Rayleigh–Ritz of one target: values (descending), coefficients S (m, q) with SᵀMS = I."""

    values: np.ndarray
    coef: Tensor


def generalised_eigh(G: Tensor, M: Tensor) -> tuple[np.ndarray, Tensor]:
    """``G s = θ M s`` for symmetric G and positive semi-definite M (float64, m×m).

    Directions where M is numerically singular (dependent rows) are dropped.
    """
    lam, V = torch.linalg.eigh(0.5 * (M + M.T))
    keep = lam > 1e-12 * float(lam.max())
    T = V[:, keep] / lam[keep].sqrt()
    th, Z = torch.linalg.eigh(T.T @ (0.5 * (G + G.T)) @ T)
    return th.flip(0).cpu().numpy(), (T @ Z).flip(1)


class SharedBasis:
    """Rows ``w_i`` (Euclidean orthonormal), their images ``H·w_i`` and the small matrices.

    ``p``: the preconditioner's diagonal (d,), or None for the raw operator alone. It is
    only ever sliced (``p[lo:hi]``), so it may be computed a slice at a time
    (:class:`~eoskit.optim.StateDiagonal`: no d-long ``P`` held).
    ``targets``: the operators searched (default: both with ``p``, else ``("raw",)``);
    ``("pre",)`` keeps no raw metric (its Gram columns cost passes over d).
    """

    def __init__(self, hvp: MatVec, p: Tensor | None, dtype=None,
                 targets: tuple[str, ...] | None = None, image_dtype: torch.dtype | None = None):
        self.hvp, self.p, self.dtype, self.image_dtype = hvp, p, dtype, image_dtype
        self.targets = (TARGETS if p is not None else TARGETS[:1]) if targets is None else (
            tuple(targets))
        if (not self.targets or not set(self.targets) <= set(TARGETS)
                or ("pre" in self.targets and p is None)):
            raise ValueError(f"targets must be among {TARGETS} ('pre' needs p), "
                             f"got {self.targets}")
        self.rows: list[Tensor] = []
        self.images: list[Tensor] = []
        self.G = torch.zeros(0, 0, dtype=torch.float64)
        self.M = {t: torch.zeros(0, 0, dtype=torch.float64) for t in self.targets}
        # image Gram matrices, [h_i·h_j] and [h_i·(h_j/p)]: residual norms without d-long work
        self.K = {t: torch.zeros(0, 0, dtype=torch.float64) for t in self.targets}
        self.products = 0
        self.explicit_residuals = 0  # residual norms that needed the d-long vectors

    def __len__(self) -> int:
        return len(self.rows)

    # ---- growing
    def orthogonal(self, v: Tensor, drop: float = 1e-6) -> Tensor | None:
        """``v`` (the caller's fresh vector: a start copy or a residual) orthogonalised
        against the rows and normalised, in place; None if dependent."""
        return orthonormalised(v, self.rows, None, drop)[0]

    def add(self, w: Tensor, image: Tensor | None = None) -> None:
        """Append an orthonormalised row ``w`` and its image (one product unless given)."""
        if image is None:
            image = self.hvp(w if self.dtype is None else w.to(self.dtype)).to(w.dtype)
            self.products += 1
        m = len(self.rows)
        # every dot by slices summed in float64: one float32 dot over all of d sums in
        # float32, 4e-4 off at 124M elements, and Gram matrices that far off floor the
        # residual norms at about √(4e-4) = 2% (GPT-2 small's cold solves stalled there)
        jobs = [([*self.rows, w], image, 1)]  # G's column
        if "raw" in self.targets:  # [w_i·w] and [h_i·h]
            jobs += [([*self.rows, w], w, 1), ([*self.images, image], image, 1)]
        col, *raw = weighted_dots(jobs, None)
        self.G = bordered(self.G, torch.tensor(col, dtype=torch.float64))
        if raw:
            self.M["raw"] = bordered(self.M["raw"], torch.tensor(raw[0], dtype=torch.float64))
            self.K["raw"] = bordered(self.K["raw"], torch.tensor(raw[1], dtype=torch.float64))
        if "pre" in self.targets:  # [w_i·(p∘w)] and [h_i·(h/p)], by slices (no d-long p∘w)
            metric, images = weighted_dots([([*self.rows, w], w, 1),
                                            ([*self.images, image], image, -1)], self.p)
            self.M["pre"] = bordered(self.M["pre"], torch.tensor(metric, dtype=torch.float64))
            self.K["pre"] = bordered(self.K["pre"], torch.tensor(images, dtype=torch.float64))
        self.rows.append(w)
        self.work_dtype = w.dtype
        # G took the image at full precision; a narrower copy serves only residuals and
        # restarts (directions, and residual norms to its rounding)
        self.images.append(image if self.image_dtype is None else image.to(self.image_dtype))
        assert len(self.rows) == m + 1

    # ---- Rayleigh–Ritz
    def ritz(self, target: str) -> Ritz:
        values, coef = generalised_eigh(self.G, self.M[target])
        return Ritz(values, coef)

    def combine(self, coef: Tensor, images: bool = False) -> Tensor:
        """``Σ c_i w_i`` (or ``Σ c_i H·w_i``) for float64 coefficients c (m,)."""
        src = self.images if images else self.rows
        # the rows' (work) dtype, whatever the images are kept in
        out = torch.zeros(src[0].shape, dtype=self.work_dtype, device=src[0].device)
        for c, r in zip(coef.tolist(), src, strict=True):
            out.add_(r, alpha=c)
        return out

    def vector(self, target: str, coef: Tensor) -> Tensor:
        """The Ritz vector of ``target`` in its own space (unit): ``z`` or ``√p∘z``."""
        z = self.combine(coef)
        return z if target == "raw" else scale_by(z, self.p, 0.5)

    def image(self, target: str, coef: Tensor) -> Tensor:
        """The image of the Ritz vector under the target's operator: ``H z`` or ``D H z``."""
        h = self.combine(coef, images=True)
        return h if target == "raw" else scale_by(h, self.p, -0.5)

    def residual_norm(self, target: str, coef: Tensor, theta: float) -> float:
        """``‖r‖`` of a Ritz pair, from the small matrices where that is accurate.

        ``‖r‖² = cᵀKc − 2θ cᵀGc + θ² cᵀMc`` (K the image Gram matrix of the target) needs
        no d-long work; it cancels as ``‖r‖`` falls, losing about the dots' rounding
        times ``cᵀKc``. So it is used while ``‖r‖² ≥ 1e-3 · cᵀKc`` (the residual at least
        3% of the image: rounding of ~1e-6 in the dots then moves ‖r‖ by < 0.1%);
        smaller residuals, the ones a convergence test decides on, are formed explicitly,
        a slice at a time (no d-long vector).
        """
        c = coef.to(torch.float64)
        image2 = float(c @ self.K[target] @ c)
        r2 = image2 - 2 * theta * float(c @ self.G @ c) + (  # G is symmetric (bordered)
            theta ** 2 * float(c @ self.M[target] @ c))
        if r2 >= 1e-3 * image2:
            return r2 ** 0.5
        self.explicit_residuals += 1
        # summed a slice at a time: a fresh d-long vector is 0.5 GB of page faults at 124M
        weights, total = coef.tolist(), 0.0
        for lo in range(0, self.rows[0].numel(), SLICE):
            r = self._defect_slice(target, weights, theta, lo, -0.5)
            total += float((r * r).sum(dtype=torch.float64))
        return total ** 0.5

    def residual(self, target: str, coef: Tensor, theta: float) -> Tensor:
        """``H z − θ z`` (raw) or ``D(H z − θ P z)`` (preconditioned)."""
        return self._defect(target, coef, theta, -0.5)

    def expansion(self, target: str, coef: Tensor, theta: float) -> Tensor:
        """The row to add so the target's space gains its residual: ``r`` or
        ``D r = P^{-1}(H z − θ P z)`` (no square root formed)."""
        return self._defect(target, coef, theta, -1)

    def _defect(self, target: str, coef: Tensor, theta: float, power: float) -> Tensor:
        """:meth:`_defect_slice` over all of d, in one d-long vector."""
        weights = coef.tolist()
        r = torch.empty(self.rows[0].shape, dtype=self.work_dtype, device=self.rows[0].device)
        flat = r.view(-1)
        for lo in range(0, flat.numel(), SLICE):
            flat[lo:lo + SLICE].copy_(self._defect_slice(target, weights, theta, lo, power))
        return r

    def _defect_slice(self, target: str, weights: list[float], theta: float, lo: int,
                      power: float) -> Tensor:
        """Elements ``lo:lo + SLICE`` of ``H z − θ z`` (raw) or ``p^power ∘ (H z − θ P z)``
        (preconditioned; ``p`` read once a slice). Both sums over the basis are formed in
        slice-sized buffers, so each stays in cache while the m rows' and images' slices
        are added into it."""
        hi = lo + SLICE
        hz = torch.zeros_like(self.rows[0][lo:hi])
        z = torch.zeros_like(hz)
        for c, w, h in zip(weights, self.rows, self.images, strict=True):
            hz.add_(h[lo:hi], alpha=c)
            z.add_(w[lo:hi], alpha=c)
        if target == "raw":
            return hz.sub_(z, alpha=theta)
        p = self.p[lo:hi]
        return scale_slice(hz.sub_(z.mul_(p), alpha=theta), p, power)

    def compress(self, coef: Tensor) -> None:
        """Keep only the span of ``Wᵀ·coef`` (coef (m, q), q < m): a thick restart, no product.

        The new rows ``W C`` (C: coef's orthonormal basis) are written over the old ones, and
        the images likewise, with no d-long temporary (:func:`combine_in_place`).
        """
        C, _ = torch.linalg.qr(coef)
        self.rows = combine_in_place(self.rows, C)
        self.images = combine_in_place(self.images, C)
        self.G = C.T @ self.G @ C
        self.M = {t: C.T @ M @ C for t, M in self.M.items()}
        self.K = {t: C.T @ K @ C for t, K in self.K.items()}



def scale_by(v: Tensor, p, power: float) -> Tensor:
    """``v ← p^power ∘ v`` for ``power`` in {1, −1, ½, −½}, in place and by slices, so no
    d-long ``p^power`` is formed beside the basis (``p`` may itself be computed a slice at
    a time, as :class:`~eoskit.optim.StateDiagonal` is). ``−½`` is ``D v``, ``½`` is
    ``D^{-1} v`` (``D = P^{-1/2}``).

    Example:
        >>> scale_by(torch.tensor([2.0, 6.0]), torch.tensor([4.0, 9.0]), -0.5).tolist()
        [1.0, 2.0]
        >>> scale_by(torch.tensor([2.0, 6.0]), torch.tensor([4.0, 3.0]), -1).tolist()
        [0.5, 2.0]
    """
    flat = v.view(-1)
    for lo in range(0, flat.numel(), SLICE):
        scale_slice(flat[lo:lo + SLICE], p[lo:lo + SLICE], power)
    return v


def scale_slice(part: Tensor, weight: Tensor, power: float) -> Tensor:
    """``part ← weight^power ∘ part`` in place, ``power`` in {1, −1, ½, −½}: one slice of
    :func:`scale_by` (``weight`` is ``p``'s slice)."""
    if abs(power) not in (0.5, 1):
        raise ValueError(f"power must be 1, -1, 0.5 or -0.5, got {power}")
    weight = weight.sqrt() if abs(power) == 0.5 else weight
    return part.mul_(weight) if power > 0 else part.div_(weight)


def weighted_dots(jobs: list[tuple[list[Tensor], Tensor, int]], p) -> list[list[float]]:
    """For each job ``(vectors, u, sign)``: ``[v·(p∘u) for v in vectors]`` (``sign`` 1) or
    ``[v·(u/p)]`` (``sign`` −1), in one pass by slices, so ``p`` is read once a slice and no
    weighted vector is formed at full length (``p`` None: ``[v·u]``). Slice sums add in
    float64; a vector stored narrower than ``u`` is widened a slice at a time.

    Example:
        >>> u = torch.tensor([2.0, 3.0])
        >>> weighted_dots([([torch.tensor([1.0, 1.0])], u, -1), ([u], u, 1)],
        ...               torch.tensor([4.0, 6.0]))
        [[1.0], [70.0]]
    """
    totals = [[0.0] * len(vectors) for vectors, _, _ in jobs]
    n = jobs[0][1].numel()
    for lo in range(0, n, SLICE):
        weight = None if p is None else p[lo:lo + SLICE]
        for (vectors, u, sign), sums in zip(jobs, totals, strict=True):
            part = u[lo:lo + SLICE]
            if weight is not None:
                part = part * weight if sign > 0 else part / weight
            for i, v in enumerate(vectors):
                sums[i] += float(v[lo:lo + SLICE].to(part.dtype) @ part)
    return totals


def weighted_dot(u: Tensor, v: Tensor, p) -> float:
    """``u·(p∘v)`` (``u·v`` with ``p`` None): one job of :func:`weighted_dots`."""
    return weighted_dots([([u], v, 1)], p)[0][0]


def orthonormalised(v: Tensor, rows: list[Tensor], p=None,
                    drop: float = 1e-6) -> tuple[Tensor | None, float]:
    """``v`` orthogonalised against ``rows`` and normalised, in place, in the inner product
    ``u·(p∘w)`` (``u·w`` with ``p`` None) in which the rows are orthonormal; and the norm of
    its part off the rows. None (and that norm) where ``v`` is zero or not finite, or what
    is left of it is at most ``drop`` of its norm (dependent).

    Classical Gram–Schmidt, with a second pass only where the first cancelled much of ``v``
    (the DGKS test, as ARPACK), by slices (:func:`weighted_dots`). The first read of ``v``
    takes its norm and the first pass's coefficients together: beside the products these
    reads are a search's largest cost, and at 124M parameters ``p`` is recomputed from the
    optimiser's state on every read. (The norm that ends a pass is read alone: taking the
    next pass's coefficients with it would read the rows again for a pass that rarely runs.)

    Example:
        >>> rows = [torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)]
        >>> w, n = orthonormalised(torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64), rows)
        >>> w.tolist(), n
        ([0.0, 0.0, 1.0], 4.0)
    """
    squares, *coefs = weighted_dots([([v, *rows], v, 1)], p)[0]  # [v·(p∘v), r_i·(p∘v)]
    n0 = squares ** 0.5
    if not np.isfinite(n0) or n0 == 0.0:
        return None, 0.0
    v.div_(n0)
    coefs, n = [c / n0 for c in coefs], 1.0
    for again in range(2 if rows else 0):
        if again:
            (coefs,) = weighted_dots([(rows, v, 1)], p)
        for r, c in zip(rows, coefs, strict=True):
            v.sub_(r, alpha=c)
        before, n = n, max(weighted_dot(v, v, p), 0.0) ** 0.5
        if n > before / 2 ** 0.5:
            break
    return (v.div_(n) if n > drop else None), n0 * n


def combine_in_place(vectors: list[Tensor], C: Tensor) -> list[Tensor]:
    """``[Σ_i C_ij v_i for j < q]`` for C (m, q), written over ``vectors``.

    A slice of all m vectors at a time: the slice's new values are formed in float32 or
    the vectors' own dtype if wider (an (m, slice) block) and written back, so a restart
    holds no copy of the basis (at 124M parameters each copy is 0.5 GB) and vectors stored
    below float32 (bfloat16 images) are rounded once, not once per term.

    Example:
        >>> V = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0])]
        >>> C = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
        >>> [v.tolist() for v in combine_in_place(V, C)]
        [[1.0, 2.0], [3.0, 4.0]]
    """
    m, q = C.shape
    out, n = vectors[:q], vectors[0].numel()
    wide = _wide(vectors[0].dtype)
    Ct = C.T.to(wide)  # (q, m)
    step = max(SLICE // m, 1)  # the block holds m slices: SLICE elements in all
    for lo in range(0, n, step):
        block = torch.stack([v[lo:lo + step].to(wide) for v in vectors])  # (m, slice)
        for j, row in enumerate(Ct @ block):
            out[j][lo:lo + step].copy_(row)
    vectors.clear()
    return out


def _wide(dtype: torch.dtype) -> torch.dtype:
    """The dtype arithmetic on stored vectors runs in: float32, or theirs if wider."""
    return dtype if torch.finfo(dtype).bits >= 32 else torch.float32


def bordered(A: Tensor, col: Tensor) -> Tensor:
    """A symmetric m×m matrix with one more row and column ``col`` (m+1,)."""
    m = A.shape[0]
    out = torch.zeros(m + 1, m + 1, dtype=torch.float64)
    out[:m, :m] = A
    out[:, m] = col
    out[m, :] = col
    return out
