"""The central flow of RMSProp: the preconditioned edge and the second-moment dynamics.

torch's RMSprop (no momentum, not centred) steps ``ν ← αν + (1−α)g²``,
``w ← w − η g/P`` with ``P = √ν + ε``. Its *stable flow* (time in steps) is

    dw/dt = −η P⁻¹ ∇L,        dν/dt = (1−α)(∇L² − ν).

At the Edge of Stability the *preconditioned* Hessian ``Ã = P^{-1/2} H P^{-1/2}``
(docs/theory.md §6) has its top eigenvalues at 2/η and the iterates oscillate
along ``U = P^{-1/2} Q`` (Q: the top eigenvectors of Ã). With the oscillation
covariance ``Σ = U X Uᵀ`` the central flow is

    dw/dt = −η P⁻¹ [∇L + ½ ∇⟨H, Σ⟩],   dν/dt = (1−α)(∇L² + diag(HΣH) − ν),

since the oscillation adds ``E[(Hδ)²] = diag(HΣH)`` to the squared gradient. ``X``
holds the constrained block ``S = UᵀHU = QᵀÃQ`` at 2/η, now through two
mechanisms: the w-motion (as for GD, with the metric P⁻¹) and the growth of ν
(a larger ν lowers Ã). Per Euler substep dt the look-ahead ``(2/η)I − S(t+dt) ⪰ 0``
to first order is the complementarity problem ``alpha + B[X] ⪰ 0`` with

    alpha = (2/η)I − S + dt·η (J P⁻¹∇L) + dt·½(λ_i+λ_j) Σ_k u_ik u_jk Ṗ⁰_k,
    B     = dt·(η/2) J P⁻¹ Jᵀ  +  dt·(2/η)³ Σ_k w_k vec(u_k u_kᵀ) vec(u_k u_kᵀ)ᵀ,

``J_ij = ∇(u_iᵀHu_j)`` (``Objective.d3``), ``Ṗ⁰ = (1−α)(∇L² − ν)/(2√ν)``
(the X-free part of dP/dt) and ``w_k = (1−α)P_k²/(2√ν_k)``. The ν-term of B is
symmetric only where the constrained eigenvalues equal 2/η; it is evaluated
there, which is exact wherever X ≠ 0 (complementarity) and keeps B a Gram
operator, so the problem stays the convex one of
:mod:`eoskit.flows.complementarity`. √ν is floored at ε in ``1/(2√ν)``.

The flow starts from ``ν₀ = (1−α)∇L(w₀)²``, the second moment of RMSprop's
first step (ν = 0 would make P = ε). On a quadratic (J = 0) only the ν-term
can hold the edge: it is then the whole mechanism, as for RMSProp on a
quadratic at its edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from eoskit.eigs import preconditioned_matvec
from eoskit.flows.central import CentralPoint, EdgeFlow, pair_gradients
from eoskit.flows.complementarity import solve_complementarity
from eoskit.flows.gradient import GradientFlowSettings
from eoskit.objective import Objective

RMSPROP_ALPHA, RMSPROP_EPS = 0.99, 1e-8  # torch's defaults


def initial_nu(g: Tensor, alpha: float) -> Tensor:
    """ν after RMSprop's first update from ν = 0: ``(1−α)g²``."""
    return (1 - alpha) * g.detach() ** 2


