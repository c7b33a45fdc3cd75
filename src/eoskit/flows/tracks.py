"""The three trajectories side by side, each advanced one recorded block at a time.

* :class:`GDTrack`: the discrete run. It runs ``half`` steps ahead of the
  recorded step so the centred moving average of its loss (and of ‖∇L‖²)
  over ``2·half + 1`` steps is known when the row is written.
* :class:`GradientTrack`: gradient flow by :func:`eoskit.flows.gradient.integrate`.
* :class:`CentralTrack`: the central flow (:class:`eoskit.flows.central.CentralFlow`).

Each ``row(s)`` measures the track at its current point (step ``s``) and each
``advance(n)`` moves it n units of time; ``state_dict``/``load_state_dict``
carry everything a resumed run needs to repeat the uninterrupted one. Costs
(HVPs, third-derivative contractions, gradients, seconds) are counted per track.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from eoskit.eigs import LanczosTracker, preconditioned_matvec
from eoskit.flows.central import CentralFlow, CentralPoint
from eoskit.flows.gradient import GradientFlowSettings, integrate
from eoskit.objective import Objective


class FlowDiverged(ArithmeticError):
    """A flow's iterate stopped being finite (the run ends ``diverged``, exit 3)."""


class _Track:
    name = ""

    def __init__(self, obj: Objective, lr: float, eig_tol: float, k: int = 1):
        self.obj, self.lr = obj, lr
        self.tracker = LanczosTracker(k, eig_tol)
        self.cost = {"hvps": 0, "d3_calls": 0, "grads": 0, "seconds": 0.0, "time": 0}

    def _sharpness(self, x: Tensor, P: Tensor | None = None) -> tuple[float, Tensor]:
        """Top eigenpair of H, or of P^{-1/2}HP^{-1/2} for an adaptive optimiser's P."""
        lam, vecs = self._top(x, P)
        return lam, vecs[:, 0]

    def _top(self, x: Tensor, P: Tensor | None = None) -> tuple[float, Tensor]:
        """The top eigenvalue and the tracker's k eigenvectors (d, k)."""
        before = self.obj.hvp_count
        with self.obj.at(x) as point:
            mv = point.hvp if P is None else preconditioned_matvec(point.hvp, P)
            res = self.tracker.measure(mv, self.obj.dim, x.dtype, x.device)
        self.cost["hvps"] += self.obj.hvp_count - before
        return float(res.eigenvalues[0]), res.eigenvectors

    def _base_state(self) -> dict:
        return {"tracker": self.tracker.state_dict(), "cost": dict(self.cost)}

    def _load_base(self, state: dict, device) -> None:
        self.tracker.load_state_dict(state["tracker"], device)
        self.cost = dict(state["cost"])


