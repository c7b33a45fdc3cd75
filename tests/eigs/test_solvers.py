"""Eigensolvers against torch.linalg.eigvalsh of dense Hessians (float64)."""

import functools

import numpy as np
import pytest
import torch

from eoskit import hessian_eigs
from eoskit.eigs import lanczos, lobpcg, top_eigenpairs
from tests.conftest import tiny_objective

# (model, loss, target scale, parameter scale); the two scaled-up points have a
# largest-magnitude eigenvalue that is negative (asserted below)
NEGATIVE_POINTS = [("fc-tanh", "mse", 5.0, 3.0), ("fc-tanh", "ce", 1.0, 3.0)]
CASES = [
    ("fc-tanh", "mse", 1.0, 1.0), ("fc-tanh", "ce", 1.0, 1.0), ("cnn-tanh", "mse", 1.0, 1.0),
    ("cnn-tanh", "ce", 1.0, 1.0), ("fc-elu", "ce", 1.0, 1.0), *NEGATIVE_POINTS,
]


@functools.cache
def _case(model, loss, scale, xscale):
    obj = tiny_objective(model, loss, target_scale=scale, width=3 if "cnn" in model else 6)
    x = obj.x0() * xscale
    H = obj.hessian(x)
    return obj, x, H, torch.linalg.eigvalsh(H).flip(0).numpy()


@pytest.mark.parametrize("model,loss,scale,xscale", CASES)
@pytest.mark.parametrize("method", ["lanczos", "lobpcg"])
def test_top_k_algebraic_matches_dense(model, loss, scale, xscale, method):
    obj, x, H, dense = _case(model, loss, scale, xscale)
    k = 3
    res = top_eigenpairs(obj, x, k, tol=1e-10, method=method)
    rel = np.abs(res.eigenvalues - dense[:k]) / np.abs(dense[:k])
    assert rel.max() <= 1e-8, (res.eigenvalues, dense[:k])
    for i in range(k):
        v = res.eigenvectors[:, i]
        assert (H @ v - res.eigenvalues[i] * v).norm() <= 1e-6 * abs(res.eigenvalues[i])


@pytest.mark.parametrize("model,loss,scale,xscale", NEGATIVE_POINTS)
def test_largest_magnitude_negative_point_is_handled(model, loss, scale, xscale):
    obj, x, _, dense = _case(model, loss, scale, xscale)
    assert abs(dense[-1]) > abs(dense[0]), "fixture must have a dominant negative eigenvalue"
    vals, _ = hessian_eigs(obj, x, k=1, tol=1e-10)
    assert abs(vals[0] - dense[0]) <= 1e-8 * abs(dense[0])
    assert vals[0] > 0


def test_hessian_eigs_on_a_plain_callable():
    A = torch.randn(12, 12, dtype=torch.float64)
    A = A + A.T

    def f(x):
        return 0.5 * x @ A @ x + (x ** 4).sum() * 0

    vals, vecs = hessian_eigs(f, torch.zeros(12, dtype=torch.float64), k=4, tol=1e-12)
    dense = torch.linalg.eigvalsh(A).flip(0)[:4].numpy()
    assert np.allclose(vals, dense, rtol=1e-10, atol=0)
    assert vecs.shape == (12, 4)


def test_warm_start_needs_fewer_products():
    D = torch.diag(torch.linspace(-3, 10, 200, dtype=torch.float64))
    cold = lanczos(lambda v: D @ v, 200, 1, tol=1e-8)
    warm = lanczos(lambda v: D @ v, 200, 1, tol=1e-8, v0=cold.eigenvectors)
    assert warm.n_matvecs < cold.n_matvecs / 3
    assert abs(warm.eigenvalues[0] - 10) < 1e-7


def test_eigenvalue_criterion_stops_earlier_with_same_accuracy_class():
    D = torch.diag(torch.linspace(0, 10, 400, dtype=torch.float64) ** 2 / 10)
    res_r = lanczos(lambda v: D @ v, 400, 1, tol=1e-6, criterion="residual")
    res_e = lanczos(lambda v: D @ v, 400, 1, tol=1e-6, criterion="eigenvalue")
    assert res_e.n_matvecs <= res_r.n_matvecs
    assert abs(res_e.eigenvalues[0] - 10) <= 1e-5 * 10


