"""Sharpness along a trajectory: the shared tracker base and the warm-started block tracker.

:class:`SharpnessTracker` holds what every tracker shares: the carried start
block, the period-two aware choice of the next start (:meth:`_choose_start`),
the cold start, the periodic restart probe (:meth:`_probe`), the checkpoint
state, the bound on its d-long vectors (``max_vectors``) and :meth:`measure`.
Each tracker class names its ``mode``; :func:`~eoskit.eigs.tracker_modes.make_tracker`
builds one by name.

Example:
    >>> import torch
    >>> D = torch.linspace(0.0, 5.0, 30, dtype=torch.float64)
    >>> tr = LanczosTracker(1, 1e-8, 0, criterion="eigenvalue")
    >>> [round(float(tr.measure(lambda v: D * v, 30, torch.float64, "cpu").eigenvalues[0]), 6)
    ...  for _ in range(2)]
    [5.0, 5.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from eoskit.eigs.krylov import CRITERIA, EigResult, orthonormal_columns, work_dtype
from eoskit.eigs.solvers import lanczos
from eoskit.eigs.subspace import subspace_eigs

_HELD_PER_K, _HELD = 11, 15  # d-long vectors besides a solve's basis: 11k + 15 (max_basis)


def default_max_vectors(k: int) -> int:
    """The default bound on a tracker's d-long vectors: 13k + 28, a basis of k + 6 vectors."""
    return 13 * k + 28


def min_max_vectors(k: int) -> int:
    """The smallest bound a tracker accepts: a basis of k + 3 vectors."""
    return _HELD_PER_K * k + _HELD + 2 * (k + 3)


def overlap(A: Tensor, B: Tensor) -> float:
    """Smallest cosine between the column spaces of two orthonormal blocks (|a·b| for vectors)."""
    if A.shape[1] != B.shape[1]:
        return 0.0
    return float(torch.linalg.svdvals(A.T @ B).min())


def power_step(res: EigResult) -> Tensor:
    """Next start block: the Ritz vectors advanced by one (free) power step, orthonormal (d, p)."""
    Y, HY = res.ritz_vectors, res.ritz_images
    A = orthonormal_columns(HY)
    return A if A.shape[1] == Y.shape[1] else orthonormal_columns(Y)


def compact(res: EigResult) -> EigResult:
    """The result a tracker reports: its own copy of the k eigenvectors, no Ritz block.

    The solver's Ritz vectors and images (2·(k+1) d-long rows) are then freed
    as soon as the next start block is built from them. Eigenvectors that are already
    their own storage (the streaming tracker's common step forms them anew) are not
    copied again.
    """
    vectors = res.eigenvectors
    if vectors.untyped_storage().nbytes() > vectors.numel() * vectors.element_size():
        vectors = vectors.clone()  # a view into the solver's Ritz block
    return EigResult(res.eigenvalues, vectors, res.residuals, res.n_matvecs, res.converged)