class GDTrack(_Track):
    name = "gd"

    def __init__(self, obj: Objective, x0: Tensor, lr: float, eig_tol: float, half: int,
                 rule=None, k: int = 1):
        super().__init__(obj, lr, eig_tol, k)
        self.half = half
        self.rule = rule  # an eoskit.optim rule (None: plain GD); P per step if preconditioned
        self.ps: list[Tensor | None] = []
        self.step = 0
        self.xs = [x0.detach().clone()]  # iterates for steps step .. step + half + 1
        self.stats: dict[int, tuple[float, float]] = {}  # step -> (loss, ‖∇L‖²)
        self.unlogged: list[tuple[int, float, float]] = []  # per-step stats not yet taken
        self.logged_through = -1  # the last step take_steps() has returned
        self._fill()

    @property
    def x(self) -> Tensor:
        return self.xs[0]

    def _fill(self) -> None:
        t0 = time.perf_counter()
        while len(self.xs) < self.half + 2:
            t = self.step + len(self.xs) - 1
            x = self.xs[-1]
            loss, g = self.obj.value_and_grad(x)
            self.stats[t] = (float(loss), float(g @ g))
            self.unlogged.append((t, *self.stats[t]))
            if self.rule is None:
                self.ps.append(None)
                self.xs.append((x - self.lr * g).detach())
            else:
                pre = self.rule.preconditioner(g, x) if self.rule.preconditioned else None
                self.ps.append(None if pre is None else pre.detach())
                self.xs.append((x + self.rule.step(g, x)).detach())
            self.cost["grads"] += 1
        self.cost["seconds"] += time.perf_counter() - t0

    def advance(self, n: int) -> None:
        for _ in range(n):
            self.xs.pop(0)
            self.ps.pop(0)
            self.step += 1
            self.stats = {t: v for t, v in self.stats.items() if t >= self.step - self.half}
            self._fill()
            self.cost["time"] += 1

    def take_steps(self) -> list[dict]:
        """Every step's raw loss and ‖∇L‖² up to the current step, each returned once."""
        out = [{"step": t, "loss": v, "grad_norm_sq": g}
               for t, v, g in self.unlogged if t <= self.step]
        self.unlogged = [u for u in self.unlogged if u[0] > self.step]
        self.logged_through = self.step
        return out

    def smoothed(self) -> tuple[float, float]:
        """Centred moving averages of the loss and ‖∇L‖² over the window around ``step``."""
        lo, hi = max(0, self.step - self.half), self.step + self.half
        vals = np.array([self.stats[t] for t in range(lo, hi + 1)])
        return float(vals[:, 0].mean()), float(vals[:, 1].mean())

    def row(self) -> dict:
        loss, gn2 = self.stats[self.step]
        sl, sg = self.smoothed()
        P = self.ps[0]
        lam, q = self._top(self.x, P)
        step = self.xs[1] - self.xs[0]
        u = q[:, 0]
        if P is not None:
            u = u.to(P.dtype) * P.rsqrt()  # the oscillation direction in w: P^{-1/2}q
            u = u / u.norm()
        # GD's half-amplitude along the top eigenvector, from consecutive iterates
        du = float(u.to(self.x.dtype) @ step)
        return {"flow": self.name, "loss": loss, "predicted_loss": sl, "grad_norm_sq": gn2,
                "predicted_grad_norm_sq": sg, "sharpness": lam, "dist_to_gd": 0.0,
                "half_amplitude_sq": du * du / 4,
                "trace_half_amplitude_sq": _trace_half_amplitude_sq(q, step, P),
                **self._costs()}

    def _costs(self) -> dict:
        return {"hvps": self.cost["hvps"], "d3_calls": self.cost["d3_calls"]}

    def state_dict(self) -> dict:
        return {**self._base_state(), "step": self.step, "stats": dict(self.stats),
                "unlogged": list(self.unlogged), "logged_through": self.logged_through,
                "xs": [x.cpu() for x in self.xs],
                "ps": [None if p is None else p.cpu() for p in self.ps],
                "rule": None if self.rule is None else self.rule.state_dict()}

    def load_state_dict(self, state: dict, device) -> None:
        self._load_base(state, device)
        self.step, self.stats = state["step"], dict(state["stats"])
        self.unlogged = [tuple(u) for u in state["unlogged"]]
        self.logged_through = state["logged_through"]
        self.xs = [x.to(device) for x in state["xs"]]
        self.ps = [None if p is None else p.to(device) for p in state["ps"]]
        if self.rule is not None:
            self.rule.load_state_dict(state["rule"])


def _trace_half_amplitude_sq(q: Tensor, step: Tensor, P: Tensor | None) -> float:
    """Σ_i c_i²/4 with c = Qᵀ P^{1/2} (x_{t+1} − x_t): the trace of GD's oscillation
    covariance in the coordinates of the central flow's X (U = P^{-1/2}Q, P = 1 for GD),
    summed over the tracker's k eigenvectors q (d, k)."""
    scaled = step if P is None else step.to(P.dtype) * P.sqrt()
    c = q.T.to(scaled.dtype) @ scaled  # (k,)
    return float(c @ c) / 4


