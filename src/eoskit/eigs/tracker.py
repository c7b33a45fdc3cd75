"""Sharpness along a trajectory: the shared tracker base and the warm-started block tracker.

:class:`SharpnessTracker` holds what every tracker shares: the carried start
block, the period-two aware choice of the next start (:meth:`_choose_start`),
the cold start, the periodic restart probe (:meth:`_probe`), the checkpoint
state and :meth:`measure`. A tracker's mode picks the class:
``SharpnessTracker(k, tol, restart_every, mode=...)`` builds a
:class:`LanczosTracker` (``mode='lanczos'``, below) or a
:class:`~eoskit.eigs.streaming.StreamingTracker` (``mode='streaming'``).

Example:
    >>> import torch
    >>> D = torch.linspace(0.0, 5.0, 30, dtype=torch.float64)
    >>> tr = SharpnessTracker(1, 1e-8, 0, criterion="eigenvalue")
    >>> type(tr).__name__
    'LanczosTracker'
    >>> [round(float(tr.measure(lambda v: D * v, 30, torch.float64, "cpu").eigenvalues[0]), 6)
    ...  for _ in range(2)]
    [5.0, 5.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from eoskit.eigs.krylov import CRITERIA, WORK, _orthonormal_columns
from eoskit.eigs.solvers import EigResult, lanczos, subspace_eigs

TRACKER_MODES = ("lanczos", "streaming")
_TRACKERS: dict[str, type[SharpnessTracker]] = {}  # mode -> class, filled as classes are defined


def _overlap(A: Tensor, B: Tensor) -> float:
    """Smallest cosine between the column spaces of two orthonormal blocks (|a·b| for vectors)."""
    if A.shape[1] != B.shape[1]:
        return 0.0
    return float(torch.linalg.svdvals(A.T @ B).min())


def _power_step(res: EigResult) -> Tensor:
    """Next start block: the Ritz vectors advanced by one (free) power step, orthonormal (d, p)."""
    Y, HY = res.ritz_vectors, res.ritz_images
    A = _orthonormal_columns(HY)
    return A if A.shape[1] == Y.shape[1] else _orthonormal_columns(Y)


@dataclass
class SharpnessTracker:
    """Top-k sharpness along a trajectory, warm-started, with a periodic cold restart.

    Constructing ``SharpnessTracker(k, tol, restart_every, mode=..., criterion=...)``
    returns the tracker class of that mode (``TRACKER_MODES``): a
    :class:`LanczosTracker` (default) or a
    :class:`~eoskit.eigs.streaming.StreamingTracker`.

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
    max_matvecs: int = 40
    carried: Tensor | None = None  # (d, k+1) float64 start block for the next solve
    drift: float = 0.0  # how far the values moved per step lately (decaying maximum)
    last_values: np.ndarray | None = None
    last_info: dict | None = None
    _history: list = field(default_factory=list, repr=False)
    _calm: list = field(default_factory=list, repr=False)
    _alternate: Tensor | None = field(default=None, repr=False)

    def __init_subclass__(cls, mode: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if mode is not None:
            _TRACKERS[mode] = cls

    def __new__(cls, *args, **kwargs):
        if cls is SharpnessTracker:
            mode = kwargs.get("mode", args[5] if len(args) > 5 else "lanczos")
            if mode not in TRACKER_MODES:
                raise ValueError(f"mode must be one of {TRACKER_MODES}, got {mode!r}")
            cls = _TRACKERS[mode]
        return super().__new__(cls)

    def __post_init__(self):
        own = next((m for m, c in _TRACKERS.items() if c is type(self)), None)
        if self.mode != own:
            raise ValueError(f"a {type(self).__name__} tracks mode {own!r}, got {self.mode!r}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")

    def measure(self, hvp, dim: int, dtype, device) -> EigResult:
        """Top-k eigenpairs at the current point, whose Hessian-vector product is ``hvp``."""
        if self.carried is None:
            res = self._adopt(self._cold(hvp, dim, dtype, device))
        else:
            res = self._warm_solve(hvp, dim, dtype, device)
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
        if len(hist) >= 2:
            o1 = _overlap(hist[-1][0], hist[-2][0])
            o2 = _overlap(hist[-1][0], hist[-3][0]) if len(hist) == 3 else 0.0
            self._calm.append(max(o1, o2))
            del self._calm[:-3]
            self._alternate = hist[1][1] if len(hist) == 3 else None
            if len(hist) == 3 and hist[1][1] is not None and o2 > o1:
                self._alternate, self.carried = self.carried, hist[1][1]

    def _cold(self, hvp, dim, dtype, device) -> EigResult:
        """Lanczos from a random vector, converged for the wanted k, keeping k+1 Ritz pairs."""
        tol, criterion = self._cold_target()
        return lanczos(hvp, dim, self.k, tol=tol, dtype=dtype, device=device,
                       seed=self.solves, criterion=criterion, keep=min(dim, self.k + 1))

    def _adopt(self, res: EigResult) -> EigResult:
        """Start tracking afresh from a cold solve: its k+1 Ritz vectors become the block."""
        self._history.clear()
        self._calm.clear()
        self._alternate = None
        self.carried = res.ritz_vectors
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
            carried = self.warm.to(WORK)  # an older checkpoint: warm vectors only
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
class LanczosTracker(SharpnessTracker, mode="lanczos"):
    """Each solve is :func:`~eoskit.eigs.solvers.subspace_eigs` from the carried block.

    The block is the previous point's top ``k+1`` Ritz vectors advanced by one
    free power step (their images ``H·y`` are known, so ``H·y/‖H·y‖`` costs
    nothing), converged to ``tol`` by ``criterion``. Carrying the ``k+1``-th
    vector resolves the gap from the first products, so the eigenvalue
    criterion is safe where λ_k and λ_{k+1} nearly cross (as they do at the
    Edge of Stability); ~2-3 products per step at ``tol=1e-4``. A solve that
    does not converge within ``max_matvecs`` products is replaced by a cold one.
    """

    def _warm_solve(self, hvp, dim, dtype, device) -> EigResult:
        res = subspace_eigs(hvp, dim, self.k, tol=self.tol, v0=self.carried, dtype=dtype,
                            device=device, seed=self.solves, criterion=self.criterion,
                            max_iter=self.max_matvecs, keep=min(dim, self.k + 1))
        if not res.converged:
            return self._adopt(self._cold(hvp, dim, dtype, device))
        self.carried = _power_step(res)
        return res
