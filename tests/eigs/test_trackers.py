"""The two tracker classes against dense eigen-decompositions, and their checkpoints."""

import io

import numpy as np
import pytest
import torch

from eoskit.eigs import LanczosTracker, SharpnessTracker, StreamingTracker

D = 40
MODES = [("lanczos", 1e-6, LanczosTracker), ("streaming", 1e-2, StreamingTracker)]


def _hessian(t: int) -> torch.Tensor:
    """An explicit symmetric (D, D) matrix along a smooth path: fixed random basis turned slowly.

    The top two eigenvalues approach each other and the top vectors rotate in their plane.
    """
    gen = torch.Generator().manual_seed(7)
    Q = torch.linalg.qr(torch.randn(D, D, dtype=torch.float64, generator=gen))[0]
    lam = torch.linspace(-3.0, 4.0, D, dtype=torch.float64)
    lam[-1], lam[-2], lam[-3] = 9.0 - 0.04 * t, 7.0 + 0.03 * t, 6.0
    c, s = np.cos(0.04 * t), np.sin(0.04 * t)
    R = torch.eye(D, dtype=torch.float64)
    R[-2:, -2:] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    Q = Q @ R
    H = Q @ torch.diag(lam) @ Q.T
    return 0.5 * (H + H.T)


def _measure(tr, H):
    count = [0]

    def hvp(v):
        count[0] += 1
        return H @ v

    return tr.measure(hvp, D, torch.float64, "cpu"), count[0]


@pytest.mark.parametrize("mode,tol,cls", MODES)
def test_mode_builds_its_class(mode, tol, cls):
    tr = SharpnessTracker(2, tol, 5, mode=mode, criterion="eigenvalue")
    assert type(tr) is cls and tr.mode == mode
    assert type(cls(2, tol, 5)) is cls


def test_unknown_mode_and_mismatched_class_are_rejected():
    with pytest.raises(ValueError, match="mode must be one of"):
        SharpnessTracker(1, 1e-2, 0, mode="power")
    with pytest.raises(ValueError, match="tracks mode 'streaming'"):
        StreamingTracker(1, 1e-2, 0, mode="lanczos")


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("mode,tol,cls", MODES)
def test_tracker_matches_dense_eigvalsh(mode, tol, cls, k):
    tr = SharpnessTracker(k, tol, 7, mode=mode, criterion="eigenvalue")
    for t in range(30):
        H = _hessian(t)
        dense = torch.linalg.eigvalsh(H).flip(0)[:k].numpy()
        res, hvps = _measure(tr, H)
        assert res.n_matvecs == hvps, t
        assert np.all(np.abs(res.eigenvalues - dense) <= tol * np.abs(dense)), (t, res, dense)
        # Rayleigh-Ritz values never exceed the eigenvalues they estimate
        assert np.all(res.eigenvalues <= dense + 1e-10 * np.abs(dense)), t
        for i in range(k):
            y = res.eigenvectors[:, i]
            r = float((H @ y - res.eigenvalues[i] * y).norm())
            assert abs(r - res.residuals[i]) <= 1e-8 * abs(dense[0]), (t, i)


@pytest.mark.parametrize("mode,tol,cls", MODES)
def test_checkpoint_round_trip_continues_identically(mode, tol, cls):
    def make():
        return SharpnessTracker(2, tol, 6, mode=mode, criterion="eigenvalue")

    ref = make()
    ref_rows = [_measure(ref, _hessian(t)) for t in range(24)]
    tr = make()
    rows = [_measure(tr, _hessian(t)) for t in range(11)]
    buf = io.BytesIO()
    torch.save(tr.state_dict(), buf)
    buf.seek(0)
    tr = make()
    tr.load_state_dict(torch.load(buf), "cpu")
    rows += [_measure(tr, _hessian(t)) for t in range(11, 24)]
    for (a, na), (b, nb) in zip(ref_rows, rows, strict=True):
        assert na == nb
        assert np.array_equal(a.eigenvalues, b.eigenvalues)
        assert torch.equal(a.eigenvectors, b.eigenvectors)


def test_streaming_checkpoint_keeps_the_carried_curvature():
    tr = SharpnessTracker(1, 1e-2, 0, mode="streaming")
    for t in range(5):
        _measure(tr, _hessian(t))
    state = tr.state_dict()
    assert {"solves", "warm", "carried", "next_value", "next_error", "next_age", "drift",
            "last_values", "history", "calm", "alternate"} <= set(state)
    # a checkpoint from before carried blocks were stored: the warm vectors start the block
    old = {"solves": state["solves"], "warm": state["warm"]}
    tr2 = SharpnessTracker(1, 1e-2, 0, mode="streaming")
    tr2.load_state_dict(old, "cpu")
    assert torch.equal(tr2.carried, state["warm"].to(torch.float64))
    res, _ = _measure(tr2, _hessian(5))
    dense = float(torch.linalg.eigvalsh(_hessian(5))[-1])
    assert abs(res.eigenvalues[0] - dense) <= 1e-2 * dense
