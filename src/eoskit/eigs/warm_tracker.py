"""What a warm-started tracker of the top-k carries from one measurement to the next: the
options the measuring trackers share, the start vectors, the last values and λ_{k+1}
estimates, and their checkpoint (:class:`~eoskit.eigs.shared_tracker.SharedTracker`,
:class:`~eoskit.eigs.lean_tracker.LeanTracker`).

Example:
    >>> import numpy as np
    >>> tr = WarmTracker(1, 1e-3)
    >>> tr.remember("raw", np.array([4.0, 1.0]), np.array([0.0, 0.01]), cold=True)
    >>> tr.values["raw"].tolist(), tr.next_value["raw"]
    ([4.0], 1.01)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from eoskit.eigs.krylov import work_dtype
from eoskit.eigs.warm_stopping import CRITERIA, carried_next


def block(columns: list[Tensor]) -> Tensor:
    """(d, k) from k columns; one column is a view, not a copy."""
    return columns[0].unsqueeze(1) if len(columns) == 1 else torch.stack(columns, 1)


@dataclass
class WarmTracker:
    """Options and carried state of a warm-started top-k tracker of one or two quantities
    (``"raw"``: ``H``; ``"pre"``: ``P^{-1/2} H P^{-1/2}``)."""

    k: int
    tol: float
    restart_every: int = 50  # a cold probe every that many measurements (0: never)
    max_matvecs: int = 40  # a warm solve's products before a cold one replaces it
    max_vectors: int | None = None  # bound on d-long vectors (the subclass's default)
    criterion: str = "eigenvalue"  # one of warm_stopping.CRITERIA
    quantities: int = 2  # most quantities measured at once; sets the least budget
    eigenvectors: bool = True  # False: results carry no Ritz vectors (k d-long each saved)
    max_warm_products: int | None = None  # cap on a warm measurement (None: until tol)
    solves: int = 0
    carried: dict = field(default_factory=dict)  # quantity -> (d, k) starts, own space
    values: dict = field(default_factory=dict)  # quantity -> last top-k values
    next_value: dict = field(default_factory=dict)  # quantity -> estimate of λ_{k+1}
    last_info: dict | None = None

    def check_options(self) -> None:
        if self.quantities not in (1, 2):
            raise ValueError(f"quantities must be 1 or 2, got {self.quantities}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        if self.max_warm_products is not None and self.max_warm_products < 1:
            raise ValueError(f"max_warm_products must be at least 1, got {self.max_warm_products}")

    def targets_for(self, p, raw: bool, dtype, device) -> tuple[Tensor | None, tuple[str, ...]]:
        """``p`` in the work dtype of ``dtype`` on ``device`` (None stays None), and the
        quantities a measurement takes: ``"raw"``, and ``"pre"`` given ``p``; ``raw=False``
        the preconditioned one alone (``p`` needed)."""
        if not raw and p is None:
            raise ValueError("raw=False measures the preconditioned operator: p is needed")
        p = None if p is None else p.detach().to(dtype=work_dtype(dtype), device=device)
        return p, ("raw",) if p is None else ("raw", "pre") if raw else ("pre",)

    def probe_wins(self, cold: np.ndarray, warm: np.ndarray) -> bool:
        """A cold probe's values replace a warm solve's when their top-k sum is larger by
        more than 0.1·tol relative (Ritz values are lower bounds)."""
        return (float(np.sum(cold[:self.k])) >
                float(np.sum(warm[:self.k])) * (1 + 0.1 * self.tol))

    def remember(self, target: str, th: np.ndarray, err: np.ndarray, cold: bool) -> None:
        """Keep a solve's top-k values and the λ_{k+1} estimate to carry
        (:func:`~eoskit.eigs.warm_stopping.carried_next`)."""
        k = min(self.k, len(th))
        estimate = carried_next(th, err, k, cold, self.values.get(target),
                                self.next_value.get(target))
        self.values[target] = th[:k].copy()
        if estimate is not None:
            self.next_value[target] = estimate

    # ---- checkpoints
    def state_dict(self) -> dict:
        return {"solves": self.solves,
                "carried": {t: c.detach().cpu() for t, c in self.carried.items()},
                "values": {t: v.tolist() for t, v in self.values.items()},
                "next_value": dict(self.next_value)}

    def load_state_dict(self, s: dict, device) -> None:
        self.solves = s["solves"]
        self.carried = {t: c.to(device) for t, c in s["carried"].items()}
        self.values = {t: np.asarray(v, dtype=float) for t, v in s["values"].items()}
        self.next_value = dict(s["next_value"])
