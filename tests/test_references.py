"""tests/references.py checked once against central finite differences, in float64.

Measured (torch 2.13, CPU; worst over mse and ce) and asserted with a margin:

* Hessian columns by double backward vs FD of gradients (h = 1e-5), worst column
  ‖H e_i − FD_i‖/‖H e_i‖: mlp-tanh 7.6e-10, mlp-gelu-layernorm 8.2e-10, tiny-cnn 3.6e-10
  (whole matrix, Frobenius: 9.2e-11, 2.8e-10, 1.2e-10). Asserted ≤ 1e-8.
* gradients vs FD of the loss (h = 1e-5): ≤ 2.3e-10. Asserted ≤ 1e-8.
* symmetry max|H − Hᵀ|/max|H| of the double-backward Hessian: ≤ 3.4e-16. Asserted ≤ 1e-12.
* torch.func.hessian on the LayerNorm model: asymmetry 1.4e-1 (mse) and 1.6e-1 (ce),
  top eigenvalue off by 1.8e-2 (mse, λ₁ = 12.12) and 2.6e-3 (ce, λ₁ = 4.62).
* third/fourth derivatives by reverse mode vs Richardson FD of HVPs on the tanh MLP and
  the CNN: T[u, v, ·] ≤ 7.5e-13, F[v,v,v] ≤ 4.5e-13, F[v,v,v,v] ≤ 9.6e-10.
* fd_hessian (Richardson, h = 1e-3) vs the double-backward Hessian, worst column:
  ≤ 1.7e-11 (Frobenius ≤ 4.5e-12), LayerNorm included. Asserted ≤ 1e-9.
* dense_jacobian of the module's outputs vs Richardson FD of the outputs (h = 1e-3):
  ≤ 7.8e-13. Asserted ≤ 1e-9. flat_parameters round-trips exactly.
* on nn.LayerNorm they are wrong in every autograd mode (relative error ~1 for T, F4 off
  by a factor ~10); the same network in plain ops (PlainLayerNorm) matches FD to 2e-8.

If a torch upgrade makes ``test_torch_func_hessian_is_wrong_on_layernorm`` or
``test_fused_layernorm_higher_derivatives_are_wrong`` fail, torch has fixed the
bug: delete those tests and the warning in references.py.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from tests import references as R

F64 = torch.float64
CASES = [(name, loss) for name in R.PROBLEMS for loss in ("mse", "ce")]
SMOOTH = [c for c in CASES if c[0] != "mlp-gelu-layernorm"]
LAYERNORM = [c for c in CASES if c[0] == "mlp-gelu-layernorm"]


def _problem(name: str, loss: str) -> R.Problem:
    return R.PROBLEMS[name](loss)


def _unit(d: int, seed: int) -> torch.Tensor:
    v = torch.randn(d, dtype=F64, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def _asymmetry(H: torch.Tensor) -> float:
    return float((H - H.T).abs().max() / H.abs().max())


@pytest.mark.parametrize("name,loss", CASES)
def test_hessian_columns_match_fd_of_gradients(name, loss):
    p = _problem(name, loss)
    H = R.dense_hessian(p.f, p.x0)
    eye = torch.eye(p.dim, dtype=F64)
    FD = torch.stack([R.fd_hvp(p.f, p.x0, e, h=1e-5) for e in eye], dim=1)
    worst_column = float(((H - FD).norm(dim=0) / H.norm(dim=0)).max())
    assert worst_column <= 1e-8
    assert R.relative_error(H, FD) <= 1e-8


@pytest.mark.parametrize("name,loss", CASES)
def test_gradient_matches_fd_of_the_loss(name, loss):
    p = _problem(name, loss)
    assert R.relative_error(R.fd_grad(p.f, p.x0, h=1e-5), R.dense_grad(p.f, p.x0)) <= 1e-8


@pytest.mark.parametrize("name,loss", CASES)
def test_double_backward_hessian_is_symmetric(name, loss):
    p = _problem(name, loss)
    assert _asymmetry(R.dense_hessian(p.f, p.x0)) <= 1e-12


@pytest.mark.parametrize("name,loss", LAYERNORM)
def test_torch_func_hessian_is_wrong_on_layernorm(name, loss):
    p = _problem(name, loss)
    H = R.dense_hessian(p.f, p.x0)
    H_func = torch.func.hessian(p.f)(p.x0)
    assert _asymmetry(H) <= 1e-12
    assert _asymmetry(H_func) >= 1e-2
    assert R.relative_error(H_func, H) >= 1e-2
    lam = float(R.eigh_top(H)[0][0])
    lam_func = float(R.eigh_top(H_func)[0][0])
    assert abs(lam_func - lam) >= 5e-4


@pytest.mark.parametrize("name,loss", SMOOTH)
def test_torch_func_hessian_agrees_without_layernorm(name, loss):
    # the control: the LayerNorm failure above is the layer's, not the harness's
    p = _problem(name, loss)
    H = R.dense_hessian(p.f, p.x0)
    assert R.relative_error(torch.func.hessian(p.f)(p.x0), H) <= 1e-12


@pytest.mark.parametrize("name,loss", SMOOTH)
def test_third_and_fourth_derivatives_match_fd_of_hvps(name, loss):
    p = _problem(name, loss)
    u, v = _unit(p.dim, 1), _unit(p.dim, 2)
    t = R.third_derivative(p.f, p.x0, u, v)
    assert R.relative_error(t, R.fd_third_derivative(p.f, p.x0, u, v)) <= 1e-10
    d3 = R.third_derivative(p.f, p.x0, v, v) @ v
    assert abs(float(R.directional_fd(p.f, p.x0, v, 3) - d3)) <= 1e-10 * abs(float(d3))
    d4 = R.fourth_directional(p.f, p.x0, v)
    assert abs(float(R.directional_fd(p.f, p.x0, v, 4) - d4)) <= 1e-8 * abs(float(d4))


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_plain_layernorm_is_the_same_function_with_right_higher_derivatives(loss):
    fused, plain = R.mlp_gelu_layernorm(loss), R.mlp_gelu_layernorm(loss, plain=True)
    x = fused.x0
    assert torch.equal(x, plain.x0)
    assert abs(float(fused.f(x) - plain.f(x))) <= 1e-14 * abs(float(fused.f(x)))
    assert R.relative_error(R.dense_grad(plain.f, x), R.dense_grad(fused.f, x)) <= 1e-13
    assert R.relative_error(R.dense_hessian(plain.f, x), R.dense_hessian(fused.f, x)) <= 1e-13
    u, v = _unit(fused.dim, 1), _unit(fused.dim, 2)
    # finite differences of the (correct) fused HVPs against plain-op autograd
    t_fd = R.fd_third_derivative(fused.f, x, u, v)
    assert R.relative_error(R.third_derivative(plain.f, x, u, v), t_fd) <= 1e-6
    d4 = float(R.fourth_directional(plain.f, x, v))
    assert abs(float(R.directional_fd(fused.f, x, v, 4)) - d4) <= 1e-6 * abs(d4)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_fused_layernorm_higher_derivatives_are_wrong(loss):
    p = R.mlp_gelu_layernorm(loss)
    x = p.x0
    u, v = _unit(p.dim, 1), _unit(p.dim, 2)
    t_fd = R.fd_third_derivative(p.f, x, u, v)
    assert R.relative_error(R.third_derivative(p.f, x, u, v), t_fd) >= 1e-1  # triple backward
    d4_fd = float(R.directional_fd(p.f, x, v, 4))
    assert abs(float(R.fourth_directional(p.f, x, v)) - d4_fd) >= 1e-1 * abs(d4_fd)
    nested = p.f
    for _ in range(4):  # d⁴/dε⁴ f(x + εv) by nested forward mode
        nested = (lambda g: (lambda y: torch.func.jvp(g, (y,), (v,))[1]))(nested)
    assert abs(float(nested(x)) - d4_fd) >= 1e-1 * abs(d4_fd)


def test_eigh_top_is_algebraic_and_descending():
    H = torch.diag(torch.tensor([-5.0, 1.0, 3.0, 2.0], dtype=F64))
    vals, vecs = R.eigh_top(H, 2)
    assert vals.tolist() == [3.0, 2.0]
    assert torch.allclose(vecs.abs(), torch.eye(4, dtype=F64)[:, [2, 3]])
    with pytest.raises(ValueError, match="k must be"):
        R.eigh_top(H, 5)


def test_directional_fd_on_a_polynomial():
    # f = (a·x)⁴: d³/dε³ f(x + εv) = 24 (a·x)(a·v)³, d⁴/dε⁴ = 24 (a·v)⁴
    a = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    x = torch.tensor([0.3, 0.1, -0.2], dtype=F64)
    v = torch.tensor([1.0, 2.0, 0.5], dtype=F64)

    def f(z):
        return (a @ z) ** 4

    av, ax = float(a @ v), float(a @ x)
    assert abs(float(R.directional_fd(f, x, v, 3)) - 24 * ax * av**3) <= 1e-9
    assert abs(float(R.directional_fd(f, x, v, 4)) - 24 * av**4) <= 1e-7
    with pytest.raises(ValueError, match="order"):
        R.directional_fd(f, x, v, 2)


@pytest.mark.parametrize("name,loss", CASES)
def test_fd_hessian_matches_double_backward(name, loss):
    p = _problem(name, loss)
    H, FD = R.dense_hessian(p.f, p.x0), R.fd_hessian(p.f, p.x0)
    assert float(((FD - H).norm(dim=0) / H.norm(dim=0)).max()) <= 1e-9


@pytest.mark.parametrize("name", list(R.PROBLEMS))
def test_flat_parameters_and_dense_jacobian_of_the_outputs(name):
    p = _problem(name, "mse")
    x0, params_of = R.flat_parameters(p.model)
    assert torch.equal(x0, p.x0)
    assert torch.equal(torch.cat([t.reshape(-1) for t in params_of(x0).values()]), x0)

    def outputs(x):
        return functional_call(p.model, params_of(x), (p.inputs,))

    assert torch.equal(outputs(x0), p.model(p.inputs))
    J = R.dense_jacobian(outputs, x0)

    def central(step, e):
        return ((outputs(x0 + step * e) - outputs(x0 - step * e)) / (2 * step)).reshape(-1)

    eye = torch.eye(p.dim, dtype=F64)
    FD = torch.stack([(4 * central(5e-4, e) - central(1e-3, e)) / 3 for e in eye], dim=1)
    assert J.shape == (outputs(x0).numel(), p.dim)
    assert R.relative_error(J, FD) <= 1e-9
