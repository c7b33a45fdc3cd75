"""The trackers' memory bound: d-long vectors in the products' dtype, at most ``max_vectors``.

A TorchDispatchMode sees every tensor an aten op returns; storages of at least
d elements made while it is active are counted (in units of d) for as long as
any tensor viewing them is alive, so the peak is the number of d-long vectors
held at once. The operator allocates exactly one d-long output per product.
References: dense ``eigvalsh`` of the same operator in float64.
"""

import weakref

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from eoskit.eigs import lanczos, make_tracker, subspace_eigs
from eoskit.eigs.tracker import min_max_vectors

D_DIM = 500


class LongVectors(TorchDispatchMode):
    """Peak number of d-long vectors alive at once, by dtype, made while active."""

    def __init__(self, d: int):
        super().__init__()
        self.d = d
        self.live: dict[int, list] = {}  # storage address -> [dtype, vectors, weak refs]
        self.peak: dict[torch.dtype, float] = {}
        self.peak_float32 = 0.0  # all dtypes at once, in d-long float32 vectors (bytes / 4d)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # a view of a storage made before the count began is not an allocation
        given = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                 if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            st = t.untyped_storage()
            n = st.nbytes() // t.element_size()
            key = st.data_ptr()
            if n < self.d or (key in given and key not in self.live):
                continue
            self.live.setdefault(key, [t.dtype, n / self.d, []])[2].append(weakref.ref(t))
        now: dict[torch.dtype, float] = {}
        for key in list(self.live):
            dtype, n, refs = self.live[key]
            refs[:] = [r for r in refs if r() is not None]
            if refs:
                now[dtype] = now.get(dtype, 0) + n
            else:
                del self.live[key]
        for dtype, n in now.items():
            self.peak[dtype] = max(self.peak.get(dtype, 0), n)
        self.peak_float32 = max(self.peak_float32, sum(
            n * dtype.itemsize / 4 for dtype, n in now.items()))
        return out


def _drifting(dtype):
    """A diagonal plus a growing rank-one term: the top eigenvectors turn as t grows."""
    g = torch.Generator().manual_seed(0)
    diag = torch.linspace(-1.0, 6.0, D_DIM, dtype=torch.float64)
    diag[-4:] = torch.tensor([7.0, 7.6, 8.4, 10.0], dtype=torch.float64)
    u = torch.randn(D_DIM, dtype=torch.float64, generator=g)
    u /= u.norm()

    def at(t):
        c = 0.5 + 0.05 * t
        dd, uu = diag.to(dtype), u.to(dtype)

        def hvp(v):
            out = dd * v  # the product's one d-long allocation
            return out.add_(uu, alpha=float(c * (uu @ v)))

        dense = torch.diag(diag) + c * torch.outer(u, u)
        return hvp, torch.linalg.eigvalsh(dense).flip(0).numpy()

    return at


@pytest.mark.parametrize("mode,tol", [("lanczos", 1e-3), ("streaming", 1e-2)])
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("smallest", [False, True])
def test_float32_tracker_holds_no_float64_and_at_most_its_budget(mode, tol, k, smallest):
    opts = {"max_vectors": min_max_vectors(k)} if smallest else {}
    tr = make_tracker(mode, k, tol, 4, criterion="eigenvalue", **opts)
    at = _drifting(torch.float32)
    ops = [at(t) for t in range(9)]
    with LongVectors(D_DIM) as count:
        for hvp, ref in ops:
            res = tr.measure(hvp, D_DIM, torch.float32, "cpu")
            # float32 products: the stated tolerance, plus float32 rounding (~1e-6)
            assert np.all(np.abs(res.eigenvalues - ref[:k]) <= (tol + 1e-5) * np.abs(ref[:k]))
    assert set(count.peak) == {torch.float32}  # no d-long float64 (nor other) array
    assert count.peak[torch.float32] <= tr.max_vectors
    assert res.eigenvectors.dtype == torch.float32


def test_the_budget_is_checked_and_sets_the_basis():
    with pytest.raises(ValueError, match="max_vectors must be at least"):
        make_tracker("lanczos", 1, 1e-3, max_vectors=min_max_vectors(1) - 1)
    small = make_tracker("lanczos", 1, 1e-3, max_vectors=min_max_vectors(1))
    assert small.max_basis() == 4
    assert make_tracker("lanczos", 1, 1e-3).max_basis() == 7  # default 13k + 28: k + 6


@pytest.mark.parametrize("k", [1, 3])
def test_lanczos_restarted_under_a_basis_bound_matches_eigvalsh(k):
    hvp, ref = _drifting(torch.float64)(3)
    free = lanczos(hvp, D_DIM, k, tol=1e-10, max_iter=600)
    bounded = lanczos(hvp, D_DIM, k, tol=1e-10, max_iter=600, max_basis=k + 4)
    assert free.converged and bounded.converged
    assert np.allclose(bounded.eigenvalues, ref[:k], rtol=1e-9, atol=0)
    assert np.allclose(free.eigenvalues, ref[:k], rtol=1e-9, atol=0)
    # the thick restart repeats no product, but a smaller basis needs more of them
    assert bounded.n_matvecs >= free.n_matvecs


def test_subspace_basis_bound_is_respected_and_exact():
    hvp, ref = _drifting(torch.float64)(0)
    with LongVectors(D_DIM) as count:
        res = subspace_eigs(hvp, D_DIM, 2, tol=1e-10, max_iter=500, max_basis=6)
    assert res.converged
    assert np.allclose(res.eigenvalues, ref[:2], rtol=1e-9, atol=0)
    # basis and images (6 each), two Ritz blocks of k + 2, temporaries
    assert count.peak[torch.float64] <= 2 * 6 + 2 * 4 + 4
