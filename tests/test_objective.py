"""The Objective against dense ground truth from torch.func on tiny float64 models."""

import pytest
import torch

from eoskit.objective import HVP_METHODS, FunctionObjective, chunk_bounds
from tests.conftest import tiny_objective

CASES = [("fc-tanh", "mse"), ("fc-tanh", "ce"), ("cnn-tanh", "mse"), ("fc-softplus", "ce")]


@pytest.mark.parametrize("model,loss", CASES)
@pytest.mark.parametrize("method", HVP_METHODS)
def test_hvp_matches_dense_hessian(model, loss, method):
    obj = tiny_objective(model, loss, width=3 if model.startswith("cnn") else 6,
                         physical_batch=[7, 3, 10], hvp_method=method)
    x = obj.x0()
    H = obj.hessian(x)
    v = torch.randn(obj.dim, dtype=torch.float64)
    V = torch.randn(obj.dim, 3, dtype=torch.float64)
    scale = H.abs().max()
    assert torch.allclose(obj.hvp(x, v), H @ v, atol=1e-12 * scale * v.norm(), rtol=0)
    assert torch.allclose(obj.hvp(x, V), H @ V, atol=1e-12 * scale * V.norm(), rtol=0)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_unequal_chunks_equal_one_chunk(loss):
    whole = tiny_objective(loss=loss, n=23)
    chunked = tiny_objective(loss=loss, n=23, physical_batch=[5, 11, 7])
    by_size = tiny_objective(loss=loss, n=23, physical_batch=6)  # 6,6,6,5
    x = whole.x0()
    v = torch.randn(whole.dim, dtype=torch.float64)
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


def test_point_objective_reuses_graph_and_counts_products():
    obj = tiny_objective()
    x = obj.x0()
    point = obj.at(x)
    g = obj.grad(x)
    assert torch.allclose(point.grad, g, rtol=1e-13)
    v = torch.randn(obj.dim, dtype=torch.float64)
    before = obj.hvp_count
    a = point.hvp(v)
    b = point.hvp(torch.stack([v, 2 * v], 1))
    assert obj.hvp_count - before == 3
    assert torch.allclose(b[:, 1], 2 * a, rtol=1e-12)


def test_retained_cache_invalidates_when_point_moves():
    obj = tiny_objective(hvp_method="retained")
    x = obj.x0()
    v = torch.randn(obj.dim, dtype=torch.float64)
    h0 = obj.hvp(x, v)
    y = x + 0.3
    assert not torch.allclose(obj.hvp(y, v), h0)
    assert torch.allclose(obj.hvp(y, v), obj.hessian(y) @ v, rtol=1e-10, atol=1e-12)


def test_d3_d4_match_dense_derivative_tensors():
    obj = tiny_objective(width=3, n=8)
    x = obj.x0()
    u, v = torch.randn(obj.dim, dtype=torch.float64), torch.randn(obj.dim, dtype=torch.float64)

    def f(z):
        return sum(fn(z) for fn in obj.term_fns())

    T = torch.func.jacfwd(torch.func.hessian(f))(x)
    assert torch.allclose(obj.d3(x, u, v), torch.einsum("ijk,i,j->k", T, u, v), atol=1e-12)
    F = torch.func.jacfwd(torch.func.jacfwd(torch.func.hessian(f)))(x)
    expected = torch.einsum("ijkl,i,j,k,l->", F, v, v, v, v)
    assert abs(float(obj.d4(x, v) - expected)) <= 1e-10 * max(1.0, abs(float(expected)))


def test_function_objective_polynomial_derivatives_exact():
    # L = x0^4/4 + x0 x1^2: T[u,v,.] and F[v,v,v,v] known in closed form
    obj = FunctionObjective(lambda x: x[0] ** 4 / 4 + x[0] * x[1] ** 2, dim=2)
    x = torch.tensor([0.7, -1.3], dtype=torch.float64)
    v = torch.tensor([0.6, 0.8], dtype=torch.float64)
    # F[v,v,v,v] = 6 v0^4
    assert abs(float(obj.d4(x, v)) - 6 * 0.6 ** 4) < 1e-14
    # T[v,v,.] = (6 x0 v0^2 + 2 v1^2, 4 v0 v1)
    t = obj.d3(x, v, v)
    assert torch.allclose(t, torch.tensor([6 * 0.7 * 0.36 + 2 * 0.64, 4 * 0.48],
                                          dtype=torch.float64), atol=1e-14)


def test_chunk_bounds_validation():
    assert chunk_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_bounds(10, [3, 7]) == [(0, 3), (3, 10)]
    with pytest.raises(ValueError, match="sum to 10"):
        chunk_bounds(10, [3, 3])
    with pytest.raises(ValueError, match="hvp_method"):
        tiny_objective(hvp_method="magic")