def test_invariant_subspace_breakdown_continues():
    # start exactly on an eigenvector of a non-top eigenvalue: Krylov space collapses at once
    D = torch.diag(torch.tensor([1.0, 2.0, 5.0, 3.0], dtype=torch.float64))
    v0 = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)
    res = lanczos(lambda v: D @ v, 4, 2, tol=1e-10, v0=v0, warm_noise=0.0)
    assert np.allclose(res.eigenvalues, [5.0, 3.0])


def test_bad_k_is_rejected():
    with pytest.raises(ValueError, match="between 1 and the dimension"):
        lanczos(lambda v: v, 3, 4)


def test_lobpcg_matches_lanczos_on_random_matrix():
    A = torch.randn(60, 60, dtype=torch.float64)
    A = A @ A.T / 60 - torch.eye(60, dtype=torch.float64)
    a = lanczos(lambda v: A @ v, 60, 2, tol=1e-10)
    b = lobpcg(lambda v: A @ v, 60, 2, tol=1e-9)
    assert np.allclose(a.eigenvalues, b.eigenvalues, rtol=1e-8)


# ---------------------------------------------------------------- tracker pieces
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from eoskit.eigs import StreamingTracker, make_tracker  # noqa: E402
from eoskit.eigs.krylov import orthonormal_columns  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(0, 3), st.integers(0, 10_000))
def test_orthonormal_columns_against_a_basis(m, p, seed):
    gen = torch.Generator().manual_seed(seed)
    d = 30
    basis = torch.linalg.qr(torch.randn(d, p, dtype=torch.float64, generator=gen))[0]
    V = torch.randn(d, m, dtype=torch.float64, generator=gen)
    V = torch.cat([V, V[:, :1] * 2.0 + basis @ torch.ones(p, 1, dtype=torch.float64)], 1)
    Q = orthonormal_columns(V, basis if p else None)
    # the dependent last column is dropped; what is kept is orthonormal, orthogonal to the basis
    assert Q.shape == (d, m)
    assert torch.allclose(Q.T @ Q, torch.eye(m, dtype=torch.float64), atol=1e-12)
    if p:
        assert float((basis.T @ Q).abs().max()) < 1e-12
    # and spans what V spans outside the basis
    P = torch.eye(d, dtype=torch.float64) - basis @ basis.T
    assert torch.allclose(Q @ (Q.T @ (P @ V[:, :m])), P @ V[:, :m], atol=1e-10)


def _rotating_spectrum(t, d=50, k=2):
    """Diagonal spectrum with slowly rotating top eigenvectors; the exact top k."""
    lam = torch.linspace(0.0, 8.0, d, dtype=torch.float64)
    lam[-1], lam[-2], lam[-3] = 20.0 + 0.02 * t, 15.0 - 0.01 * t, 12.0
    c, s = np.cos(0.03 * t), np.sin(0.03 * t)
    R = torch.eye(d, dtype=torch.float64)
    R[[0, -1], [0, -1]] = c
    R[0, -1], R[-1, 0] = -s, s
    H = R @ torch.diag(lam) @ R.T
    return H, np.sort(lam.numpy())[::-1][:k]


@pytest.mark.parametrize("k", [1, 2])
def test_streaming_top_k_follows_a_rotating_spectrum(k):
    tr = StreamingTracker(k, 1e-2, 0)
    hvps = 0
    for t in range(60):
        H, exact = _rotating_spectrum(t, k=k)
        count = [0]

        def mv(v, H=H, count=count):
            count[0] += 1
            return H @ v

        res = tr.measure(mv, H.shape[0], torch.float64, "cpu")
        hvps += count[0]
        assert np.all(np.abs(res.eigenvalues - exact) <= 1e-2 * exact), (t, res.eigenvalues)
        # the reported residual is that of the returned vectors, recomputed densely
        for i in range(k):
            y = res.eigenvectors[:, i]
            r = float((H @ y - res.eigenvalues[i] * y).norm())
            assert abs(r - res.residuals[i]) <= 1e-8 * exact[0]
    # about k products a step once warm (the cold start and refreshes are the rest)
    assert hvps / 60 <= k + 1


