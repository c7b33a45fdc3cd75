"""RMSProp's two reference trajectories beside its discrete run (state: w and ν).

* :class:`StableTrack` (flow ``gradient``): RMSProp's stable flow by
  :func:`eoskit.flows.rmsprop_central.integrate_stable`; its sharpness is the
  preconditioned one, ``λ₁(P^{-1/2}HP^{-1/2})``.
* :class:`RMSPropCentralTrack` (flow ``central``): the central flow of
  :class:`eoskit.flows.rmsprop_central.RMSPropCentralFlow`, K Euler substeps per step.

Both start from ``ν₀ = (1−α)∇L(w₀)²`` (:func:`eoskit.flows.rmsprop_central.initial_nu`).
"""

from __future__ import annotations

import time

from torch import Tensor

from eoskit.flows.gradient import GradientFlowSettings
from eoskit.flows.rmsprop_central import RMSPropCentralFlow, initial_nu, integrate_stable
from eoskit.flows.tracks import CentralTrack, GradientTrack
from eoskit.objective import Objective


class StableTrack(GradientTrack):
    def __init__(self, obj: Objective, x0: Tensor, lr: float, eig_tol: float,
                 settings: GradientFlowSettings, alpha: float, eps: float):
        super().__init__(obj, x0, lr, eig_tol, settings)
        self.alpha, self.eps = alpha, eps
        self.nu = initial_nu(obj.grad(self.x), alpha)

    def advance(self, n: int) -> None:
        t0 = time.perf_counter()
        self.x, self.nu, info = integrate_stable(self.obj, self.x, self.nu, self.lr, n,
                                                 self.alpha, self.eps, self.settings)
        self.nu = self.nu.clamp(min=0)
        self.cost["grads"] += info["grads"]
        self.cost["seconds"] += time.perf_counter() - t0
        self.cost["time"] += n

    def _preconditioner(self) -> Tensor:
        return self.nu.sqrt() + self.eps

    def state_dict(self) -> dict:
        return {**super().state_dict(), "nu": self.nu.cpu()}

    def load_state_dict(self, state: dict, device) -> None:
        super().load_state_dict(state, device)
        self.nu = state["nu"].to(device)


class RMSPropCentralTrack(CentralTrack):
    def __init__(self, obj: Objective, x0: Tensor, flow: RMSPropCentralFlow):
        super().__init__(obj, x0, flow)
        self.nu = initial_nu(obj.grad(self.x), flow.alpha)

    def _point(self):
        t0 = time.perf_counter()
        p = self.flow.point(self.obj, self.x, self.nu)
        self._count(p, time.perf_counter() - t0)
        return p

    def _euler(self, p, dt: float) -> None:
        super()._euler(p, dt)
        self.nu = (self.nu + dt * p.nu_velocity).clamp(min=0).detach()  # ν is a second moment

    def state_dict(self) -> dict:
        return {**super().state_dict(), "nu": self.nu.cpu()}

    def load_state_dict(self, state: dict, device) -> None:
        super().load_state_dict(state, device)
        self.nu = state["nu"].to(device)
