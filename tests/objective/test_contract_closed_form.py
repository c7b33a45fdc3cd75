"""The Objective / PointObjective contract against closed forms.

Written to kill the mutants tests/objective/test_objective.py lets survive in
eoskit.objective.base (benchmarks/results/mutation.md). The reference objective is a
sum of two terms, L = ½ xᵀAx + bᵀx + Σ cᵢ xᵢ⁴/12, whose gradient, Hessian
A + diag(c x²), third derivative T[u, v, ·] = 2 c x u v and fourth directional
derivative F[v, v, v, v] = Σ 2 cᵢ vᵢ⁴ are exact; each term returns an aux tensor.
"""

import pytest
import torch

from eoskit.objective import EXACT_METHODS, FunctionObjective, Objective
from eoskit.objective.base import PointObjective, _same_point, directional_derivative

F64 = torch.float64
D = 4
_gen = torch.Generator().manual_seed(7)
_M = torch.randn(D, D, dtype=F64, generator=_gen)
A = _M @ _M.T + torch.eye(D, dtype=F64)
B = torch.randn(D, dtype=F64, generator=_gen)
C = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=F64)
X = torch.tensor([0.3, -1.0, 2.0, 0.7], dtype=F64)


class TwoTerms(Objective):
    """Quadratic term (aux 1) plus quartic term (aux 10)."""

    dim, dtype, device = D, F64, torch.device("cpu")

    def __init__(self, hvp_method="retained", aux=True):
        super().__init__(hvp_method)
        self.with_aux = aux

    def terms(self):
        aux1 = torch.tensor(1.0, dtype=F64) if self.with_aux else None
        aux2 = torch.tensor(10.0, dtype=F64) if self.with_aux else None
        yield lambda x: (0.5 * x @ A @ x + B @ x, aux1)
        yield lambda x: ((C * x ** 4).sum() / 12, aux2)


def _value(x):
    return float(0.5 * x @ A @ x + B @ x + (C * x ** 4).sum() / 12)


def _grad(x):
    return A @ x + B + C * x ** 3 / 3


def _hessian(x):
    return A + torch.diag(C * x ** 2)


def _close(a, b, tol=1e-12):
    return torch.allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_value_grad_aux_sum_over_terms(method):
    obj = TwoTerms(method)
    value, g, aux = obj.value_grad_aux(X)
    assert float(value) == pytest.approx(_value(X), rel=1e-14)
    assert _close(g, _grad(X)) and float(aux) == 11.0
    assert float(obj.value(X)) == pytest.approx(_value(X), rel=1e-14)
    assert not obj.value(X).requires_grad  # evaluated without a graph
    v2, g2 = obj.value_and_grad(X)
    assert float(v2) == pytest.approx(_value(X), rel=1e-14) and _close(g2, _grad(X))
    assert _close(obj.grad(X), _grad(X))
    assert not g.requires_grad and not value.requires_grad
    assert TwoTerms(method, aux=False).value_grad_aux(X)[2] is None


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_hvp_single_and_block_match_the_closed_form_hessian(method):
    obj = TwoTerms(method)
    H = _hessian(X)
    v = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=F64)
    V = torch.stack([v, torch.ones(D, dtype=F64), -3 * v], 1)  # (d, 3)
    assert _close(obj.hvp(X, v), H @ v)
    assert _close(obj.hvp(X, V), H @ V)
    with obj.at(X) as point:
        assert _close(point.hvp(v), H @ v)
        assert _close(point.hvp(V), H @ V)
        assert float(point.value) == pytest.approx(_value(X), rel=1e-14)
        assert _close(point.grad, _grad(X)) and float(point.aux) == 11.0
    assert _close(obj.hessian(X), H)
    assert _close(obj.hessian(X), obj.hessian(X).T, 0.0)


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_counts_one_gradient_per_pass_and_one_product_per_vector(method):
    obj = TwoTerms(method)
    assert (obj.hvp_count, obj.grad_count) == (0, 0)
    obj.value_grad_aux(X)
    assert obj.grad_count == 1
    point = obj.at(X)
    _ = point.grad
    assert obj.grad_count == 2  # the retained graph, or the lazy gradient: one pass
    _ = point.value, point.aux
    assert obj.grad_count == 2  # cached
    point.hvp(torch.ones(D, dtype=F64))
    assert obj.hvp_count == 1
    point.hvp(torch.ones(D, 3, dtype=F64))
    assert obj.hvp_count == 4
    obj.product(X, torch.ones(D, 2, dtype=F64))
    assert obj.hvp_count == 6


