"""The CUDA paths against the CPU (marked ``cuda``: skipped without a device).

Products of a model objective, a shared tracker measurement and a Monitor's
rows on the GPU, each against the same computation on the CPU in float64
(and the measurement against a dense ``eigvalsh`` on the CPU).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from eoskit.eigs import SharedTracker
from eoskit.monitor import Monitor
from eoskit.objective import ModelObjective

pytestmark = pytest.mark.cuda


def _net_and_data():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    g = torch.Generator().manual_seed(1)
    X = torch.randn(40, 5, dtype=torch.float64, generator=g)
    Y = torch.randn(40, 3, dtype=torch.float64, generator=g)
    return model, X, Y


@pytest.mark.parametrize("method", ["retained", "rev-rev", "fd"])
def test_products_on_cuda_match_the_cpu(method):
    model, X, Y = _net_and_data()
    cpu = ModelObjective(model, F.mse_loss, X, Y, hvp_method=method)
    gpu = ModelObjective(copy.deepcopy(model).cuda(), F.mse_loss, X.cuda(), Y.cuda(),
                         hvp_method=method)
    x = cpu.x0()
    v = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(2))
    want = cpu.hvp(x, v)
    got = gpu.hvp(x.cuda(), v.cuda()).cpu()
    tol = 1e-6 if method == "fd" else 1e-10
    assert float((got - want).norm() / want.norm()) <= tol
    assert torch.allclose(gpu.value_and_grad(x.cuda())[1].cpu(), cpu.value_and_grad(x)[1],
                          rtol=1e-10, atol=1e-12)


def test_shared_tracker_on_cuda_matches_dense_eigvalsh():
    model, X, Y = _net_and_data()
    obj = ModelObjective(copy.deepcopy(model).cuda(), F.mse_loss, X.cuda(), Y.cuda())
    cpu = ModelObjective(model, F.mse_loss, X, Y)
    x = cpu.x0()
    H = cpu.hessian(x)
    p = torch.linspace(0.5, 2.0, len(x), dtype=torch.float64)
    root = p.rsqrt()
    ref_raw = torch.linalg.eigvalsh(H)[-1].item()
    ref_pre = torch.linalg.eigvalsh(root[:, None] * H * root[None, :])[-1].item()
    tr = SharedTracker(1, 1e-8)
    with obj.at(x.cuda()) as point:
        out = tr.measure(point.hvp, obj.dim, torch.float64, "cuda", p.cuda())
    assert out["raw"].eigenvectors.device.type == "cuda"
    assert np.isclose(out["raw"].eigenvalues[0], ref_raw, rtol=1e-7)
    assert np.isclose(out["pre"].eigenvalues[0], ref_pre, rtol=1e-7)


def test_monitor_on_cuda_matches_the_cpu():
    rows = {}
    for device in ("cpu", "cuda"):
        model, X, Y = _net_and_data()
        model, X, Y = model.to(device), X.to(device), Y.to(device)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        mon = Monitor(model, F.mse_loss, (X, Y), every=3, optimizer=opt, tol=1e-9,
                      restart_every=0)
        for _ in range(6):
            opt.zero_grad()
            F.mse_loss(model(X), Y).backward()
            opt.step()
            mon.step()
        rows[device] = mon.rows
    for a, b in zip(rows["cpu"], rows["cuda"], strict=True):
        for col in ("loss", "sharpness", "precond_sharpness", "eff_curvature"):
            if a[col] is None:  # the last row's κ waits for a step that did not come
                assert b[col] is None
                continue
            assert a[col] == pytest.approx(b[col], rel=1e-7), col
