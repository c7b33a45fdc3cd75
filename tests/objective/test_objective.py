"""The Objective against independent references (tests/references.py) on tiny float64 models.

The references are plain-torch closures on the same module and data, differentiated
by double backward (never by the Objective, never by forward mode, which is wrong on
nn.LayerNorm: see tests/test_references.py).
"""

import pytest
import torch

from eoskit.objective import EXACT_METHODS, FunctionObjective, ModelObjective, chunk_bounds
from tests import references as R
from tests.conftest import tiny_objective

F64 = torch.float64
CASES = [("fc-tanh", "mse"), ("fc-tanh", "ce"), ("cnn-tanh", "mse"), ("fc-softplus", "ce")]


def reference_of(obj: ModelObjective) -> R.Problem:
    """The objective's own module and data as an independent closure."""
    return R.module_loss(obj.model, obj.inputs, obj.targets, obj.loss_name)


_HESSIANS: dict[tuple[str, str], torch.Tensor] = {}


def case_hessian(model: str, loss: str, obj: ModelObjective) -> torch.Tensor:
    """The reference Hessian of a CASES objective at x0, built once for all methods."""
    if (model, loss) not in _HESSIANS:
        _HESSIANS[model, loss] = R.dense_hessian(reference_of(obj).f, obj.x0())
    return _HESSIANS[model, loss]


@pytest.mark.parametrize("model,loss", CASES)
@pytest.mark.parametrize("method", EXACT_METHODS)
def test_hvp_matches_dense_hessian(model, loss, method):
    obj = tiny_objective(model, loss, width=3 if model.startswith("cnn") else 6,
                         physical_batch=[7, 3, 10], hvp_method=method)
    x = obj.x0()
    H = case_hessian(model, loss, obj)
    v = torch.randn(obj.dim, dtype=F64)
    V = torch.randn(obj.dim, 3, dtype=F64)
    scale = H.abs().max()
    assert torch.allclose(obj.hvp(x, v), H @ v, atol=1e-12 * scale * v.norm(), rtol=0)
    assert torch.allclose(obj.hvp(x, V), H @ V, atol=1e-12 * scale * V.norm(), rtol=0)


@pytest.mark.parametrize("model,loss", CASES)
@pytest.mark.parametrize("method", EXACT_METHODS)
def test_value_grad_and_dense_hessian_match_references(model, loss, method):
    obj = tiny_objective(model, loss, width=3 if model.startswith("cnn") else 6,
                         physical_batch=[7, 3, 10], hvp_method=method)
    ref = reference_of(obj)
    x = obj.x0()
    value = float(ref.f(x))
    assert abs(float(obj.value(x)) - value) <= 1e-14 * abs(value)
    assert R.relative_error(obj.grad(x), R.dense_grad(ref.f, x)) <= 1e-13
    H = obj.hessian(x)
    assert torch.equal(H, H.T)
    assert R.relative_error(H, case_hessian(model, loss, obj)) <= 1e-13


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("method", EXACT_METHODS)
def test_layernorm_model_hvps_match_double_backward_reference(loss, method):
    # torch.func.hessian is off by ~1e-1 here; the Objective's products must not be
    ref = R.mlp_gelu_layernorm(loss)
    obj = ModelObjective(ref.model, loss, ref.inputs, ref.targets, physical_batch=[5, 7],
                         hvp_method=method)
    x = obj.x0()
    assert torch.equal(x, ref.x0)
    H = R.dense_hessian(ref.f, x)
    v = torch.randn(obj.dim, dtype=F64)
    V = torch.randn(obj.dim, 3, dtype=F64)
    assert R.relative_error(obj.hvp(x, v), H @ v) <= 1e-10
    assert R.relative_error(obj.hvp(x, V), H @ V) <= 1e-10
    assert R.relative_error(obj.hessian(x), H) <= 1e-10
    lam = R.eigh_top(H)[0]
    assert abs(float(R.eigh_top(obj.hessian(x))[0] - lam)) <= 1e-10 * abs(float(lam))


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_unequal_chunks_equal_one_chunk(loss):
    whole = tiny_objective(loss=loss, n=23)
    chunked = tiny_objective(loss=loss, n=23, physical_batch=[5, 11, 7])
    by_size = tiny_objective(loss=loss, n=23, physical_batch=6)  # 6,6,6,5
    x = whole.x0()
    v = torch.randn(whole.dim, dtype=F64)
    for other in (chunked, by_size):
        assert abs(float(whole.value(x) - other.value(x))) <= 1e-12 * abs(float(whole.value(x)))
        g1, g2 = whole.grad(x), other.grad(x)
        assert (g1 - g2).norm() <= 1e-12 * g1.norm()
        h1, h2 = whole.hvp(x, v), other.hvp(x, v)
        assert (h1 - h2).norm() <= 1e-12 * h1.norm()


def test_mse_convention_half_sum_over_outputs_mean_over_samples():
    obj = tiny_objective(n=10)
    x = obj.x0()
    out = obj.forward(x, obj.inputs)
    expected = 0.5 * ((out - obj.targets) ** 2).sum(dim=1).mean()
    assert torch.allclose(obj.value(x), expected, rtol=1e-14)
    assert torch.allclose(obj.value(x), reference_of(obj).f(x), rtol=1e-14)


