"""Edge-coupling diagnostics (THEORY.md §1-4): every identity, measured on any objective.

One function per quantity, each taking an :class:`~eoskit.objective.Objective`:

* §1 edge coupling: :func:`edge_coupling`, :func:`edge_coupling_grads`, :func:`gd_pair_residual`
* §2-3 segment averages of the Hessian along a step ``s`` from ``x``:
  :func:`segment_curvature` (φ(τ) = uᵀH(x+τs)u), :func:`averaged_curvatures` (q̄, κ),
  :func:`averaged_hessian_step` (H̄s), all from one Gauss–Legendre quadrature
  (:func:`segment_quadrature`) whose node HVPs ``H(x+τ_i s) s`` give H̄s, H̃s and φ(τ_i) at once
* exact-identity residuals: :func:`step_recurrence_residual`, :func:`loss_change_residual`,
  :func:`kappa_mismatch` (κ from quadrature vs :func:`effective_curvature` from the loss)
* §4 mean-value localisation: :func:`localisation_points` (τ̄, τ̃ by root bracketing on φ)
* the forcing identity over a run: :class:`ForcingTracker`
* one CSV row per step: :func:`diagnose_step`, :data:`DIAGNOSTIC_COLUMNS`; figures:
  :func:`plot_diagnostics`

Scope. The step recurrence ``s_{t+1} = (I − ηH̄_t) s_t`` and the GD-pair condition
``∇_x A = 0`` are identities of *plain* gradient descent. They are defined here for
``gd`` (full batch) and, per batch, for ``sgd`` (pass the step's batch objective and
``s_next=None``). For momentum methods (polyak, nesterov) the step is not ``−η g``
and these rows are not meaningful; the segment quantities (q̄, κ, τ̄, τ̃) and the
loss-change formula still hold for *any* step ``s``, but ``2/η`` is then not the
stability boundary.

Quadrature. ``DEFAULT_NODES = 12`` Gauss–Legendre nodes on [0, 1]. The rule is exact for
polynomial φ of degree ≤ 23, so on losses of degree ≤ 4 (φ of degree ≤ 2) it is exact;
on smooth (tanh) networks φ is analytic in τ and the error falls geometrically with the
node count. Measured |κ_quad − κ_loss|/|κ| on float64 tanh MLPs under GD at the edge of
stability, worst step (the large first and catapult steps): MNIST-500, d = 26,506
(examples/diagnose_mnist.py): 4 nodes 2.5e-5, 6: 3.7e-8, 8: 1.5e-10, 10: 3.6e-13,
12: 9e-15; the small MLP of tests/test_diagnostics.py: 3 nodes 1.2e-6, 4: 8e-9,
12: 2e-15. Twelve is the smallest count that reached rounding on every step tried, with
a margin for larger steps. Each node costs one gradient with its graph and one
Hessian-vector product.

Precision. The identities are exact in real arithmetic; check them in float64. The
loss-change residual and κ from the loss difference two nearby losses, so their rounding
floor is ``eps·(|L_t| + |L_{t+1}|)/|ΔL|``; ``diagnose_step`` adds such floors to the
smoothness tolerance so that a tiny step is not mistaken for a kink.

Non-smooth networks (ReLU). Autograd's Hessian misses the delta functions of kinks, so the
identities fail on a step whose segment crosses one. ``diagnose_step`` reports every value
as computed and sets ``smooth_flag=False`` when any identity residual exceeds
``smooth_tol`` (+ its rounding floor). ``smooth_flag=False`` on a smooth network means the
quadrature was too coarse for that step: raise ``nodes``.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from eoskit.eigs import top_eigenpairs
from eoskit.objective import Objective

DEFAULT_NODES = 12

DIAGNOSTIC_COLUMNS: list[str] = [
    "step",
    # the required row
    "coupling",
    "grad_x_residual",
    "q_bar",
    "kappa_quad",
    "kappa_loss",
    "recurrence_residual",
    "loss_change_residual",
    "kappa_mismatch",
    "tau_bar",
    "tau_tilde",
    "sharpness",
    "sharpness_at_tau_tilde",
    "bound_holds",
    "smooth_flag",
    # extras
    "lr",
    "step_norm",
    "loss_t",
    "loss_next",
    "loss_change",
    "q_bar_grad",
    "grad_diff_residual",
    "phi_tau_bar",
    "phi_tau_tilde",
    "localised",
    "bound_margin",
    "sharpness_converged",
    "smoothness_ratio",
    "nodes",
    "hvps",
]


def effective_curvature(loss_t: float, loss_next: float, step_norm_sq: float, lr: float) -> float:
    """κ_t = 2/η + 2 (L_{t+1} − L_t)/|s_t|², read off the loss and the step norm (THEORY §3)."""
    if step_norm_sq <= 0.0:
        return math.nan
    return 2.0 / lr + 2.0 * (loss_next - loss_t) / step_norm_sq


@dataclass
class ForcingTracker:
    """Both sides of the telescoping identity Σ_t w_t (2/η − κ_t) = 2 (L_0 − L_T)/S_T.

    ``update`` takes each step's κ_t and |s_t|²; the left side is accumulated
    from κ_t, the right from the first and latest losses, so their difference
    checks the loss-change formula over the whole run.
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


