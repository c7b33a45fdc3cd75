"""Gauss–Newton split, per-block sharpness and λ_min against dense float64 references.

G's reference is built from a dense Jacobian (``references.dense_jacobian``)
and the dense Hessian of the loss in the outputs; H's from double-backward columns.
"""

import functools

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from eoskit import block_sharpness, gauss_newton_eigs, lambda_min
from eoskit.spectrum import (
    BlockSharpnessTracker,
    GaussNewtonTracker,
    LambdaMinTracker,
    module_blocks,
)
from tests.references import (
    LOSS_FNS,
    dense_hessian,
    dense_jacobian,
    flat_parameters,
    mlp_tanh,
    tiny_cnn,
)

TOL = 1e-8


def _closures(prob):
    """``outputs(p)``: the module's outputs on flat parameters; ``loss(z)``: the mean loss."""
    _, params_of = flat_parameters(prob.model)

    def outputs(p):
        return functional_call(prob.model, params_of(p), (prob.inputs,))

    return outputs, lambda z: LOSS_FNS[prob.loss_name](z, prob.targets)


def _loss_hessian(out_loss, z):
    """The dense Hessian of the loss in the flattened outputs z, (z.numel(), z.numel())."""
    return dense_hessian(lambda flat: out_loss(flat.view(z.shape)), z.reshape(-1))


@functools.cache
def _split(build, loss, xscale):
    """The problem at ``xscale·x0`` (scaled up: larger residuals, a larger H − G), G and H."""
    prob = build(loss)
    x = prob.x0 * xscale
    outputs, out_loss = _closures(prob)
    z = outputs(x).detach()
    J = dense_jacobian(outputs, x)
    L = _loss_hessian(out_loss, z)
    G = J.T @ L @ J
    H = dense_hessian(prob.f, x)
    return prob, x, outputs, out_loss, (G + G.T) / 2, (H + H.T) / 2


def _top(M, k):
    return torch.linalg.eigvalsh(M).flip(0)[:k].numpy()


CASES = [(mlp_tanh, "mse", 1.0), (mlp_tanh, "ce", 3.0), (tiny_cnn, "mse", 2.0)]


@pytest.mark.parametrize("build,loss,xscale", CASES)
def test_gauss_newton_and_remainder_top_eigenvalues_match_dense(build, loss, xscale):
    prob, x, outputs, out_loss, G, H = _split(build, loss, xscale)
    k = 2
    split = gauss_newton_eigs(outputs, out_loss, x, k=k, tol=1e-10)
    scale = float(torch.linalg.eigvalsh(H).abs().max())
    np.testing.assert_allclose(split.gauss_newton.eigenvalues, _top(G, k), atol=TOL * scale)
    np.testing.assert_allclose(split.remainder.eigenvalues, _top(H - G, k), atol=TOL * scale)
    assert _top(H - G, 1)[0] > 1e-3 * scale  # the remainder is not negligible here


def test_gauss_newton_tracker_follows_a_trajectory():
    prob, x, outputs, out_loss, _, _ = _split(mlp_tanh, "ce", 3.0)
    tracker = GaussNewtonTracker(k=1, tol=1e-10, restart_every=0)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        x = x + 0.01 * torch.randn(x.shape, dtype=x.dtype, generator=gen)
        split = tracker.measure(outputs, out_loss, x)
        z = outputs(x).detach()
        J = dense_jacobian(outputs, x)
        L = _loss_hessian(out_loss, z)
        G, H = J.T @ L @ J, dense_hessian(prob.f, x)
        assert split.gauss_newton.eigenvalues[0] == pytest.approx(_top(G, 1)[0], rel=TOL)
        assert split.remainder.eigenvalues[0] == pytest.approx(_top((H + H.T) / 2 - G, 1)[0],
                                                               rel=TOL)
    assert tracker.parts["gauss_newton"].solves == 3


def _dense_blocks(prob, x):
    H = dense_hessian(prob.f, x)
    H = (H + H.T) / 2
    out, start = {}, 0
    for name, p in prob.model.named_parameters():  # mlp_tanh: weight then bias per Linear
        out.setdefault(name.rpartition(".")[0], []).extend(range(start, start + p.numel()))
        start += p.numel()
    return {m: float(torch.linalg.eigvalsh(H[idx][:, idx]).max()) for m, idx in out.items()}


def test_block_sharpness_matches_dense_diagonal_blocks():
    prob = mlp_tanh("mse")
    ref = _dense_blocks(prob, prob.x0)
    got = block_sharpness(prob.model, LOSS_FNS["mse"], (prob.inputs, prob.targets))
    assert sorted(got) == sorted(ref) == ["0", "2", "4"]
    for name in ref:
        assert got[name] == pytest.approx(ref[name], rel=TOL), name


def test_block_sharpness_tracker_warm_starts_along_a_run():
    prob = mlp_tanh("ce")
    tracker = BlockSharpnessTracker(tol=1e-10, restart_every=0)
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        with torch.no_grad():
            for p in prob.model.parameters():
                p.add_(0.02 * torch.randn(p.shape, dtype=p.dtype, generator=gen))
        x = torch.cat([p.detach().reshape(-1) for p in prob.model.parameters()])
        ref = _dense_blocks(prob, x)
        got = block_sharpness(prob.model, "ce", (prob.inputs, prob.targets), tracker=tracker)
        for name in ref:
            assert got[name] == pytest.approx(ref[name], rel=TOL), name
    assert {t.solves for t in tracker.trackers.values()} == {3}
    assert tracker.trackers["0"].carried is not None  # warm: the next solve starts from it


def test_module_blocks_group_by_owning_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(2))
            self.body = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1, bias=False))

    blocks = module_blocks(Net())
    assert {k: v.tolist() for k, v in blocks.items()} == {
        "(root)": [0, 1], "body.0": list(range(2, 11)), "body.1": [11, 12, 13]}


@pytest.mark.parametrize("build,loss,xscale", CASES)
def test_lambda_min_matches_dense(build, loss, xscale):
    prob, x, *_, H = _split(build, loss, xscale)
    dense = torch.linalg.eigvalsh(H).numpy()
    assert dense[0] < 0  # there is negative curvature to find
    res = lambda_min(prob.f, x, k=2, tol=1e-10)
    np.testing.assert_allclose(res.eigenvalues, dense[:2], atol=TOL * np.abs(dense).max())
    v = res.eigenvectors[:, 0]
    assert float((H @ v - res.eigenvalues[0] * v).norm()) <= 1e-6 * abs(dense[0])


def test_lambda_min_tracker_follows_a_trajectory():
    prob = mlp_tanh("ce")
    x = prob.x0 * 3.0
    tracker = LambdaMinTracker(tol=1e-10, restart_every=0)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        x = x + 0.01 * torch.randn(x.shape, dtype=x.dtype, generator=gen)
        H = dense_hessian(prob.f, x)
        ref = float(torch.linalg.eigvalsh((H + H.T) / 2)[0])
        res = tracker.measure(lambda v, H=H: H @ v, x.numel(), x.dtype, x.device)
        assert res.eigenvalues[0] == pytest.approx(ref, rel=TOL)
    state = tracker.state_dict()
    again = LambdaMinTracker(tol=1e-10, restart_every=0)
    again.load_state_dict(state, "cpu")
    assert again.tracker.solves == 3