class GradientTrack(_Track):
    name = "gradient"

    def __init__(self, obj: Objective, x0: Tensor, lr: float, eig_tol: float,
                 settings: GradientFlowSettings):
        super().__init__(obj, lr, eig_tol)
        self.x = x0.detach().clone()
        self.settings = settings

    def advance(self, n: int) -> None:
        t0 = time.perf_counter()
        self.x, info = integrate(self.obj, self.x, self.lr, n, self.settings)
        self.cost["grads"] += info["grads"]
        self.cost["seconds"] += time.perf_counter() - t0
        self.cost["time"] += n

    def _preconditioner(self) -> Tensor | None:
        """The P its sharpness is measured with (None: H itself)."""
        return None

    def row(self, gd_x: Tensor) -> dict:
        loss, g = self.obj.value_and_grad(self.x)
        lam, _ = self._sharpness(self.x, self._preconditioner())
        gn2 = float(g @ g)
        return {"flow": self.name, "loss": float(loss), "predicted_loss": float(loss),
                "grad_norm_sq": gn2, "predicted_grad_norm_sq": gn2, "sharpness": lam,
                "dist_to_gd": float(torch.linalg.vector_norm(self.x - gd_x)),
                "hvps": self.cost["hvps"], "d3_calls": 0}

    def state_dict(self) -> dict:
        return {**self._base_state(), "x": self.x.cpu()}

    def load_state_dict(self, state: dict, device) -> None:
        self._load_base(state, device)
        self.x = state["x"].to(device)


class CentralTrack(_Track):
    name = "central"

    def __init__(self, obj: Objective, x0: Tensor, flow: CentralFlow):
        super().__init__(obj, flow.lr, flow.eig_tol)
        self.x = x0.detach().clone()
        self.flow = flow
        self._pending: CentralPoint | None = None  # the point measured by row(), reused

    def _point(self) -> CentralPoint:
        t0 = time.perf_counter()
        p = self.flow.point(self.obj, self.x)
        self._count(p, time.perf_counter() - t0)
        return p

    def _count(self, p: CentralPoint, seconds: float) -> None:
        self.cost["hvps"] += p.hvps
        self.cost["d3_calls"] += p.d3_calls
        self.cost["grads"] += 1
        self.cost["seconds"] += seconds

    def advance(self, n: int) -> None:
        dt = 1.0 / self.flow.substeps
        for _ in range(n):
            for _ in range(self.flow.substeps):
                if not bool(self.x.isfinite().all()):  # no eigensolver on a blown-up point
                    raise FlowDiverged(self.name)
                p = self._pending if self._pending is not None else self._point()
                self._pending = None
                self._euler(p, dt)
            self.cost["time"] += 1

    def _euler(self, p, dt: float) -> None:
        """One Euler substep of the flow's state along the point's velocities."""
        self.x = (self.x + dt * p.velocity).detach()

    def row(self, gd_x: Tensor) -> dict:
        p = self._pending = self._point()
        return {"flow": self.name, "loss": p.loss, "predicted_loss": p.predicted_loss,
                "grad_norm_sq": p.grad_norm_sq, "predicted_grad_norm_sq": p.predicted_grad_norm_sq,
                "sharpness": float(p.eigenvalues[0]), "n_constrained": p.n_constrained,
                "trace_sigma": p.trace_sigma, "sigma_top": p.sigma_top,
                "dist_to_gd": float(torch.linalg.vector_norm(self.x - gd_x)),
                "hvps": self.cost["hvps"], "d3_calls": self.cost["d3_calls"]}

    def state_dict(self) -> dict:
        # saved before row(): no pending point (the resumed run measures it again)
        return {"cost": dict(self.cost), "x": self.x.cpu(), "flow": self.flow.state_dict()}

    def load_state_dict(self, state: dict, device) -> None:
        self.cost = dict(state["cost"])
        self.x = state["x"].to(device)
        self.flow.load_state_dict(state["flow"], device)
        self._pending = None