# ---------------------------------------------------------------- helpers
def _hvp_at(objective: Objective, x: Tensor, v: Tensor) -> Tensor:
    """H(x) v, freeing the point's graph afterwards (one gradient + one product)."""
    with objective.at(x) as point:
        return point.hvp(v).detach()


def _float(t) -> float:
    return float(t.detach()) if isinstance(t, Tensor) else float(t)


def _rel(num: float, den: float) -> float:
    if not (math.isfinite(num) and math.isfinite(den)):
        return math.nan
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return abs(num) / abs(den)


def _eps(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps)


# ---------------------------------------------------------------- §1 edge coupling
def edge_coupling(objective: Objective, x: Tensor, y: Tensor, lr: float) -> float:
    """A_η(x, y) = L(x) + L(y) − |x − y|²/(2η)."""
    return _float(objective.value(x)) + _float(objective.value(y)) - _float(
        ((x - y) ** 2).sum()
    ) / (2.0 * lr)


def edge_coupling_grads(
    objective: Objective, x: Tensor, y: Tensor, lr: float
) -> tuple[Tensor, Tensor]:
    """(∇_x A, ∇_y A) = (g(x) − (x − y)/η, g(y) + (x − y)/η)."""
    diff = (x - y) / lr
    return objective.grad(x) - diff, objective.grad(y) + diff


def gd_pair_residual(objective: Objective, x: Tensor, y: Tensor, lr: float) -> float:
    """‖∇_x A(x, y)‖/‖g(x)‖: zero (to rounding) iff ``y = x − η g(x)`` is a GD step."""
    g = objective.grad(x)
    return _rel(_float((g - (x - y) / lr).norm()), _float(g.norm()))