@dataclass
class SharpnessTracker:
    """Top-k sharpness along a trajectory, warm-started, with a periodic cold restart.

    A base class: build a :class:`LanczosTracker`, a
    :class:`~eoskit.eigs.streaming.StreamingTracker`, or either by its mode
    with :func:`~eoskit.eigs.tracker_modes.make_tracker`.

    Memory: the tracker holds at most ``max_vectors`` d-long vectors at once
    (its carried blocks and the workspace of each solve), in the work dtype of
    the products (float32 unless they are float64,
    :func:`~eoskit.eigs.krylov.work_dtype`). A smaller bound means smaller
    bases: longer cold solves (thick restarts), never a different answer's
    error bound. It must leave a basis of k + 3 vectors (``ValueError`` otherwise).

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
    criterion: str = "residual"
    max_matvecs: int = 40
    max_vectors: int | None = None  # default: default_max_vectors(k)
    carried: Tensor | None = None  # (d, k+1) start block for the next solve, work dtype
    drift: float = 0.0  # how far the values moved per step lately (decaying maximum)
    last_values: np.ndarray | None = None
    last_info: dict | None = None
    _history: list = field(default_factory=list, repr=False)
    _calm: list = field(default_factory=list, repr=False)
    _alternate: Tensor | None = field(default=None, repr=False)

    mode: ClassVar[str]  # each tracker class names itself

    def __post_init__(self):
        if type(self) is SharpnessTracker:
            raise TypeError("SharpnessTracker is a base class: use make_tracker(mode, ...)")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        if self.max_vectors is None:
            self.max_vectors = default_max_vectors(self.k)
        self.max_basis()  # a bound too small for k fails here, not at the first solve

    def max_basis(self) -> int:
        """Basis vectors a solve may use under ``max_vectors``: ``(max_vectors − 11k − 15) // 2``.

        Held across a solve (7k + 3): the carried block, the new one and the
        other generation's (k+1 each), three generations of eigenvectors and the
        result (k each). A solve adds its basis and images (2 per basis vector),
        two (k+2)-row Ritz blocks and the two handed from Lanczos to a restart
        (4(k+2)), the expansion's temporaries (3) and the product's output (1).
        """
        k = self.k
        cap = (self.max_vectors - _HELD_PER_K * k - _HELD) // 2
        if cap < k + 3:
            raise ValueError(f"max_vectors must be at least {min_max_vectors(k)} for k = {k}, "
                             f"got {self.max_vectors}")
        return cap

    def measure(self, hvp, dim: int, dtype, device) -> EigResult:
        """Top-k eigenpairs at the current point, whose Hessian-vector product is ``hvp``."""
        self._in_work_dtype(work_dtype(dtype))
        if self.carried is None:
            res = compact(self._adopt(self._cold(hvp, dim, dtype, device)))
        else:
            res = compact(self._warm_solve(hvp, dim, dtype, device))
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

    def _in_work_dtype(self, wd: torch.dtype) -> None:
        """Carried blocks in the work dtype (a checkpoint or an earlier solve may differ)."""
        def cast(t):
            return t if t is None or t.dtype == wd else t.to(wd)
        self.carried, self._alternate = cast(self.carried), cast(self._alternate)
        self._history = [(cast(y), cast(c)) for y, c in self._history]

    # ---- what a mode defines
    def _warm_solve(self, hvp, dim, dtype, device) -> EigResult:
        """One solve from the carried block; leaves the next start block in ``carried``."""
        raise NotImplementedError

    def _cold_target(self) -> tuple[float, str]:
        """Tolerance and criterion of a cold (random start) solve."""
        return self.tol, self.criterion

    # ---- shared pieces
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
        if len(hist) == 3:
            hist[0] = (hist[0][0], None)  # its start block is never used again
        if len(hist) >= 2:
            o1 = overlap(hist[-1][0], hist[-2][0])
            o2 = overlap(hist[-1][0], hist[-3][0]) if len(hist) == 3 else 0.0
            self._calm.append(max(o1, o2))
            del self._calm[:-3]
            self._alternate = hist[1][1] if len(hist) == 3 else None
            if len(hist) == 3 and hist[1][1] is not None and o2 > o1:
                self._alternate, self.carried = self.carried, hist[1][1]

    def _cold(self, hvp, dim, dtype, device) -> EigResult:
        """Lanczos from a random vector, converged for the wanted k, keeping k+1 Ritz pairs."""
        tol, criterion = self._cold_target()
        return lanczos(hvp, dim, self.k, tol=tol, dtype=dtype, device=device,
                       seed=self.solves, criterion=criterion, keep=min(dim, self.k + 1),
                       max_basis=self.max_basis())

    def _adopt(self, res: EigResult) -> EigResult:
        """Start tracking afresh from a cold solve: its k+1 Ritz vectors become the block."""
        self._history.clear()
        self._calm.clear()
        self._alternate = None
        self.carried = res.ritz_vectors.clone()  # its own k+1 columns, not the solver's block
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

    # ---- checkpoints
    def state_dict(self) -> dict:
        return {"solves": self.solves, "warm": _cpu(self.warm), "carried": _cpu(self.carried),
                "drift": self.drift,
                "last_values": None if self.last_values is None else self.last_values.tolist(),
                # the period-two start choice reads the last three solutions: resume needs them
                "history": [(_cpu(y), _cpu(c)) for y, c in self._history],
                # and so does the streaming turbulence test: recent overlaps, the other block
                "calm": list(self._calm), "alternate": _cpu(self._alternate)}

    def load_state_dict(self, s: dict, device) -> None:
        self.solves = s["solves"]
        self.warm = None if s["warm"] is None else s["warm"].to(device)
        carried = s.get("carried")
        if carried is None and self.warm is not None:
            carried = self.warm  # an older checkpoint: warm vectors only
        self.carried = None if carried is None else carried.to(device)
        self.drift = s.get("drift", 0.0)
        lv = s.get("last_values")
        self.last_values = None if lv is None else np.asarray(lv, dtype=float)
        self._history = [(y.to(device), None if c is None else c.to(device))
                         for y, c in s.get("history", [])]
        self._calm = list(s.get("calm", []))
        alternate = s.get("alternate")
        self._alternate = None if alternate is None else alternate.to(device)


def _cpu(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().cpu()


@dataclass
class LanczosTracker(SharpnessTracker):
    """Each solve is :func:`~eoskit.eigs.solvers.subspace_eigs` from the carried block.

    The block is the previous point's top ``k+1`` Ritz vectors advanced by one
    free power step (their images ``H·y`` are known, so ``H·y/‖H·y‖`` costs
    nothing), converged to ``tol`` by ``criterion``. Carrying the ``k+1``-th
    vector resolves the gap from the first products, so the eigenvalue
    criterion is safe where λ_k and λ_{k+1} nearly cross (as they do at the
    Edge of Stability); ~2-3 products per step at ``tol=1e-4``. A solve that
    does not converge within ``max_matvecs`` products is replaced by a cold one.
    """

    mode: ClassVar[str] = "lanczos"

    def _warm_solve(self, hvp, dim, dtype, device) -> EigResult:
        res = subspace_eigs(hvp, dim, self.k, tol=self.tol, v0=self.carried, dtype=dtype,
                            device=device, seed=self.solves, criterion=self.criterion,
                            max_iter=self.max_matvecs, keep=min(dim, self.k + 1),
                            max_basis=self.max_basis())
        if not res.converged:
            del res  # its basis is freed before the cold solve builds one
            return self._adopt(self._cold(hvp, dim, dtype, device))
        self.carried = power_step(res)
        return res
