"""Lanczos and its basis arithmetic on operators with known spectra.

Written against the mutants tests/eigs/test_solvers.py lets survive in eoskit.eigs.krylov and
eoskit.eigs.solvers (benchmarks/results/mutation.md). References: diagonal operators
(eigenpairs are the coordinates), hand-computed error bounds, and dense eigh.
"""

import numpy as np
import pytest
import scipy.linalg
import torch

from eoskit.eigs.krylov import (
    check_request,
    eigenvalue_bounds,
    grown,
    hcat,
    images,
    orthonormal_columns,
    reorthogonalised,
    start_vector,
)
from eoskit.eigs.solvers import _meets, _tridiagonal_ritz, lanczos, top_eigenpairs
from eoskit.objective import FunctionObjective

F64 = torch.float64
DIAG = torch.tensor([-7.0, 0.5, 1.0, 2.0, 3.5, 4.0, 6.0, 10.0], dtype=F64)
DIM = len(DIAG)


def _matvec(v):
    return DIAG * v


def test_check_request_bounds_k_and_the_criterion():
    check_request(1, 3, "residual")
    check_request(3, 3, "eigenvalue")
    for k in (0, 4):
        with pytest.raises(ValueError, match="k must be"):
            check_request(k, 3, "residual")
    with pytest.raises(ValueError, match="criterion"):
        check_request(1, 3, "magnitude")


@pytest.mark.parametrize("criterion", ["residual", "eigenvalue"])
def test_lanczos_finds_the_top_algebraic_eigenpairs(criterion):
    res = lanczos(_matvec, DIM, 3, tol=1e-10, criterion=criterion)
    assert np.allclose(res.eigenvalues, [10.0, 6.0, 4.0], rtol=1e-9, atol=0)
    assert res.converged and res.n_matvecs <= DIM
    for i, j in enumerate([7, 6, 5]):  # eigenvector i is ± e_j
        v = res.eigenvectors[:, i]
        assert abs(float(v.norm()) - 1.0) <= 1e-12
        assert abs(abs(float(v[j])) - 1.0) <= 1e-6
    true_resid = [float((_matvec(v) - t * v).norm()) for t, v in
                  zip(res.eigenvalues, res.eigenvectors.T, strict=True)]
    assert np.allclose(res.residuals, true_resid, rtol=1e-3, atol=1e-9)
    assert res.eigenvectors.dtype == F64 and res.eigenvectors.shape == (DIM, 3)


def test_lanczos_stops_at_max_iter_unconverged():
    A = torch.linspace(1.0, 2.0, 200, dtype=F64)
    res = lanczos(lambda v: A * v, 200, 1, tol=1e-14, max_iter=5)
    assert not res.converged and res.n_matvecs == 5
    assert res.eigenvalues[0] < 2.0 + 1e-12


def test_lanczos_min_iter_and_keep():
    res = lanczos(_matvec, DIM, 1, tol=1e-3, min_iter=6, keep=3)
    assert res.n_matvecs >= 6
    assert len(res.ritz_values) == 3 and np.all(np.diff(res.ritz_values) < 0)
    assert res.ritz_vectors.shape == (DIM, 3) and res.ritz_vectors.dtype == F64
    assert torch.allclose(res.ritz_vectors.norm(dim=0), torch.ones(3, dtype=F64))
    assert lanczos(_matvec, DIM, 1, tol=1e-3).ritz_values is None


def test_lanczos_in_float32_returns_float32_vectors():
    res = lanczos(lambda v: DIAG.float() * v, DIM, 2, tol=1e-5, dtype=torch.float32)
    assert res.eigenvectors.dtype == torch.float32
    assert np.allclose(res.eigenvalues, [10.0, 6.0], rtol=1e-5)


def test_lanczos_warm_start_from_the_eigenvector_is_immediate():
    e = torch.zeros(DIM, dtype=F64)
    e[-1] = 1.0
    res = lanczos(_matvec, DIM, 1, tol=1e-10, v0=e)
    assert res.n_matvecs == 1 and res.eigenvalues[0] == pytest.approx(10.0, rel=1e-12)
    noisy = lanczos(_matvec, DIM, 1, tol=1e-10, v0=e, warm_noise=1e-2)
    assert noisy.n_matvecs > 1 and noisy.eigenvalues[0] == pytest.approx(10.0, rel=1e-9)


def test_lanczos_continues_past_an_invariant_subspace():
    # start in span(e_0, e_1): invariant after two steps, where the exact Ritz pair 0.5
    # already meets the criterion; asked for more steps, fresh directions find λ = 10
    v0 = torch.zeros(DIM, dtype=F64)
    v0[:2] = 1.0
    early = lanczos(_matvec, DIM, 1, tol=1e-10, v0=v0)
    assert early.n_matvecs == 2 and early.eigenvalues[0] == pytest.approx(0.5, rel=1e-12)
    res = lanczos(_matvec, DIM, 1, tol=1e-10, v0=v0, min_iter=DIM)
    assert res.eigenvalues[0] == pytest.approx(10.0, rel=1e-9) and res.converged
    assert res.n_matvecs == DIM


def test_eigenvalue_bounds_with_upper_and_gap_floor():
    theta, resid = np.array([3.0, 1.0]), np.array([0.1, 0.2])
    # gap_0 = 3 − (1 + 0.2) = 1.8: min(0.1, 0.01/1.8); the last value keeps its residual
    assert np.allclose(eigenvalue_bounds(theta, resid), [0.01 / 1.8, 0.2])
    # upper 2.5 caps the gaps: gap_0 = 0.5, gap_1 = 1 − 2.5 < 0 (no bound)
    assert np.allclose(eigenvalue_bounds(theta, resid, upper=2.5), [0.02, 0.2])
    # upper 0 gives the last value the gap 1 (bound 0.04), which then narrows gap_0 to 1.96
    assert np.allclose(eigenvalue_bounds(theta, resid, upper=0.0), [0.01 / 1.96, 0.04])
    assert np.allclose(eigenvalue_bounds(theta, resid, gap_floor=5.0), [0.002, 0.2])
    assert np.allclose(eigenvalue_bounds(theta, np.array([0.5, 0.2])), [0.25 / 1.8, 0.2])
    assert np.allclose(eigenvalue_bounds(np.array([2.0]), np.array([0.3])), [0.3])