@dataclass
class RMSPropCentralFlow(EdgeFlow):
    """The central flow of RMSProp; its tracker follows the preconditioned Hessian."""

    alpha: float = RMSPROP_ALPHA
    eps: float = RMSPROP_EPS

    def __post_init__(self):
        if not (0 <= self.alpha < 1 and self.eps > 0):
            raise ValueError("rmsprop needs 0 ≤ alpha < 1 and eps > 0")
        super().__post_init__()

    def point(self, obj: Objective, w: Tensor, nu: Tensor) -> CentralPoint:
        """Velocities of (w, ν) and the predictions at (w, ν)."""
        hvps_before = obj.hvp_count
        P = nu.sqrt() + self.eps
        with obj.at(w) as at:
            loss, g = float(at.value), at.grad.detach()
            res = self.tracker.measure(preconditioned_matvec(at.hvp, P), obj.dim,
                                       w.dtype, w.device)
        lam = np.asarray(res.eigenvalues, dtype=np.float64)
        mask = lam >= self.fraction * self.threshold
        Q = res.eigenvectors[:, torch.as_tensor(mask)].to(w.dtype)
        U = Q * P.rsqrt()[:, None]  # (d, m): the oscillation directions in w
        X, J, nu_dot0, weights = self._covariance(obj, w, g, nu, P, U, lam[mask])
        xv = torch.as_tensor(X.reshape(-1), dtype=g.dtype, device=g.device)
        force = g if J is None or not np.any(X) else g + 0.5 * (J.T @ xv)
        velocity = -self.lr * force / P
        nu_velocity = nu_dot0
        if X.size and np.any(X):
            lam_t = torch.as_tensor(lam[mask], dtype=g.dtype, device=g.device)
            HU = U * lam_t * P[:, None]  # H u_i = λ_i P u_i
            nu_velocity = nu_dot0 + (1 - self.alpha) * torch.einsum(
                "ki,ij,kj->k", HU, torch.as_tensor(X, dtype=g.dtype, device=g.device), HU)
        m = U.shape[1]
        return CentralPoint(loss, float(g @ g), lam, X, lam[mask], velocity,
                            obj.hvp_count - hvps_before, m * (m + 1) // 2, nu_velocity)

    def _covariance(self, obj, w, g, nu, P, U, lam):
        nu_dot0 = (1 - self.alpha) * (g * g - nu)  # (d,)
        m = U.shape[1]
        if m == 0:
            return np.zeros((0, 0)), None, nu_dot0, None
        dt, lr = 1.0 / self.substeps, self.lr
        dP_dnu = 0.5 / torch.clamp(nu.sqrt(), min=self.eps)  # (d,)
        J = pair_gradients(obj, w, U)  # (m², d)
        f64 = torch.float64
        Jd, Pd, Ud = J.detach().to(f64), P.to(f64), U.detach().to(f64)
        pairs = torch.einsum("ki,kj->ijk", Ud, Ud).reshape(m * m, -1)  # (m², d) u_ik u_jk
        lam_sum = 0.5 * (lam[:, None] + lam[None, :])
        alpha = (2.0 / lr) * np.eye(m) - np.diag(lam)
        alpha = alpha + dt * lr * (Jd @ (g.to(f64) / Pd)).cpu().numpy().reshape(m, m)
        p_dot0 = (nu_dot0.to(f64) * dP_dnu.to(f64))
        alpha = alpha + dt * lam_sum * (pairs @ p_dot0).cpu().numpy().reshape(m, m)
        weights = (1 - self.alpha) * Pd ** 2 * dP_dnu.to(f64)  # (d,)
        gram_w = dt * lr / 2 * (Jd / Pd) @ Jd.T
        gram_nu = dt * (2.0 / lr) ** 3 * (pairs * weights) @ pairs.T
        X = solve_complementarity(alpha, (gram_w + gram_nu).cpu().numpy())
        return X, J, nu_dot0, weights

def integrate_stable(obj: Objective, w0: Tensor, nu0: Tensor, lr: float, duration: float,
                     alpha: float = RMSPROP_ALPHA, eps: float = RMSPROP_EPS,
                     settings: GradientFlowSettings | None = None):
    """RMSProp's stable flow (w, ν)(duration) by ``solve_ivp``; info has the gradient count."""
    settings = settings or GradientFlowSettings()
    if duration <= 0:
        return w0.detach().clone(), nu0.detach().clone(), {"grads": 0}
    dtype, device, d = w0.dtype, w0.device, w0.numel()

    def rhs(_t, y: np.ndarray) -> np.ndarray:
        w = torch.as_tensor(y[:d], dtype=dtype, device=device)
        nu = torch.as_tensor(np.clip(y[d:], 0.0, None), dtype=dtype, device=device)
        g = obj.grad(w).detach()
        dw = -lr * g / (nu.sqrt() + eps)
        dnu = (1 - alpha) * (g * g - nu)
        return torch.cat([dw, dnu]).cpu().numpy().astype(np.float64)

    y0 = torch.cat([w0.detach(), nu0.detach()]).cpu().numpy().astype(np.float64)
    sol = solve_ivp(rhs, (0.0, float(duration)), y0, method=settings.method,
                    rtol=settings.rtol, atol=settings.atol, t_eval=[float(duration)])
    if not sol.success:
        raise RuntimeError(f"RMSProp stable-flow integration failed: {sol.message}")
    y = torch.as_tensor(sol.y[:, -1], dtype=dtype, device=device)
    return y[:d], y[d:], {"grads": int(sol.nfev)}