def test_point_objective_reuses_graph_and_counts_products():
    obj = tiny_objective()
    x = obj.x0()
    point = obj.at(x)
    g = obj.grad(x)
    assert torch.allclose(point.grad, g, rtol=1e-13)
    v = torch.randn(obj.dim, dtype=F64)
    before = obj.hvp_count
    a = point.hvp(v)
    b = point.hvp(torch.stack([v, 2 * v], 1))
    assert obj.hvp_count - before == 3
    assert torch.allclose(b[:, 1], 2 * a, rtol=1e-12)


@pytest.mark.parametrize("method", ["retained", "fd"])
def test_a_released_point_is_not_kept_by_its_objective(method):
    """After ``with obj.at(x)`` the point (its x and gradient) is freed with the caller's
    last reference: the objective keeps no hold on it until its next ``at``."""
    import gc
    import weakref

    obj = tiny_objective(hvp_method=method)
    with obj.at(obj.x0()) as point:
        point.hvp(torch.randn(obj.dim, dtype=F64))
        grad = weakref.ref(point.grad)
        ref = weakref.ref(point)
    del point
    gc.collect()
    assert ref() is None and grad() is None


def test_retained_cache_invalidates_when_point_moves():
    obj = tiny_objective(hvp_method="retained")
    x = obj.x0()
    v = torch.randn(obj.dim, dtype=F64)
    h0 = obj.hvp(x, v)
    y = x + 0.3
    assert not torch.allclose(obj.hvp(y, v), h0)
    expected = R.dense_hessian(reference_of(obj).f, y) @ v
    assert torch.allclose(obj.hvp(y, v), expected, rtol=1e-10, atol=1e-12)


def test_d3_d4_match_dense_derivative_tensors():
    obj = tiny_objective(width=3, n=8)
    ref = reference_of(obj)
    x = obj.x0()
    u, v = torch.randn(obj.dim, dtype=F64), torch.randn(obj.dim, dtype=F64)
    # exact reverse-mode references (triple/quadruple backward), themselves checked
    # against finite differences of HVPs in tests/test_references.py
    assert torch.allclose(obj.d3(x, u, v), R.third_derivative(ref.f, x, u, v), atol=1e-12)
    expected = float(R.fourth_directional(ref.f, x, v))
    assert abs(float(obj.d4(x, v)) - expected) <= 1e-10 * max(1.0, abs(expected))
    # and against finite differences directly (unit v: the FD steps are tuned for it)
    w = v / v.norm()
    fd4 = float(R.directional_fd(ref.f, x, w, 4))
    assert abs(float(obj.d4(x, w)) - fd4) <= 1e-7 * max(1.0, abs(fd4))
    t_fd = R.fd_third_derivative(ref.f, x, u, v)
    assert R.relative_error(obj.d3(x, u, v), t_fd) <= 1e-8


def test_d3_d4_on_a_layernorm_model_match_finite_differences():
    # torch's fused layer_norm is wrong here in every autograd mode
    # (tests/test_references.py); eoskit evaluates it by its composite formula
    ref = R.mlp_gelu_layernorm("mse")
    obj = ModelObjective(ref.model, "mse", ref.inputs, ref.targets)
    x = obj.x0()
    gen = torch.Generator().manual_seed(3)
    u = torch.randn(obj.dim, dtype=F64, generator=gen)
    u = u / u.norm()
    assert R.relative_error(obj.d3(x, u, u), R.fd_third_derivative(ref.f, x, u, u)) <= 1e-6
    fd4 = float(R.directional_fd(ref.f, x, u, 4))
    assert abs(float(obj.d4(x, u)) - fd4) <= 1e-6 * abs(fd4)


def test_function_objective_polynomial_derivatives_exact():
    # L = x0^4/4 + x0 x1^2: T[u,v,.] and F[v,v,v,v] known in closed form
    obj = FunctionObjective(lambda x: x[0] ** 4 / 4 + x[0] * x[1] ** 2, dim=2)
    x = torch.tensor([0.7, -1.3], dtype=F64)
    v = torch.tensor([0.6, 0.8], dtype=F64)
    # F[v,v,v,v] = 6 v0^4
    assert abs(float(obj.d4(x, v)) - 6 * 0.6 ** 4) < 1e-14
    # T[v,v,.] = (6 x0 v0^2 + 2 v1^2, 4 v0 v1)
    t = obj.d3(x, v, v)
    assert torch.allclose(t, torch.tensor([6 * 0.7 * 0.36 + 2 * 0.64, 4 * 0.48],
                                          dtype=F64), atol=1e-14)


def test_chunk_bounds_validation():
    assert chunk_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_bounds(10, [3, 7]) == [(0, 3), (3, 10)]
    with pytest.raises(ValueError, match="sum to 10"):
        chunk_bounds(10, [3, 3])
    with pytest.raises(ValueError, match="hvp_method"):
        tiny_objective(hvp_method="magic")
