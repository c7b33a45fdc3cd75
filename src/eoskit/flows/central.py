"""The central flow of gradient descent (Cohen, Damian et al., ICLR 2025).

GD at the Edge of Stability oscillates across the top eigendirections of the
Hessian while its *time-averaged* trajectory follows a smooth path, the
central flow (time in units of GD steps)

    dw/dt = −η [∇L(w) + ½ ∇⟨H(w), Σ⟩],    Σ = U X Uᵀ,

where U (d, m) spans the eigenvectors whose eigenvalues are at or near the
stability edge 2/η, and X ⪰ 0 (m, m) is the covariance of the oscillation in
that basis. X is fixed by complementarity: the constrained block S = UᵀHU
must stay at or below 2/η, X is non-zero only where it is at the edge.
``∇⟨H, Σ⟩`` at fixed Σ is ``Σ_ij X_ij ∇(u_iᵀ H u_j)``, eoskit's third-derivative
contraction ``Objective.d3(w, u_i, u_j)``.

Discretisation (docs/theory.md §7): K explicit Euler substeps of
dt = 1/K per GD step, X chosen at each substep so that the *next* substep's
block is at the edge, ``(2/η)I − S(w + dt·ẇ) ⪰ 0`` to first order in dt:

    alpha = (2/η)I − S + dt·η [J_ij·∇L],     B[X]_ij = dt·(η/2) Σ_kl (J_ij·J_kl) X_kl,

a positive semidefinite linear complementarity problem (see
:mod:`eoskit.flows.complementarity`). This is the time-stepping scheme for
differential complementarity problems used by the paper; its right-hand side
is only Lipschitz (X switches on and off), so a higher-order Runge–Kutta
scheme does not gain order across those events, while Euler with the
look-ahead keeps the constraint satisfied each substep. It converges at first
order in dt (measured in ``tests/flows/test_flows.py``).

The tracked eigenpairs come from eoskit's warm-started
:class:`~eoskit.eigs.SharpnessTracker` (its top ``k``); those with eigenvalue
≥ ``fraction·2/η`` enter the complementarity problem (the others cannot reach
the edge within a substep, and complementarity would give them X = 0).
With none constrained the flow is Euler on gradient flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from eoskit.eigs import LanczosTracker, SharpnessTracker
from eoskit.flows.complementarity import solve_complementarity
from eoskit.objective import Objective

DEFAULT_FRACTION = 0.75


@dataclass
class CentralPoint:
    """What the central flow knows at one point w: its velocity and predictions."""

    loss: float
    grad_norm_sq: float
    eigenvalues: np.ndarray  # (k,) tracked, descending
    X: np.ndarray  # (m, m) oscillation covariance in the constrained basis
    constrained: np.ndarray  # (m,) eigenvalues entering the X solve
    velocity: Tensor  # (d,) dw/dt
    hvps: int
    d3_calls: int
    nu_velocity: Tensor | None = None  # dν/dt (the RMSProp flow's second moment), else None

    @property
    def n_constrained(self) -> int:
        return int(self.X.shape[0])

    @property
    def oscillation_loss(self) -> float:
        """½⟨H, Σ⟩ = ½ Σ_i λ_i X_ii (U are Ritz vectors, so UᵀHU = diag λ)."""
        return 0.5 * float(np.sum(self.constrained * np.diag(self.X)))

    @property
    def predicted_loss(self) -> float:
        """The time-averaged GD loss the flow predicts: L + ½⟨H, Σ⟩."""
        return self.loss + self.oscillation_loss

    @property
    def predicted_grad_norm_sq(self) -> float:
        """E‖∇L(w + δ)‖² ≈ ‖∇L‖² + ⟨H², Σ⟩ for a zero-mean oscillation δ."""
        return self.grad_norm_sq + float(np.sum(self.constrained ** 2 * np.diag(self.X)))

    @property
    def trace_sigma(self) -> float:
        return float(np.trace(self.X)) if self.X.size else 0.0

    @property
    def sigma_top(self) -> float:
        """Top eigenvalue of Σ: the squared half-amplitude of the predicted oscillation."""
        return float(np.linalg.eigvalsh(self.X).max()) if self.X.size else 0.0


def check_flow_options(substeps: int, fraction: float) -> None:
    """The options every central flow shares: K ≥ 1 Euler substeps, a fraction in (0, 1]."""
    if substeps < 1:
        raise ValueError(f"substeps must be at least 1, got {substeps}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")


@dataclass
class EdgeFlow:
    """What every central flow holds: η, K substeps, the fraction of 2/η that enters the
    X solve, and its warm-started tracker of the top k eigenpairs (the only state)."""

    lr: float
    substeps: int = 4
    fraction: float = DEFAULT_FRACTION
    k: int = 3
    eig_tol: float = 1e-5
    tracker: SharpnessTracker = field(init=False)

    def __post_init__(self):
        check_flow_options(self.substeps, self.fraction)
        self.tracker = LanczosTracker(self.k, self.eig_tol)

    @property
    def threshold(self) -> float:
        return 2.0 / self.lr

    def state_dict(self) -> dict:
        return {"tracker": self.tracker.state_dict()}

    def load_state_dict(self, state: dict, device) -> None:
        self.tracker.load_state_dict(state["tracker"], device)


@dataclass
class CentralFlow(EdgeFlow):
    """The central flow of GD: one point's velocity and predictions at a time."""

    def point(self, obj: Objective, w: Tensor) -> CentralPoint:
        """Velocity and predictions at w (advances the tracker by one solve)."""
        hvps_before = obj.hvp_count
        with obj.at(w) as at:
            loss, g = float(at.value), at.grad.detach()
            res = self.tracker.measure(at.hvp, obj.dim, w.dtype, w.device)
        lam = np.asarray(res.eigenvalues, dtype=np.float64)
        mask = lam >= self.fraction * self.threshold
        U = res.eigenvectors[:, torch.as_tensor(mask)].to(w.dtype)  # (d, m)
        dt = 1.0 / self.substeps
        X, J = _oscillation_covariance(obj, w, g, U, lam[mask], self.lr, dt)
        velocity = -self.lr * g
        if X.size and np.any(X):
            # ∇⟨H, Σ⟩ at fixed Σ: Σ_ij X_ij ∇(u_iᵀ H u_j)
            xv = torch.as_tensor(X.reshape(-1), dtype=g.dtype, device=g.device)
            velocity = velocity - 0.5 * self.lr * (J.T @ xv)
        m = U.shape[1]
        return CentralPoint(loss, float(g @ g), lam, X, lam[mask], velocity,
                            obj.hvp_count - hvps_before, m * (m + 1) // 2)

    def advance(self, obj: Objective, w: Tensor, first: CentralPoint | None = None):
        """One unit of time (one GD step): K Euler substeps. Returns (w, points)."""
        points = []
        dt = 1.0 / self.substeps
        for i in range(self.substeps):
            p = first if (i == 0 and first is not None) else self.point(obj, w)
            points.append(p)
            w = (w + dt * p.velocity).detach()
        return w, points

def pair_gradients(obj: Objective, w: Tensor, U: Tensor) -> Tensor:
    """J (m·m, d): row i·m+j is ∇(u_iᵀ H u_j); m(m+1)/2 third-derivative contractions."""
    m = U.shape[1]
    rows: dict[tuple[int, int], Tensor] = {}
    for i in range(m):
        for j in range(i, m):
            rows[i, j] = obj.d3(w, U[:, i].contiguous(), U[:, j].contiguous())
    return torch.stack([rows[min(i, j), max(i, j)] for i in range(m) for j in range(m)])


def _oscillation_covariance(obj, w, g, U, lam, lr, dt):
    """X (m, m) from the look-ahead complementarity problem, and J (m·m, d)."""
    m = U.shape[1]
    if m == 0:
        return np.zeros((0, 0)), None
    J = pair_gradients(obj, w, U)  # (m², d)
    Jd = J.detach().to(torch.float64)
    gd = g.detach().to(torch.float64)
    # (2/η)I − S(t + dt) to first order, with the velocity's gradient part only
    alpha = (2.0 / lr) * np.eye(m) - np.diag(lam) + dt * lr * (Jd @ gd).cpu().numpy().reshape(m, m)
    gram = dt * lr / 2 * (Jd @ Jd.T).cpu().numpy()  # (m², m²)
    return solve_complementarity(alpha, gram), J