def test_consecutive_hvps_at_one_point_share_its_graph():
    obj = TwoTerms("retained")
    v = torch.ones(D, dtype=F64)
    obj.hvp(X, v)
    first = obj._point
    obj.hvp(X.clone(), 2 * v)
    assert obj._point is first and obj.grad_count == 1
    moved = X + 1e-3
    assert _close(obj.hvp(moved, v), _hessian(moved) @ v)
    assert obj._point is not first and obj.grad_count == 2
    obj._point.release()
    assert _close(obj.hvp(moved, v), _hessian(moved) @ v)  # a released point is replaced
    assert obj.grad_count == 3


def test_released_retained_point_refuses_products():
    obj = TwoTerms("retained")
    with obj.at(X) as point:
        assert isinstance(point, PointObjective) and point.alive and point.retained
    assert not point.alive
    with pytest.raises(RuntimeError, match="released"):
        point.hvp(torch.ones(D, dtype=F64))


@pytest.mark.parametrize("method", ["rev-rev", "fwd-rev"])
def test_non_retained_point_stays_alive_and_keeps_its_own_copy_of_x(method):
    obj = TwoTerms(method)
    x = X.clone()
    point = obj.at(x)
    assert not point.retained and point.alive
    x += 1.0  # the caller's tensor moves; the point must not
    v = torch.ones(D, dtype=F64)
    assert _close(point.hvp(v), _hessian(X) @ v)
    point.release()
    assert point.alive and _close(point.hvp(v), _hessian(X) @ v)


def test_retained_point_keeps_its_own_copy_of_x():
    obj = TwoTerms("retained")
    x = X.clone()
    point = obj.at(x)
    x += 1.0
    assert _close(point.hvp(torch.ones(D, dtype=F64)), _hessian(X) @ torch.ones(D, dtype=F64))
    assert torch.equal(point.x.detach(), X)
    assert not x.requires_grad


def test_unknown_hvp_method_is_refused():
    with pytest.raises(ValueError, match="hvp_method"):
        TwoTerms("forward")


def test_same_point_compares_shape_dtype_and_values():
    assert _same_point(X, X.clone())
    assert not _same_point(X, X + 1e-15 * (1 + X.abs()))
    assert not _same_point(X, X.float())
    assert not _same_point(X, X[:3])
    assert not _same_point(X, X.reshape(2, 2))


def test_third_and_fourth_derivatives_closed_form():
    obj = TwoTerms("retained")
    u = torch.tensor([1.0, 0.5, -1.0, 2.0], dtype=F64)
    v = torch.tensor([0.5, -1.0, 1.5, 1.0], dtype=F64)
    assert _close(obj.d3(X, u, v), 2 * C * X * u * v)  # the quadratic term adds nothing
    assert float(obj.d4(X, v)) == pytest.approx(float((2 * C * v ** 4).sum()), rel=1e-13)


def test_directional_derivatives_of_a_polynomial():
    f = lambda z: (z ** 5).sum()  # noqa: E731
    x = torch.tensor([1.0, 2.0], dtype=F64)
    v = torch.tensor([1.0, -1.0], dtype=F64)
    # d^k/dε^k Σ (x + εv)^5 at 0 = 5!/(5−k)! Σ x^(5−k) v^k
    for order, coef in [(1, 5), (2, 20), (3, 60), (4, 120)]:
        expected = coef * float((x ** (5 - order) * v ** order).sum())
        got = float(directional_derivative(f, x, v, order=order))
        assert got == pytest.approx(expected, rel=1e-13)