@pytest.mark.parametrize("mode,tol", [("streaming", 1e-2), ("lanczos", 1e-4)])
def test_periodic_restart_finds_a_new_direction_and_never_loses_the_tracked_one(mode, tol):
    # the top eigenvalue sits on e_0; from step 12 a larger one appears on e_7, orthogonal to
    # everything tracked: only the random restart (every 5 solves) can find it
    d = 80
    lam = torch.linspace(0.0, 10.0, d, dtype=torch.float64).flip(0)
    lam[0] = 20.0
    tr = make_tracker(mode, 1, tol, 5, criterion="eigenvalue")
    found = None
    for t in range(30):
        D = lam.clone()
        if t >= 12:
            D[7] = 30.0
        res = tr.measure(lambda v, D=D: D * v, d, torch.float64, "cpu")
        top = float(D.max())
        # a restart never reports less than the tracked value: the Rayleigh-Ritz bound holds
        assert res.eigenvalues[0] >= 20.0 * (1 - tol)
        if t >= 12 and abs(res.eigenvalues[0] - top) <= tol * top and found is None:
            found = t
    assert found is not None and found <= 12 + 5


def test_long_float32_projections_are_summed_in_float64():
    # one float32 dot over 5.3M positive terms is ~4e-6 off (4e-4 at GPT-2 small's 124M);
    # Lanczos's α, the subspace solver's projected matrix and the streaming tracker's Gram
    # matrices sum 1M-element slices in float64 instead
    from eoskit.eigs.krylov import dots, reorthogonalised
    from eoskit.eigs.streaming import _gram_ritz
    from eoskit.eigs.subspace import _ritz_block

    d, g = 5_300_000, torch.Generator().manual_seed(0)
    Q, W = torch.rand(2, d, generator=g), torch.rand(2, d, generator=g)
    Q64, W64 = Q.double(), W.double()
    assert torch.allclose(dots(Q, W), Q64 @ W64.T, rtol=1e-6, atol=0)
    _, alpha, _ = reorthogonalised(W[1].clone(), Q)
    assert abs(alpha / float(Q64[1] @ W64[1]) - 1) <= 1e-6
    sym = 0.5 * (Q64 @ W64.T + W64 @ Q64.T)
    ref = torch.linalg.eigvalsh(sym).flip(0).numpy()
    theta, *_ = _ritz_block(Q, W, 1)
    assert np.allclose(theta, ref, rtol=0, atol=1e-6 * ref[0])
    values, _, _ = _gram_ritz(Q.T, W.T)
    assert np.allclose(values, ref, rtol=0, atol=1e-6 * ref[0])


def test_a_row_viewed_off_a_column_reaches_blas_with_row_strides(monkeypatch):
    """A (1, d) view of a (d, 1) column has strides (1, 1), on which a float32 product takes
    a path 60× slower (the README's sharpness benchmark, eighth stop): ``dots`` gives it the
    strides of a row, and the same sum."""
    from eoskit.eigs import krylov

    col, other = torch.randn(1000, 1), torch.randn(1000, 1)
    row = col.T
    assert row.stride() == (1, 1)
    assert krylov._blas_rows(row).stride() == (1000, 1)
    assert torch.equal(krylov._blas_rows(row), row)
    assert krylov._blas_rows(torch.randn(1000, 2).T).stride() == (1, 2)  # m > 1: as it is
    seen = []
    monkeypatch.setattr(krylov, "_blas_rows",
                        lambda x, given=krylov._blas_rows: seen.append(x.stride()) or given(x))
    want = (col.double().T @ other.double()).item()
    assert abs(krylov.dots(row, other.T).item() - want) <= 1e-5 * abs(want)  # a float32 dot
    assert seen == [(1, 1), (1, 1)]  # both operands pass through it
