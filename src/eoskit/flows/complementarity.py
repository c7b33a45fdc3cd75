"""The central flow's matrix complementarity problem for X on the constrained eigenspace.

Given ``alpha`` (m, m) symmetric and a positive semidefinite operator ``B`` on
symmetric m×m matrices (as an (m², m²) Gram matrix over the row-major
``vec``), find X with

    X ⪰ 0,   alpha + B[X] ⪰ 0,   ⟨X, alpha + B[X]⟩ = 0.

Because ``B`` is a Gram operator (``B[X]_ij = Σ_kl (J_ij·J_kl) X_kl``), this is
exactly the KKT system of the convex problem
``min_{X ⪰ 0} ½⟨X, B[X]⟩ + ⟨alpha, X⟩``, which cvxpy solves with its bundled
conic solver (Clarabel). One constrained direction (m = 1) has the closed form
``X = max(0, −alpha/B)``; ``alpha ⪰ 0`` (nothing would cross the edge this
substep) has the solution ``X = 0`` and needs no solver.

Example:
    >>> import numpy as np
    >>> float(solve_complementarity(np.array([[-0.5]]), np.array([[2.0]]))[0, 0])
    0.25
    >>> float(solve_complementarity(np.array([[0.5]]), np.array([[2.0]]))[0, 0])
    0.0
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SOLVER = "CLARABEL"  # interior point, bundled with cvxpy; handles the PSD cone


def closed_form(alpha: float, b: float) -> float:
    """The m = 1 solution ``max(0, −alpha/b)`` (``b > 0``; ``b = 0`` only if alpha ≥ 0)."""
    if alpha >= 0:
        return 0.0
    if b <= 0:
        raise ValueError("complementarity: the constraint is violated but B = 0 cannot fix it")
    return -alpha / b


@lru_cache(maxsize=8)
def _problem(m: int):
    """The parametrised cvxpy problem for size m (compiled once per m, DPP)."""
    import cvxpy as cp

    a = cp.Parameter((m, m), symmetric=True, name="alpha")
    root = cp.Parameter((m * m, m * m), name="root")  # B = root rootᵀ
    x = cp.Variable((m, m), PSD=True, name="X")
    vec = cp.reshape(x, (m * m,), order="C")
    objective = 0.5 * cp.sum_squares(root.T @ vec) + cp.sum(cp.multiply(a, x))
    return cp.Problem(cp.Minimize(objective)), a, root, x


def solve_cvxpy(alpha: np.ndarray, gram: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """X from the convex program, for any m (the m = 1 case too, for checks).

    The solver sees entries of order one in alpha, B *and* X: with X = s·Y,
    s = ‖alpha‖/‖B‖, the program in Y has ‖alpha‖ = ‖B‖ = 1. Scaling alpha and B by
    one common factor instead leaves X at ‖alpha‖/‖B‖, which at the edge of
    RMSProp's preconditioned flow is ~1e-9, below the solver's absolute tolerances:
    it then returned an X five orders of magnitude too large.
    """
    m = alpha.shape[0]
    a_scale = float(np.abs(alpha).max()) or 1.0
    b_scale = float(np.sqrt(np.mean(gram ** 2))) or 1.0
    g = 0.5 * (gram + gram.T) / b_scale
    evals, evecs = np.linalg.eigh(g)
    root_value = evecs * np.sqrt(np.clip(evals, 0.0, None))  # (m², m²), g = root rootᵀ
    prob, a, root, x = _problem(m)
    a.value = 0.5 * (alpha + alpha.T) / a_scale
    root.value = root_value
    # no warm start: cvxpy would reuse the previous solve's Clarabel solver, so X would
    # depend on the solves before it and a resumed flow would not repeat an uninterrupted one
    prob.solve(solver=SOLVER, warm_start=False, tol_gap_abs=tol, tol_gap_rel=tol, tol_feas=tol)
    if x.value is None or prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"complementarity solve failed: cvxpy status {prob.status}")
    Y = 0.5 * (x.value + x.value.T)
    return (a_scale / b_scale) * _project_psd(Y)


def _project_psd(X: np.ndarray) -> np.ndarray:
    evals, evecs = np.linalg.eigh(X)
    return (evecs * np.clip(evals, 0.0, None)) @ evecs.T


def solve_complementarity(alpha: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """X ⪰ 0 with alpha + B[X] ⪰ 0 and ⟨X, alpha + B[X]⟩ = 0; alpha (m, m), gram (m², m²)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    gram = np.asarray(gram, dtype=np.float64)
    m = alpha.shape[0]
    if m == 0:
        return np.zeros((0, 0))
    if np.linalg.eigvalsh(0.5 * (alpha + alpha.T)).min() >= 0:
        return np.zeros((m, m))
    if m == 1:
        return np.array([[closed_form(float(alpha[0, 0]), float(gram[0, 0]))]])
    return solve_cvxpy(alpha, gram)


def residuals(alpha: np.ndarray, gram: np.ndarray, X: np.ndarray) -> dict:
    """How well X solves the problem: PSD violations and the complementarity gap."""
    m = alpha.shape[0]
    Z = alpha + (gram @ X.reshape(-1)).reshape(m, m)
    return {"x_min_eig": float(np.linalg.eigvalsh(X).min()) if m else 0.0,
            "z_min_eig": float(np.linalg.eigvalsh(0.5 * (Z + Z.T)).min()) if m else 0.0,
            "gap": float(np.sum(X * Z))}
