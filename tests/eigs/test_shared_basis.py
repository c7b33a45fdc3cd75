"""SharedBasis's d-long steps against dense float64 formulas, and its in-place restart.

References: the dense matrices H, P = diag(p) and D = P^{-1/2} of a random symmetric
operator; the rows and images stacked into dense (d, m) arrays and multiplied by numpy.
The d-long allocations by the dispatch-mode counter of tests/eigs/test_vector_budget.py.
"""

import numpy as np
import pytest
import torch

from eoskit.eigs.shared_basis import SharedBasis, combine_in_place, orthonormalised
from tests.eigs.test_vector_budget import LongVectors

D = 30


def _operator(seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(D, D, dtype=torch.float64, generator=g)
    H = (A + A.T) / 2
    p = 0.5 + torch.rand(D, dtype=torch.float64, generator=g)
    return H, p, g


def _basis(m=5, seed=0):
    H, p, g = _operator(seed)
    b = SharedBasis(lambda v: H @ v, p)
    for _ in range(m):
        b.add(b.orthogonal(torch.randn(D, dtype=torch.float64, generator=g)))
    return b, H, p


@pytest.mark.parametrize("target", ["raw", "pre"])
def test_ritz_vector_image_residual_and_expansion_match_the_dense_formulas(target):
    b, H, p = _basis()
    W = torch.stack(b.rows, 1)  # (d, m)
    ritz = b.ritz(target)
    c, theta = ritz.coef[:, 0], float(ritz.values[0])
    z = W @ c
    root = p.sqrt()  # D^{-1}
    if target == "raw":
        vector, image, residual, expansion = z, H @ z, H @ z - theta * z, H @ z - theta * z
    else:  # A = D H D on u = D^{-1} z: A u = D H z, residual D(Hz − θPz), expansion D·residual
        defect = H @ z - theta * p * z
        vector, image, residual, expansion = root * z, H @ z / root, defect / root, defect / p
        A = H / root[:, None] / root[None, :]
        assert torch.allclose(A @ vector, image, atol=1e-12)
    for got, want in ((b.vector(target, c), vector), (b.image(target, c), image),
                      (b.residual(target, c, theta), residual),
                      (b.expansion(target, c, theta), expansion)):
        assert torch.allclose(got, want, rtol=0, atol=1e-12)
    assert b.residual_norm(target, c, theta) == pytest.approx(float(residual.norm()), rel=1e-8)


@pytest.mark.parametrize("target", ["raw", "pre"])
def test_a_small_residual_norm_is_summed_by_slices_without_a_d_long_vector(target,
                                                                            monkeypatch):
    """Below the Gram formula's floor the norm is formed explicitly: it must be the dense
    ‖r‖ (float64 formula) and must not make a d-long vector (a slice at a time)."""
    import eoskit.eigs.shared_basis as shared_basis

    monkeypatch.setattr(shared_basis, "SLICE", 7)  # slices well below d, and uneven
    H, p, g = _operator(4)
    b = SharedBasis(lambda v: H @ v, p)
    dense = H if target == "raw" else H / p.sqrt()[:, None] / p.sqrt()[None, :]
    top = torch.linalg.eigh(dense)[1][:, -1]
    start = top if target == "raw" else top / p.sqrt()  # the row w = D u of A's vector u
    b.add(b.orthogonal(start + 1e-4 * torch.randn(D, dtype=torch.float64, generator=g)))
    b.add(b.orthogonal(torch.randn(D, dtype=torch.float64, generator=g)))
    ritz = b.ritz(target)
    c, theta = ritz.coef[:, 0], float(ritz.values[0])
    z = torch.stack(b.rows, 1) @ c
    defect = H @ z - theta * (z if target == "raw" else p * z)
    want = float(defect.norm() if target == "raw" else (defect / p.sqrt()).norm())
    with LongVectors(D) as count:
        got = b.residual_norm(target, c, theta)
    assert b.explicit_residuals == 1 and want < 1e-3 * abs(theta)
    assert got == pytest.approx(want, rel=1e-8)
    assert count.peak == {}


@pytest.mark.parametrize("stored", [torch.float64, torch.bfloat16])
def test_combine_in_place_is_the_dense_product_and_allocates_no_d_long_vector(stored,
                                                                              monkeypatch):
    import eoskit.eigs.shared_basis as shared_basis

    monkeypatch.setattr(shared_basis, "SLICE", 64)  # slices well below d, as at scale
    g = torch.Generator().manual_seed(2)
    m, q, d = 7, 4, 500
    vectors = [torch.randn(d, dtype=torch.float64, generator=g).to(stored) for _ in range(m)]
    V = torch.stack(vectors, 1).double()
    C, _ = torch.linalg.qr(torch.randn(m, q, dtype=torch.float64, generator=g))
    with LongVectors(d) as count:
        out = combine_in_place(vectors, C)
    assert len(out) == q and all(v.dtype == stored for v in out)
    # bfloat16 vectors: the sum is formed in float32 and rounded once (2^-9 relative)
    err = (torch.stack(out, 1).double() - V @ C).abs().max() / (V @ C).abs().max()
    assert err <= (1e-14 if stored == torch.float64 else 2 ** -8)
    assert count.peak == {}  # no d-long tensor made: the rows were rewritten in place
    assert vectors == []  # the caller's list is handed over


def test_compress_keeps_the_span_its_ritz_values_and_orthonormal_rows():
    b, H, p = _basis(m=6, seed=1)
    before = {t: b.ritz(t).values[:2].copy() for t in b.targets}
    # keep the top two Ritz directions of each target: their values must survive exactly
    coef = torch.cat([b.ritz(t).coef[:, :2] for t in b.targets], 1)
    W_kept = torch.stack(b.rows, 1) @ coef
    b.compress(coef)
    W = torch.stack(b.rows, 1)
    assert len(b) == 4
    assert torch.allclose(W.T @ W, torch.eye(4, dtype=torch.float64), atol=1e-12)
    # the same span: the kept directions are reproduced by the new rows
    assert torch.allclose(W @ (W.T @ W_kept), W_kept, atol=1e-12)
    assert torch.allclose(torch.stack(b.images, 1), H @ W, atol=1e-12)
    for t in b.targets:
        M = b.M[t]
        dense_M = W.T @ W if t == "raw" else W.T @ (p[:, None] * W)
        assert torch.allclose(M, dense_M, atol=1e-12)
        assert np.allclose(b.ritz(t).values[:2], before[t], rtol=0, atol=1e-10)


@pytest.mark.parametrize("target", ["raw", "pre"])
def test_bfloat16_images_leave_the_ritz_values_exact_and_round_only_the_images(target):
    # the dense reference of the same float64 operator: the Rayleigh–Ritz values on the
    # span of the rows are those of WᵀHW, which the basis takes from full-precision images
    H, p, g = _operator(3)
    starts = [torch.randn(D, dtype=torch.float64, generator=g) for _ in range(6)]
    full = SharedBasis(lambda v: H @ v, p)
    narrow = SharedBasis(lambda v: H @ v, p, image_dtype=torch.bfloat16)
    for v in starts:
        for b in (full, narrow):
            b.add(b.orthogonal(v.clone()))
    assert all(h.dtype == torch.bfloat16 for h in narrow.images)
    W = torch.stack(narrow.rows, 1)
    metric = W.T @ W if target == "raw" else W.T @ (p[:, None] * W)
    L = torch.linalg.cholesky(metric)
    Li = torch.linalg.inv(L)
    dense = torch.linalg.eigvalsh(Li @ (W.T @ H @ W) @ Li.T).flip(0).numpy()
    values = narrow.ritz(target).values
    assert np.allclose(values, dense, rtol=0, atol=1e-12)
    # what the rounded images serve: the Ritz image, residual and restart, to 2^-8 of it
    c = narrow.ritz(target).coef[:, 0]
    theta = float(values[0])
    want = H @ (W @ c) if target == "raw" else H @ (W @ c) / p.sqrt()
    got = narrow.image(target, c)
    assert got.dtype == torch.float64 and float((got - want).norm()) <= 2 ** -8 * float(
        want.norm())
    r = narrow.residual_norm(target, c, theta)
    assert r == pytest.approx(full.residual_norm(target, c, theta), rel=2 ** -6)
    narrow.compress(narrow.ritz(target).coef[:, :3])
    assert all(h.dtype == torch.bfloat16 for h in narrow.images) and len(narrow) == 3
    kept = torch.stack(narrow.rows, 1)
    exact = H @ kept
    rounded = torch.stack([h.double() for h in narrow.images], 1)
    assert float((rounded - exact).norm()) <= 2 ** -8 * float(exact.norm())


def test_the_small_matrices_of_a_long_float32_basis_hold_float64_dots():
    # one float32 dot over all of d sums in float32: 4e-6 off at 5.3M elements (4e-4 at
    # GPT-2 small's 124M, where such Gram matrices floored residual norms at ~2%); by slices
    # summed in float64 the entries stay within 1e-6 of float64 dots of the same vectors
    from eoskit.eigs.krylov import norm

    d, g = 5_300_000, torch.Generator().manual_seed(0)
    lam = torch.rand(d, generator=g)
    p = 0.5 + torch.rand(d, generator=g)
    b = SharedBasis(lambda v: lam * v, p)
    for _ in range(3):
        b.add(b.orthogonal(torch.randn(d, generator=g)))
    W = torch.stack(b.rows).double()
    HW = torch.stack(b.images).double()
    ref = {"G": W @ HW.T, "M raw": W @ W.T, "K raw": HW @ HW.T,
           "M pre": (W * p.double()) @ W.T, "K pre": (HW / p.double()) @ HW.T}
    got = {"G": b.G, "M raw": b.M["raw"], "K raw": b.K["raw"], "M pre": b.M["pre"],
           "K pre": b.K["pre"]}
    for name, R in ref.items():
        assert torch.allclose(got[name], R, rtol=1e-6, atol=1e-6 * float(R.abs().max())), name
    v = torch.randn(d, generator=g)
    assert abs(float(norm(v)) / float(v.double().norm()) - 1) <= 1e-6


@pytest.mark.parametrize("near", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_orthonormalised_against_the_dense_projection(weighted, near, monkeypatch):
    """``v`` less its P-projection on the rows, P-normalised, and the P-norm of that part,
    against numpy's dense formulas; a vector in the rows' span comes back None. ``near``:
    ``v`` a combination of the rows plus 1e-6 times a random vector, so the first pass
    cancels nearly all of it and the second pass runs."""
    import eoskit.eigs.shared_basis as shared_basis

    monkeypatch.setattr(shared_basis, "SLICE", 7)  # several uneven slices
    g = torch.Generator().manual_seed(3)
    p = 0.5 + torch.rand(D, dtype=torch.float64, generator=g) if weighted else None
    P = np.diag(p.numpy()) if weighted else np.eye(D)
    Q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((D, 4)))
    R = np.linalg.cholesky(Q.T @ P @ Q)
    W = Q @ np.linalg.inv(R).T  # (d, 4), P-orthonormal columns
    rows = [torch.from_numpy(W[:, i].copy()) for i in range(4)]
    v = torch.randn(D, dtype=torch.float64, generator=g) * 3
    if near:
        v = torch.from_numpy(W @ np.array([3.0, -1.0, 2.0, 0.5])) + 1e-6 * v
    off = v.numpy() - W @ (W.T @ P @ v.numpy())
    expected = np.sqrt(off @ P @ off)
    w, n = orthonormalised(v.clone(), rows, p)
    assert n == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(w.numpy(), off / expected, atol=1e-12)
    inside = torch.from_numpy(W @ np.arange(1.0, 5.0))
    assert orthonormalised(inside, rows, p)[0] is None
    assert orthonormalised(torch.zeros(D, dtype=torch.float64), rows, p) == (None, 0.0)