def test_meets_compares_each_wanted_error_with_tol_times_theta():
    theta, resid = np.array([4.0, 1.0, 0.5]), np.array([0.04, 0.5, 0.1])
    assert _meets(theta, resid, 1, 0.01, "residual")
    assert not _meets(theta, resid, 1, 0.0099, "residual")
    assert not _meets(theta, resid, 2, 0.01, "residual")
    # eigenvalue criterion: 0.04²/(4 − 1.5) = 6.4e-4 ≤ 1e-3·4
    assert _meets(theta, resid, 1, 1e-3, "eigenvalue")
    assert not _meets(theta, resid, 1, 1e-3, "residual")


def test_tridiagonal_ritz_matches_dense_eigh():
    alpha, beta, b = [2.0, 1.0, 3.0], [0.5, 0.25], 0.125
    theta, S, resid = _tridiagonal_ritz(alpha, beta, b)
    T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    w, U = scipy.linalg.eigh(T)
    assert np.allclose(theta, w[::-1]) and np.all(np.diff(theta) < 0)
    assert np.allclose(np.abs(S), np.abs(U[:, ::-1]))
    assert np.allclose(resid, np.abs(b * U[-1, ::-1]))


def test_start_vector_is_the_normalised_warm_direction():
    gen = torch.Generator().manual_seed(0)
    v = start_vector(3, None, F64, torch.device("cpu"), gen, 0.0)
    assert abs(float(v.norm()) - 1.0) < 1e-14
    v0 = torch.tensor([3.0, 0.0, 4.0], dtype=F64)
    v = start_vector(3, v0, F64, torch.device("cpu"), gen, 0.0)
    assert torch.allclose(v, v0 / 5)
    block = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, -3.0]], dtype=F64)
    v = start_vector(3, block, F64, torch.device("cpu"), gen, 0.0)
    assert torch.allclose(v, torch.tensor([1.0, 0.0, -1.0], dtype=F64) / 2 ** 0.5)
    noisy = start_vector(3, v0, F64, torch.device("cpu"), gen, 0.5)
    assert abs(float(noisy.norm()) - 1.0) < 1e-14 and not torch.allclose(noisy, v0 / 5)


def test_reorthogonalised_removes_the_basis_component():
    Q = torch.eye(4, dtype=F64)[:2]  # (2, d) rows e_0, e_1
    w = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64)
    r, a, b = reorthogonalised(w, Q)
    assert a == 2.0  # q_j · w with q_j the last row
    assert torch.allclose(r, torch.tensor([0.0, 0.0, 3.0, 4.0], dtype=F64))
    assert b == pytest.approx(5.0)
    r, a, b = reorthogonalised(torch.tensor([1.0, 1.0, 1e-9, 0.0], dtype=F64), Q)
    assert b == pytest.approx(1e-9, rel=1e-6) and float(r[:2].abs().max()) == 0.0


def test_orthonormal_columns_span_drop_and_basis():
    V = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0], [1.0, 2.0, 1.0]], dtype=F64)
    Q = orthonormal_columns(V)  # column 2 = 2 × column 1: dropped
    assert Q.shape == (3, 2)
    assert torch.allclose(Q.T @ Q, torch.eye(2, dtype=F64), atol=1e-14)
    P = Q @ Q.T
    assert torch.allclose(P @ V, V, atol=1e-13)  # same span
    basis = torch.tensor([[1.0], [0.0], [0.0]], dtype=F64)
    Qb = orthonormal_columns(V, basis)
    assert torch.allclose(basis.T @ Qb, torch.zeros(1, Qb.shape[1], dtype=F64), atol=1e-14)
    assert Qb.shape == (3, 2)
    assert orthonormal_columns(torch.zeros(3, 2, dtype=F64)).shape == (3, 0)
    near = torch.tensor([[1.0, 1.0], [0.0, 1e-9]], dtype=F64)
    assert orthonormal_columns(near).shape == (2, 1)
    assert orthonormal_columns(near, drop=1e-10).shape == (2, 2)
    assert orthonormal_columns(V[:, :1], basis[:, :0]).shape == (3, 1)


def test_block_helpers():
    V = torch.arange(6.0, dtype=F64).reshape(3, 2)
    H = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=F64))
    assert torch.equal(images(lambda v: H @ v, V, F64), H @ V)
    assert torch.equal(images(lambda v: H @ v, V[:, :1], F64), H @ V[:, :1])
    assert torch.equal(hcat(V[:, :1], V[:, 1:]), V)
    Q = torch.zeros(3, 5, dtype=F64)
    assert grown(Q, 10).shape == (6, 5) and grown(Q, 4).shape == (4, 5)


def test_top_eigenpairs_of_an_objective_and_unknown_method():
    A = torch.diag(DIAG)
    obj = FunctionObjective(lambda z: 0.5 * z @ A @ z, dim=DIM)
    x = torch.zeros(DIM, dtype=F64)
    res = top_eigenpairs(obj, x, 2, tol=1e-10)
    assert np.allclose(res.eigenvalues, [10.0, 6.0], rtol=1e-9)
    with pytest.raises(ValueError, match="method"):
        top_eigenpairs(obj, x, 1, method="arpack")
