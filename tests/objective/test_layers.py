"""Modern layers: every derivative order exact (vs finite differences of plain HVPs).

References are independent of eoskit: Hessian-vector products by plain
double backward through ``torch.func.functional_call`` (correct for fused
kernels at second order), and third/fourth derivatives by Richardson-
extrapolated central differences of those products.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from eoskit.objective import FunctionObjective, ModelObjective, layers
from eoskit.objective.model import BatchNormChunkingWarning
from tests import references as R

TOL = 1e-6  # the goal for every comparison with finite differences


@pytest.fixture(autouse=True)
def _float64_default():
    """Build this file's models in float64, and leave the default as it was for others."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


class Tokens(nn.Module):
    """A two-layer Transformer encoder on 5 positions with a linear head."""

    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.enc(x).mean(dim=1))


def _models():
    torch.manual_seed(0)
    return {
        "layernorm": (nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.LayerNorm(6), nn.Tanh(),
                                    nn.Linear(6, 3)), torch.randn(7, 4)),
        "groupnorm": (nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.Tanh(),
                                    nn.Flatten(), nn.Linear(4 * 2 * 2, 3)),
                      torch.randn(5, 1, 4, 4)),
        "rmsnorm": (nn.Sequential(nn.Linear(4, 6), nn.RMSNorm(6), nn.Tanh(), nn.Linear(6, 3)),
                    torch.randn(7, 4)),
        "attention": (Tokens(), torch.randn(4, 5, 8)),
        "batchnorm": (nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(),
                                    nn.Linear(6, 3)), torch.randn(7, 4)),
    }


def _setup(name):
    model, X = _models()[name]
    model = model.double()
    gen = torch.Generator().manual_seed(1)
    Y = torch.randn(len(X), 3, generator=gen)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    buffers = {n: b.clone() for n, b in model.named_buffers()}

    def loss(x):  # plain closure: mean of ½‖f − y‖² (no eoskit code)
        params, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            params[n] = x[i:i + s.numel()].view(s)
            i += s.numel()
        bufs = {n: b.clone() for n, b in buffers.items()}  # never update the model's
        with sdpa_kernel(SDPBackend.MATH):  # fused CPU attention has no double backward
            out = functional_call(model, {**params, **bufs}, (X,))
        return 0.5 * ((out - Y) ** 2).sum() / len(X)

    x0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return model, X, Y, loss, x0


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name", ["layernorm", "groupnorm", "rmsnorm", "attention",
                                  "batchnorm"])
@pytest.mark.parametrize("method", ["retained", "rev-rev", "fwd-rev", "fd"])
def test_hvp_matches_finite_differences(name, method):
    # retained, rev-rev and fd run the fused norms (no routing): still exact
    model, X, Y, loss, x0 = _setup(name)
    obj = ModelObjective(model, "mse", X, Y, hvp_method=method)
    v = torch.randn(x0.numel(), generator=torch.Generator().manual_seed(2))
    v = v / v.norm()
    fd = R.fd_hvp_extrapolated(loss, x0, v, h=1e-3)
    assert _rel(obj.hvp(x0, v), fd) < TOL
    assert _rel(R.hvp(loss, x0, v), fd) < TOL  # the reference itself


@pytest.mark.parametrize("name", ["layernorm", "groupnorm", "rmsnorm", "attention",
                                  "batchnorm"])
def test_third_and_fourth_derivatives_match_finite_differences(name):
    model, X, Y, loss, x0 = _setup(name)
    obj = ModelObjective(model, "mse", X, Y)
    gen = torch.Generator().manual_seed(3)
    u, v = (torch.randn(x0.numel(), generator=gen) for _ in range(2))
    u, v = u / u.norm(), v / v.norm()  # unit directions: the step h is the distance moved
    d3_fd = R.fd_third_derivative(loss, x0, u, v, h=1e-3)
    assert _rel(obj.d3(x0, u, v), d3_fd) < TOL
    # vᵀ H(x + εv) v differenced twice in ε: F[v,v,v,v]
    d4_fd = R.directional_fd(loss, x0, v, order=4, h=5e-3)
    assert abs(float(obj.d4(x0, v)) - float(d4_fd)) < TOL * abs(float(d4_fd))


@pytest.mark.parametrize("name", ["layernorm", "groupnorm", "rmsnorm", "batchnorm"])
def test_norms_are_routed_for_d3_d4_and_forward_mode_only(name, monkeypatch):
    model, X, Y, _, x0 = _setup(name)
    routed = []
    for fused, composite in list(layers._COMPOSITE.items()):
        monkeypatch.setitem(layers._COMPOSITE, fused,
                            lambda *a, c=composite, **k: routed.append(c) or c(*a, **k))
    v = torch.ones_like(x0)
    for method in ("retained", "rev-rev", "fd"):
        obj = ModelObjective(model, "mse", X, Y, hvp_method=method)
        obj.value(x0), obj.grad(x0), obj.hvp(x0, v)
    assert routed == []
    obj = ModelObjective(model, "mse", X, Y, hvp_method="fwd-rev")
    for derivative in (lambda: obj.hvp(x0, v), lambda: obj.d3(x0, v, v), lambda: obj.d4(x0, v)):
        routed.clear()
        derivative()
        assert routed, name


def test_dense_hessian_and_user_closure_with_layernorm():
    model, X, Y, loss, x0 = _setup("layernorm")
    d = x0.numel()
    eye = torch.eye(d)
    H_fd = R.fd_hessian(loss, x0, h=1e-3)
    H = FunctionObjective(loss, d).hessian(x0)  # a user closure calling nn.LayerNorm
    assert float((H - H_fd).abs().max() / H_fd.abs().max()) < TOL
    assert torch.equal(H, H.T)
    fn_obj = FunctionObjective(loss, d)
    v = eye[0] + eye[d - 1]
    d4_model = ModelObjective(model, "mse", X, Y).d4(x0, v)
    assert abs(float(fn_obj.d4(x0, v)) - float(d4_model)) < 1e-10 * abs(float(d4_model))


def test_batch_norm_buffers_untouched_and_chunking_warns():
    model, X, Y, _, x0 = _setup("batchnorm")
    before = {n: b.clone() for n, b in model.named_buffers()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obj = ModelObjective(model, "mse", X, Y)  # one chunk: no warning
    v = torch.ones_like(x0)
    obj.value(x0), obj.grad(x0), obj.hvp(x0, v), obj.d3(x0, v, v), obj.d4(x0, v)
    with obj.at(x0) as point:
        point.hvp(v)
    for n, b in model.named_buffers():
        assert torch.equal(b, before[n]), n
    # the value is the batch-statistics loss of the whole batch, as a training step sees it
    ref_model = copy.deepcopy(model)
    expected = 0.5 * ((ref_model(X) - Y) ** 2).sum() / len(X)
    assert abs(float(obj.value(x0)) - float(expected)) < 1e-12
    with pytest.warns(BatchNormChunkingWarning):
        chunked = ModelObjective(model, "mse", X, Y, physical_batch=4)  # 4 + 3: no 1-sample chunk
    assert abs(float(chunked.value(x0)) - float(expected)) > 1e-6  # chunk statistics differ


def test_user_model_dtype_is_left_alone():
    model = nn.Linear(3, 2).float()
    obj = ModelObjective(model, "mse", torch.randn(4, 3), torch.randn(4, 2),
                         dtype=torch.float64)
    assert next(model.parameters()).dtype == torch.float32
    assert obj.x0().dtype == torch.float64
