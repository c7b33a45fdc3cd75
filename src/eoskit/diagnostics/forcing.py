"""The forcing identity over a run (docs/theory.md §3): :class:`ForcingTracker`."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class ForcingTracker:
    """Both sides of the telescoping identity Σ_t w_t (2/η − κ_t) = 2 (L_0 − L_T)/S_T.

    ``update`` takes each step's κ_t and |s_t|²; the left side is accumulated
    from κ_t, the right from the first and latest losses, so their difference
    checks the loss-change formula over the whole run.

    Example (a quadratic with curvature 4 under η = 0.1: κ_t = 4 every step):
        >>> tr = ForcingTracker(lr=0.1)
        >>> tr.update(loss_t=2.0, loss_next=0.72, kappa=4.0, step_norm_sq=0.16)
        >>> round(tr.lhs, 12), round(tr.rhs, 12)
        (16.0, 16.0)
    """

    lr: float
    loss_0: float | None = None
    loss_T: float | None = None
    total_sq: float = 0.0  # S_T = Σ |s_t|²
    weighted_gap: float = 0.0  # Σ |s_t|² (2/η − κ_t)
    weighted_kappa: float = 0.0  # Σ |s_t|² κ_t

    def update(self, loss_t: float, loss_next: float, kappa: float, step_norm_sq: float) -> None:
        if self.loss_0 is None:
            self.loss_0 = loss_t
        self.loss_T = loss_next
        if not math.isfinite(kappa) or step_norm_sq <= 0.0:
            return
        self.total_sq += step_norm_sq
        self.weighted_gap += step_norm_sq * (2.0 / self.lr - kappa)
        self.weighted_kappa += step_norm_sq * kappa

    @property
    def weighted_mean_kappa(self) -> float:
        return self.weighted_kappa / self.total_sq if self.total_sq > 0 else math.nan

    @property
    def lhs(self) -> float:
        return self.weighted_gap / self.total_sq if self.total_sq > 0 else math.nan

    @property
    def rhs(self) -> float:
        if self.total_sq <= 0 or self.loss_0 is None:
            return math.nan
        return 2.0 * (self.loss_0 - self.loss_T) / self.total_sq

    def state(self) -> dict:
        return dict(loss_0=self.loss_0, loss_T=self.loss_T, total_sq=self.total_sq,
                    weighted_gap=self.weighted_gap, weighted_kappa=self.weighted_kappa)