def test_function_objective_attributes_and_derivatives():
    obj = FunctionObjective(lambda z: (C * z ** 4).sum() / 12, dim=D, hvp_method="rev-rev")
    assert (obj.dim, obj.dtype, obj.device, obj.hvp_method) == (
        D, F64, torch.device("cpu"), "rev-rev")
    assert _close(obj.hessian(X), torch.diag(C * X ** 2))
    f32 = FunctionObjective(lambda z: z.sum(), dim=2.0, dtype=torch.float32)
    assert f32.dim == 2 and type(f32.dim) is int and f32.dtype == torch.float32
    assert f32.hvp_method == "retained"


# ---- survivors of the 2026-12-02 run (benchmarks/results/mutation.md, eoskit.objective.base)
class Bare(Objective):
    dim, dtype, device = D, F64, torch.device("cpu")

    def __init__(self):
        super().__init__()  # the base class's own default

    def terms(self):
        yield lambda x: ((x ** 2).sum(), None)


def test_the_default_hvp_method_is_retained():
    assert Bare().hvp_method == "retained" and FunctionObjective(sum, 2).hvp_method == "retained"


def test_the_released_message_names_the_point_objective():
    point = TwoTerms("retained").at(X)
    point.release()
    with pytest.raises(RuntimeError, match=r"^this PointObjective was released; take a new one"):
        point.hvp(torch.ones(D, dtype=F64))


class LinearThenQuartic(TwoTerms):
    """A term linear in x (no second derivative: double backward skips it) before a curved one."""

    def terms(self):
        yield lambda x: (B @ x, None)
        yield lambda x: ((C * x ** 4).sum() / 12, None)


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_a_linear_term_before_a_curved_one_is_skipped_not_the_end(method):
    obj, v = LinearThenQuartic(method), torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64)
    expected = torch.diag(C * X ** 2) @ v
    assert _close(obj.product(X, v), expected)
    with obj.at(X) as point:
        assert _close(point.hvp(v), expected)


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_a_linear_objective_at_a_point_has_zero_products(method):
    obj = FunctionObjective(lambda x: B @ x, D, hvp_method=method)
    with obj.at(X) as point:
        assert torch.equal(point.hvp(torch.ones(D, dtype=F64)), torch.zeros(D, dtype=F64))
        assert torch.equal(point.hvp(torch.ones(D, 2, dtype=F64)), torch.zeros(D, 2, dtype=F64))


def test_batched_products_at_a_retained_point_can_be_repeated():
    block = torch.eye(D, dtype=F64)[:, :3]
    with TwoTerms("retained").at(X) as point:
        first = point.hvp(block)
        assert torch.equal(point.hvp(block), first)  # the graph survives a batched product
        assert _close(point.hvp(block[:, 0]), _hessian(X) @ block[:, 0])


def test_only_fwd_rev_uses_forward_mode():
    # F.huber_loss has no forward-mode derivative of its backward in torch 2.13
    x = torch.tensor([0.3, -1.5, 0.8, 2.0], dtype=F64)

    def huber(z):
        return torch.nn.functional.huber_loss(z, torch.zeros_like(z), reduction="sum")

    v = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64)
    for method in ("retained", "rev-rev"):  # reverse over reverse: no forward rule needed
        obj = FunctionObjective(huber, D, hvp_method=method)
        assert _close(obj.product(x, v), (x.abs() < 1).to(F64) * v)
    with pytest.raises(NotImplementedError, match="forward AD"):
        FunctionObjective(huber, D, hvp_method="fwd-rev").product(x, v)