# ---------------------------------------------------------------- §2-3 segment averages
def gauss_legendre_01(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [0, 1] (weights sum to 1)."""
    if int(nodes) < 1:
        raise ValueError(f"nodes must be a positive integer, got {nodes!r}")
    xi, w = np.polynomial.legendre.leggauss(int(nodes))
    return (xi + 1.0) / 2.0, w / 2.0


@dataclass
class SegmentQuadrature:
    """Everything one quadrature along the segment ``x + τ s``, τ ∈ [0, 1], yields.

    ``phi[i] = uᵀ H(x + taus[i] s) u``; ``hbar_s = Σ w_i H_i s ≈ H̄ s``;
    ``htilde_s = Σ w_i 2(1 − τ_i) H_i s ≈ H̃ s``; ``q_bar = Σ w_i φ_i``;
    ``kappa = Σ w_i 2(1 − τ_i) φ_i``.
    """

    taus: np.ndarray
    weights: np.ndarray
    phi: np.ndarray
    hbar_s: Tensor
    htilde_s: Tensor
    q_bar: float
    kappa: float
    step_norm_sq: float


def segment_quadrature(
    objective: Objective, x: Tensor, s: Tensor, nodes: int = DEFAULT_NODES
) -> SegmentQuadrature:
    """Gauss–Legendre quadrature of H(x + τs) s over τ ∈ [0, 1]: ``nodes`` HVPs in all."""
    taus, weights = gauss_legendre_01(nodes)
    x, s = x.detach(), s.detach()
    ss = _float(s @ s)
    hbar = torch.zeros_like(s)
    htilde = torch.zeros_like(s)
    phi = np.empty(len(taus))
    for i, (tau, w) in enumerate(zip(taus, weights, strict=True)):
        hs = _hvp_at(objective, x + float(tau) * s, s)
        phi[i] = _float(s @ hs) / ss if ss > 0 else math.nan
        hbar = hbar + float(w) * hs
        htilde = htilde + float(w * 2.0 * (1.0 - tau)) * hs
    q_bar = float(np.dot(weights, phi))
    kappa = float(np.dot(weights * 2.0 * (1.0 - taus), phi))
    return SegmentQuadrature(taus, weights, phi, hbar, htilde, q_bar, kappa, ss)


def segment_curvature(objective: Objective, x: Tensor, s: Tensor, tau: float) -> float:
    """φ(τ) = uᵀ H(x + τ s) u with u = s/|s| (one HVP)."""
    s = s.detach()
    ss = _float(s @ s)
    if ss <= 0:
        return math.nan
    return _float(s @ _hvp_at(objective, x.detach() + float(tau) * s, s)) / ss


def averaged_curvatures(
    objective: Objective, x: Tensor, s: Tensor, nodes: int = DEFAULT_NODES
) -> tuple[float, float]:
    """(q̄, κ): the mean of φ over [0, 1], plain and under the weight 2(1 − τ)."""
    quad = segment_quadrature(objective, x, s, nodes)
    return quad.q_bar, quad.kappa


def averaged_hessian_step(
    objective: Objective, x: Tensor, s: Tensor, nodes: int = DEFAULT_NODES
) -> Tensor:
    """H̄ s = ∫₀¹ H(x + τ s) s dτ by quadrature (= g(x + s) − g(x) on smooth losses)."""
    return segment_quadrature(objective, x, s, nodes).hbar_s


# ---------------------------------------------------------------- exact-identity residuals
def step_recurrence_residual(
    s_t: Tensor, s_next: Tensor, hbar_s: Tensor, lr: float
) -> float:
    """‖s_{t+1} − (s_t − η H̄_t s_t)‖/‖s_{t+1}‖ (THEORY §2); ``hbar_s`` from quadrature."""
    return _rel(_float((s_next - (s_t - lr * hbar_s)).norm()), _float(s_next.norm()))


def loss_change_residual(
    loss_t: float, loss_next: float, step_norm_sq: float, kappa: float, lr: float
) -> float:
    """|ΔL − ½|s|²(κ − 2/η)|/|ΔL| (THEORY §3), κ from quadrature."""
    dl = float(loss_next) - float(loss_t)
    return _rel(dl - 0.5 * step_norm_sq * (kappa - 2.0 / lr), dl)


def kappa_mismatch(kappa_quad: float, kappa_loss: float) -> float:
    """|κ_quad − κ_loss| / max(|κ_quad|, |κ_loss|): quadrature against the loss formula."""
    return _rel(kappa_quad - kappa_loss, max(abs(kappa_quad), abs(kappa_loss)))


# ---------------------------------------------------------------- §4 localisation
@dataclass
class Localisation:
    """τ̄, τ̃ ∈ [0, 1] with φ(τ̄) = q̄ and φ(τ̃) = κ; unpacks as ``(tau_bar, tau_tilde)``.

    ``exact_bar`` / ``exact_tilde`` are True when the root was bracketed and refined by
    Brent's method; False when φ − target has no sign change that could be found (φ
    constant to rounding: the midpoint is reported; otherwise the τ of smallest
    |φ − target| that was evaluated).
    """

    tau_bar: float
    tau_tilde: float
    phi_tau_bar: float
    phi_tau_tilde: float
    exact_bar: bool
    exact_tilde: bool
    n_evals: int

    def __iter__(self):
        return iter((self.tau_bar, self.tau_tilde))


def _localise(phi, target: float, taus: np.ndarray, vals: np.ndarray, xtol: float):
    """A root of φ(τ) − target on [0, 1]: bracket on known values, refine by brentq."""
    import scipy.optimize

    known = dict(zip(taus.tolist(), vals.tolist(), strict=True))

    def f(t):
        if t not in known:
            known[t] = phi(t)
        return known[t] - target

    scale = max(abs(target), float(np.max(np.abs(vals))) if len(vals) else 0.0, 1e-300)

    def bracket():
        ts = sorted(known)
        fs = [known[t] - target for t in ts]
        for a, b, fa, fb in zip(ts, ts[1:], fs, fs[1:], strict=False):
            if fa == 0.0:
                return a, a
            if fa * fb < 0:
                return a, b
        if fs and fs[-1] == 0.0:
            return ts[-1], ts[-1]
        return None

    tiny = 64 * np.finfo(float).eps * scale
    if len(vals) and np.all(np.isfinite(vals)) and np.max(np.abs(vals - target)) <= tiny:
        return 0.5, f(0.5) + target, False  # φ constant to rounding: every τ would do
    grids = [np.array([0.0, 1.0]), np.linspace(0.0, 1.0, 4 * len(taus) + 1)[1:-1]]
    br = bracket()
    for grid in grids:
        if br is not None:
            break
        for t in grid.tolist():
            f(t)
        br = bracket()
    if br is not None:
        a, b = br
        if a == b:
            return a, known[a], True
        root = scipy.optimize.brentq(f, a, b, xtol=xtol, rtol=4 * np.finfo(float).eps)
        return root, f(root) + target, True
    ts = np.array(sorted(known))
    fs = np.array([known[t] - target for t in ts])
    if np.max(np.abs(fs)) <= tiny:  # φ constant to rounding
        return 0.5, f(0.5) + target, False
    i = int(np.argmin(np.abs(fs)))
    return float(ts[i]), float(fs[i] + target), False


def localisation_points(
    objective: Objective,
    x: Tensor,
    s: Tensor,
    *,
    nodes: int = DEFAULT_NODES,
    quad: SegmentQuadrature | None = None,
    xtol: float = 1e-13,
) -> Localisation:
    """Mean-value points τ̄, τ̃ of φ for q̄ and κ (THEORY §4), by brentq on HVP-evaluated φ.

    The quadrature nodes' φ values (reused from ``quad`` when given) bracket the roots:
    q̄ and κ are positively weighted means of those values, so φ − target changes sign
    between two nodes unless φ is constant to rounding. Otherwise the endpoints, then a
    grid four times finer, are searched. When several roots exist, the first bracket from
    τ = 0 is refined.
    """
    quad = quad or segment_quadrature(objective, x, s, nodes)
    evals = 0

    def phi(t: float) -> float:
        nonlocal evals
        evals += 1
        return segment_curvature(objective, x, s, t)

    tb, pb, eb = _localise(phi, quad.q_bar, quad.taus, quad.phi, xtol)
    tt, pt, et = _localise(phi, quad.kappa, quad.taus, quad.phi, xtol)
    return Localisation(float(tb), float(tt), float(pb), float(pt), eb, et, evals)


# ---------------------------------------------------------------- one row per step
def _nan_row(lr: float, nodes: int) -> dict:
    row = {c: math.nan for c in DIAGNOSTIC_COLUMNS[1:]}
    row.update(bound_holds=False, smooth_flag=False, localised=False,
               sharpness_converged=False, lr=float(lr), nodes=int(nodes), hvps=0)
    return row


def diagnose_step(
    objective: Objective,
    x_t: Tensor,
    s_t: Tensor,
    s_next: Tensor | None,
    lr: float,
    loss_t: float | None,
    loss_next: float | None,
    *,
    nodes: int = DEFAULT_NODES,
    eig_tol: float = 1e-8,
    sharpness_v0: Tensor | None = None,
    smooth_tol: float | None = None,
    bound_rtol: float = 1e-6,
    vectors: dict | None = None,
) -> dict:
    """Every THEORY §1-4 quantity for the step ``s_t`` from ``x_t``: one row of diagnostics.

    ``objective`` is the loss the step descended (the full-batch objective for GD; for
    SGD the batch objective of step t, with ``s_next=None``, which makes the recurrence
    residual NaN). ``loss_t``/``loss_next`` are that objective's values at ``x_t`` and
    ``x_t + s_t``; None evaluates them. The keys are ``DIAGNOSTIC_COLUMNS[1:]``; all
    values are floats, ints or bools.

    Cost: ``nodes`` + ~20 (localisation) gradient+HVP pairs, two gradients, and two
    Lanczos solves to relative residual ``max(eig_tol, 100·eps)`` (warm-started from
    ``sharpness_v0``, then from the first solve's vector). Pass a dict as ``vectors`` to
    receive ``sharpness_vector`` (the unit top eigenvector at ``x_t``), e.g. to warm-start
    the next call.

    ``smooth_flag``: every segment identity checked (H̄s = g(x+s) − g(x), recurrence,
    loss change, κ_quad = κ_loss) held to ``smooth_tol`` (default 1e-6 in float64,
    1e-3 otherwise) plus its rounding floor; ``smoothness_ratio`` is the largest
    residual/threshold ratio (≤ 1 means smooth). ``bound_holds``: κ_quad ≤
    λ_max(x_t + τ̃ s_t)(1 + ``bound_rtol``) (Lanczos reports a lower bound on λ_max).
    ``grad_x_residual`` checks that ``s_t = −η g(x_t)`` (a GD pair); it is reported but not
    part of ``smooth_flag``, which is about the segment.
    """
    lr = float(lr)
    x_t, s_t = x_t.detach(), s_t.detach()
    row = _nan_row(lr, nodes)
    if not (bool(torch.isfinite(x_t).all()) and bool(torch.isfinite(s_t).all())):
        return row
    hvp0 = objective.hvp_count
    eps = _eps(x_t.dtype)
    tol = smooth_tol if smooth_tol is not None else (1e-6 if x_t.dtype == torch.float64 else 1e-3)
    y = x_t + s_t
    val_x, g_x = objective.value_and_grad(x_t)
    val_y, g_y = objective.value_and_grad(y)
    loss_t = _float(val_x) if loss_t is None else float(loss_t)
    loss_next = _float(val_y) if loss_next is None else float(loss_next)
    ss = _float(s_t @ s_t)
    row.update(loss_t=loss_t, loss_next=loss_next, loss_change=loss_next - loss_t,
               step_norm=math.sqrt(ss))
    row["coupling"] = loss_t + loss_next - ss / (2.0 * lr)
    if not (ss > 0 and math.isfinite(ss) and math.isfinite(loss_t) and math.isfinite(loss_next)):
        row["hvps"] = objective.hvp_count - hvp0
        return row
    # §1: the GD-pair condition ∇_x A(x_t, x_t + s_t) = 0
    gnorm = _float(g_x.norm())
    row["grad_x_residual"] = _rel(_float((g_x + s_t / lr).norm()), gnorm)
    # §2-3: one quadrature gives H̄s, q̄ and κ
    quad = segment_quadrature(objective, x_t, s_t, nodes)
    dg = g_y - g_x
    dg_norm = _float(dg.norm())
    row["q_bar"], row["kappa_quad"] = quad.q_bar, quad.kappa
    row["q_bar_grad"] = _float(s_t @ dg) / ss
    row["grad_diff_residual"] = _rel(_float((quad.hbar_s - dg).norm()), dg_norm)
    row["kappa_loss"] = effective_curvature(loss_t, loss_next, ss, lr)
    row["kappa_mismatch"] = kappa_mismatch(quad.kappa, row["kappa_loss"])
    row["loss_change_residual"] = loss_change_residual(loss_t, loss_next, ss, quad.kappa, lr)
    if s_next is not None:
        s_next = s_next.detach()
        row["recurrence_residual"] = step_recurrence_residual(s_t, s_next, quad.hbar_s, lr)
    # §4: localisation and the sharpness bound
    try:
        loc = localisation_points(objective, x_t, s_t, quad=quad)
        row.update(tau_bar=loc.tau_bar, tau_tilde=loc.tau_tilde, phi_tau_bar=loc.phi_tau_bar,
                   phi_tau_tilde=loc.phi_tau_tilde, localised=loc.exact_bar and loc.exact_tilde)
    except (ValueError, RuntimeError):  # non-finite φ on the segment: report NaN, go on
        loc = None
    eig_tol = max(eig_tol, 100 * eps)  # 1e-8 is out of float32's reach: don't run to max_iter
    try:
        eig = top_eigenpairs(objective, x_t, 1, tol=eig_tol, v0=sharpness_v0)
        row["sharpness"] = float(eig.eigenvalues[0])
        converged = eig.converged
        if vectors is not None:
            vectors["sharpness_vector"] = eig.eigenvectors[:, 0]
        if loc is not None:
            eig2 = top_eigenpairs(objective, x_t + loc.tau_tilde * s_t, 1, tol=eig_tol,
                                  v0=eig.eigenvectors[:, 0])
            lam = float(eig2.eigenvalues[0])
            converged = converged and eig2.converged
            row["sharpness_at_tau_tilde"] = lam
            row["bound_margin"] = lam - quad.kappa
            row["bound_holds"] = bool(quad.kappa <= lam + bound_rtol * abs(lam))
        row["sharpness_converged"] = bool(converged)
    except (ValueError, RuntimeError, np.linalg.LinAlgError):
        pass
    # smoothness: each residual against tol + what rounding can explain
    lsum = abs(loss_t) + abs(loss_next)
    dl = abs(loss_next - loss_t)
    kscale = max(abs(quad.kappa), abs(row["kappa_loss"]), 1e-300)
    xnorm = _float(x_t.norm())
    snorm = math.sqrt(ss)
    floors = {
        "grad_diff_residual": 1e3 * eps * (gnorm + _float(g_y.norm())) / max(dg_norm, 1e-300),
        "loss_change_residual": 32 * eps * lsum / max(dl, 1e-300),
        "kappa_mismatch": 64 * eps * lsum / (ss * kscale),
    }
    if s_next is not None:
        nn_ = max(_float(s_next.norm()), 1e-300)
        floors["recurrence_residual"] = 1e3 * eps * (snorm + nn_ + xnorm) / nn_
    ratios = [row[k] / (tol + f) for k, f in floors.items()]
    ratio = max(ratios) if ratios and not any(math.isnan(r) for r in ratios) else math.inf
    row["smoothness_ratio"] = ratio
    row["smooth_flag"] = bool(ratio <= 1.0)
    row["hvps"] = objective.hvp_count - hvp0
    return row


# ---------------------------------------------------------------- plotting
def _read_rows(rows_or_csv_path) -> list[dict]:
    if isinstance(rows_or_csv_path, (str, os.PathLike)):
        with open(rows_or_csv_path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    else:
        rows = [dict(r) for r in rows_or_csv_path]
    out = []
    for r in rows:
        conv = {}
        for k, v in r.items():
            if isinstance(v, str):
                if v in ("True", "False"):
                    v = v == "True"
                else:
                    try:
                        v = float(v) if v != "" else math.nan
                    except ValueError:
                        pass
            conv[k] = v
        out.append(conv)
    return out


def _col(rows: Sequence[Mapping], key: str) -> np.ndarray:
    vals = []
    for r in rows:
        v = r.get(key, math.nan)
        try:
            vals.append(float(v))
        except (TypeError, ValueError):
            vals.append(math.nan)
    return np.array(vals, dtype=float)


def plot_diagnostics(
    rows_or_csv_path: str | os.PathLike | Iterable[Mapping], out_dir: str | os.PathLike,
    lr: float,
) -> list[Path]:
    """Three PNGs from diagnostics rows (or ``diagnostics.csv``): curvatures, τ̄/τ̃, residuals.

    Returns the written paths: ``diag_curvatures.png`` (κ_quad, κ_loss, q̄, sharpness vs step,
    with the 2/η line), ``diag_localisation.png`` (τ̄, τ̃ vs step on [0, 1], and their
    histograms), ``diag_residuals.png`` (identity residuals on a log axis; non-smooth steps
    marked).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = _read_rows(rows_or_csv_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = _col(rows, "step")
    if np.all(np.isnan(steps)):
        steps = np.arange(len(rows), dtype=float)
    smooth = np.array([bool(r.get("smooth_flag", True)) for r in rows], dtype=bool)
    paths = []

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, label, style in (
        ("sharpness", r"sharpness $\lambda_{\max}(x_t)$", dict(color="k", lw=1.5)),
        ("kappa_quad", r"$\kappa_t$ (quadrature)", dict(color="C0", lw=1.2)),
        ("kappa_loss", r"$\kappa_t$ (from the loss)", dict(color="C2", ls=":", lw=1.5)),
        ("q_bar", r"$\bar q_t$", dict(color="C1", lw=1.2)),
    ):
        ax.plot(steps, _col(rows, key), label=label, marker=".", ms=3, **style)
    ax.axhline(2.0 / lr, color="r", ls="--", lw=1, label=rf"$2/\eta$ = {2.0 / lr:.4g}")
    if (~smooth).any():
        ax.plot(steps[~smooth], _col(rows, "kappa_quad")[~smooth], "x", color="m",
                label="non-smooth step", ms=6)
    ax.set_xlabel("step t")
    ax.set_ylabel("curvature")
    ax.set_title("Effective curvatures and sharpness")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    p = out_dir / "diag_curvatures.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw=dict(width_ratios=[2, 1]))
    tb, tt = _col(rows, "tau_bar"), _col(rows, "tau_tilde")
    a1.scatter(steps, tb, s=10, label=r"$\bar\tau$: $\varphi(\bar\tau) = \bar q$", color="C1")
    a1.scatter(steps, tt, s=10, label=r"$\tilde\tau$: $\varphi(\tilde\tau) = \kappa$", color="C0",
                marker="^")
    a1.set_ylim(-0.05, 1.05)
    a1.set_xlabel("step t")
    a1.set_ylabel(r"$\tau$ on the segment $x_t + \tau s_t$")
    a1.set_title("Mean-value localisation points")
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    bins = np.linspace(0, 1, 21)
    a2.hist(tb[np.isfinite(tb)], bins=bins, alpha=0.6, label=r"$\bar\tau$", color="C1")
    a2.hist(tt[np.isfinite(tt)], bins=bins, alpha=0.6, label=r"$\tilde\tau$", color="C0")
    a2.set_xlabel(r"$\tau$")
    a2.set_ylabel("count")
    a2.legend(fontsize=8)
    fig.tight_layout()
    p = out_dir / "diag_localisation.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    tiny = 1e-17  # exact zeros are drawn here
    for key, label in (
        ("grad_x_residual", r"GD pair $\|\nabla_x A\|/\|g\|$"),
        ("recurrence_residual", "step recurrence"),
        ("grad_diff_residual", r"$\bar H s$ vs $g(x+s) - g(x)$"),
        ("loss_change_residual", "loss change"),
        ("kappa_mismatch", r"$\kappa$: quadrature vs loss"),
    ):
        v = _col(rows, key)
        if np.isfinite(v).any():
            ax.semilogy(steps, np.maximum(v, tiny), marker=".", ms=3, lw=0.8, label=label)
    if (~smooth).any():
        for st in steps[~smooth]:
            ax.axvline(st, color="m", alpha=0.15, lw=2)
        ax.plot([], [], color="m", alpha=0.4, lw=4, label="smooth_flag = False")
    ax.set_xlabel("step t")
    ax.set_ylabel("relative residual (0 drawn at 1e-17)")
    ax.set_title("Exact-identity residuals")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    p = out_dir / "diag_residuals.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)
    return paths
