"""The product engines (eoskit.objective.products) against dense float64 Hessians.

References (tests/references.py) are columns of plain double backward through the
same module and data (math-backend attention: the fused CPU kernel has no double
backward), never eoskit's own products. Tolerances, relative to ‖H V‖:

* exact engines (retained, rev-rev, fwd-rev): 1e-10, rounding only;
* fd: 1e-7. Its error is O(h²) with h = ε^(1/3)·max(1, ‖x‖) ≈ 6e-6·‖x‖ in float64,
  i.e. h² ≈ 4e-11·‖x‖² times the third derivative over the curvature (measured 2e-10–9e-10
  on these models); the closed-form test below pins the step rule itself.
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from eoskit.objective import (
    HVP_METHODS,
    FunctionObjective,
    ModelObjective,
    fd_step,
    layers,
    products,
)
from tests import references as R

F64 = torch.float64
TOL = {"retained": 1e-10, "rev-rev": 1e-10, "fwd-rev": 1e-10, "fd": 1e-7}


class TinyTokens(nn.Module):
    """Embedded tokens, one Transformer encoder layer (attention, LayerNorm), a head."""

    def __init__(self, vocab=5, width=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(width, 2, 6, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(width, vocab)

    def forward(self, ids):
        return self.head(self.enc(self.embed(ids.long())).mean(dim=1))


def _transformer_problem() -> R.Problem:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 5, (6, 3), generator=gen)
    problem = R.module_loss(TinyTokens(), ids, torch.randint(0, 5, (6,), generator=gen), "ce")
    plain = problem.f

    def f(x):  # the reference differentiates twice: math-backend attention
        with sdpa_kernel(SDPBackend.MATH):
            return plain(x)

    problem.f = f
    return problem


PROBLEMS = {"mlp": lambda: R.mlp_gelu_layernorm("ce"), "transformer": _transformer_problem}


@functools.cache
def _reference(name):
    problem = PROBLEMS[name]()
    return problem, R.dense_hessian(problem.f, problem.x0)


def _objective(problem, method):
    return ModelObjective(problem.model, problem.loss_name, problem.inputs, problem.targets,
                          dtype=F64, physical_batch=[4, len(problem.inputs) - 4],
                          hvp_method=method)


@pytest.mark.parametrize("name", list(PROBLEMS))
@pytest.mark.parametrize("method", list(TOL))
def test_each_engine_matches_the_dense_hessian_single_block_and_at_a_point(name, method):
    problem, H = _reference(name)
    obj = _objective(problem, method)
    x = obj.x0()
    assert torch.equal(x, problem.x0)
    V = torch.randn(obj.dim, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    want = H @ V
    assert R.relative_error(obj.hvp(x, V[:, 0]), want[:, 0]) <= TOL[method]
    assert R.relative_error(obj.hvp(x, V), want) <= TOL[method]  # a block
    with obj.at(x) as point:  # the point-bound path
        assert R.relative_error(point.hvp(V), want) <= TOL[method]
        assert R.relative_error(point.hvp(V[:, 1]), want[:, 1]) <= TOL[method]
        assert R.relative_error(point.grad, R.dense_grad(problem.f, x)) <= 1e-12
    assert obj.hvp_count == 8


def test_fd_error_is_the_documented_h_squared_term():
    # f = Σ cᵢ (xᵢ − aᵢ)⁴/12: ∇f = c (x − a)³/3, so the central difference along û with
    # step h is exactly c (x − a)² û + c h² û³/3 (times ‖v‖): the error pins h = fd_step(x).
    # x − a = O(1e-3) makes H tiny, so rounding the displaced point (ε|x|·H/h) is ~1e4
    # times smaller than the truncation term
    c = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=F64)
    a = torch.tensor([30.0, -10.0, 20.0, 7.0], dtype=F64)
    x = a + torch.tensor([0.5, -1.0, 1.5, 0.25], dtype=F64) * 1e-3
    v = torch.tensor([1.0, -2.0, 0.5, 4.0], dtype=F64)
    obj = FunctionObjective(lambda z: (c * (z - a) ** 4).sum() / 12, 4, hvp_method="fd")
    h, u = fd_step(x), v / v.norm()
    eps = torch.finfo(F64).eps
    assert h == pytest.approx((eps * float(x.norm()) / 2) ** (1 / 3), rel=1e-12)  # rms = ‖x‖/2
    error = obj.hvp(x, v) - c * (x - a) ** 2 * v
    predicted = c * h ** 2 * u ** 3 / 3 * v.norm()
    assert R.relative_error(error, predicted) <= 1e-2  # the rest is rounding
    eps32 = torch.finfo(torch.float32).eps
    assert fd_step(torch.zeros(3)) == pytest.approx(eps32 ** 0.5)  # (ε·√ε)^(1/3)


def test_fd_top_rayleigh_quotient_is_accurate_in_float32_when_the_norm_is_large():
    # f = λ z₀²/2 + β z₀⁴/24 + ½ Σ_{i>0} zᵢ²/10 at z₀ = 0, far from the origin in the other
    # 10⁵ coordinates (‖x‖ ≈ 9.5, rms 0.03). Along e₀ the exact curvature is λ and the central
    # difference adds β h²/6: the step must follow the coordinates' size, not ‖x‖ (with
    # h = ε^(1/3)‖x‖ the quotient was 4% off here)
    d, lam, beta = 100_000, 2.0, 200.0
    gen = torch.Generator().manual_seed(0)
    x = 0.03 * torch.randn(d, generator=gen)
    x[0] = 0.0

    def f(z):
        return lam * z[0] ** 2 / 2 + beta * z[0] ** 4 / 24 + (z[1:] ** 2).sum() / 20

    obj = FunctionObjective(f, d, hvp_method="fd", dtype=torch.float32)
    e0 = torch.zeros(d)
    e0[0] = 1.0
    assert float(e0 @ obj.hvp(x, e0)) == pytest.approx(lam, rel=1e-4)


def test_fd_of_a_zero_vector_is_zero_and_costs_no_gradient():
    obj = FunctionObjective(lambda z: (z ** 4).sum(), 3, hvp_method="fd")
    x = torch.ones(3, dtype=F64)
    assert torch.equal(obj.hvp(x, torch.zeros(3, dtype=F64)), torch.zeros(3, dtype=F64))


def test_the_registry_is_the_one_method_list():
    assert HVP_METHODS == ("retained", "rev-rev", "fwd-rev", "fd", "fwd-rev+compile",
                           "fd+compile")
    assert all(products.engine_for(m).name == m for m in HVP_METHODS)
    with pytest.raises(ValueError, match="hvp_method must be one of"):
        FunctionObjective(sum, 2, hvp_method="rev-rev+compile")  # no compiled double backward


def _counting_composites(monkeypatch):
    calls = []
    for fused, composite in list(layers._COMPOSITE.items()):
        def counted(*a, composite=composite, **k):
            calls.append(composite.__name__)
            return composite(*a, **k)

        monkeypatch.setitem(layers._COMPOSITE, fused, counted)
    return calls


def test_norms_are_routed_only_for_forward_mode_and_higher_orders(monkeypatch):
    problem, _ = _reference("mlp")  # a LayerNorm model
    calls = _counting_composites(monkeypatch)
    v = torch.ones(problem.dim, dtype=F64)
    for method in ("retained", "rev-rev", "fd"):
        obj = _objective(problem, method)
        x = obj.x0()
        obj.value(x), obj.grad(x), obj.hvp(x, v)
        with obj.at(x) as point:
            point.hvp(v)
    assert calls == []  # the model ran on its own fused kernels
    obj = _objective(problem, "fwd-rev")
    obj.hvp(obj.x0(), v)
    assert calls and set(calls) == {"layer_norm"}
    for derivative in (lambda o, x: o.d3(x, v, v), lambda o, x: o.d4(x, v)):
        calls.clear()
        derivative(obj, obj.x0())
        assert calls, "d3 and d4 need the composite norms"


def test_compiled_fd_matches_eager_fd():
    problem, H = _reference("mlp")
    eager, compiled = (_objective(problem, m) for m in ("fd", "fd+compile"))
    x = eager.x0()
    v = torch.randn(eager.dim, dtype=F64, generator=torch.Generator().manual_seed(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", products.CompileFallbackWarning)
        got = compiled.hvp(x, v)
    assert R.relative_error(got, H @ v) <= TOL["fd"]
    assert R.relative_error(got, eager.hvp(x, v)) <= 1e-8


def test_a_failing_compile_warns_once_and_falls_back_to_eager(monkeypatch):
    def broken(fn):
        raise RuntimeError("no C++ compiler here\nsecond line")

    monkeypatch.setattr(products, "_compiled", broken)
    monkeypatch.setattr(products, "_COMPILE_FAILED", set())
    problem, H = _reference("mlp")
    x, v = problem.x0, torch.ones(problem.dim, dtype=F64)
    with pytest.warns(products.CompileFallbackWarning, match=r"fd product failed \("
                      r"RuntimeError: no C\+\+ compiler here\); using it eagerly$") as caught:
        got = _objective(problem, "fd+compile").hvp(x, v)
        again = _objective(problem, "fd+compile").hvp(x, 2 * v)
    assert len(caught) == 1
    assert R.relative_error(got, H @ v) <= TOL["fd"]
    assert R.relative_error(again, 2 * H @ v) <= TOL["fd"]


def test_setting_hvp_method_switches_the_engine():
    obj = FunctionObjective(lambda z: (z ** 4).sum() / 12, 2, hvp_method="retained")
    x, v = torch.tensor([1.0, 2.0], dtype=F64), torch.ones(2, dtype=F64)
    obj.hvp(x, v)
    obj.hvp_method = "fd"
    assert obj.engine is products.ENGINES["fd"] and obj._point is None
    assert 0 < float((obj.hvp(x, v) - x ** 2).abs().max()) < 1e-9  # differences, not exact
    with pytest.raises(ValueError, match="hvp_method"):
        obj.hvp_method = "magic"


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def test_fd_displacing_the_point_in_place_gives_the_copys_product_and_gives_it_back():
    # float32, where rounding the displaced point shows: in the point's own copy or in a
    # fresh one, each displaced point is x + fl(±h/‖v‖·v) rounded once, so the products
    # agree to the bit; the point comes back bit for bit
    gen = torch.Generator().manual_seed(0)
    d = 1000
    a = torch.randn(d, generator=gen)
    obj = FunctionObjective(lambda z: ((z - a) ** 4).sum() / 12 + (z[:-1] * z[1:]).sum(), d,
                            hvp_method="fd", dtype=torch.float32)
    x = torch.randn(d, generator=gen)
    x[:4] = torch.tensor([-0.0, 1.0, 0.5, 2.0 ** -130])  # signed zero, powers of two, subnormal
    exact = x.clone()
    v = torch.randn(d, generator=gen)
    with obj.at(x, copy=False, live=[x]) as point:
        got = point.hvp(v)
        assert torch.equal(_bits(point.x), _bits(exact))
    # the reference, by hand: plain autograd at x + fl(h/‖v‖·v) and at x + fl(−h/‖v‖·v)
    h, norm = fd_step(exact), float(v.norm())

    def grad_at(z):
        z = z.detach().requires_grad_(True)
        return torch.autograd.grad(obj.f(z), z)[0]

    plus = grad_at(exact + v * (h / norm))
    minus = grad_at(exact + v * (-h / norm))
    want = (plus - minus).mul_(norm / (2 * h))
    assert torch.equal(got, want)
    assert torch.equal(obj.product(exact.clone(), v), want)  # a displaced copy
    assert obj.hvp_count == 2
    # a failing gradient still gives the point back
    broken = FunctionObjective(lambda z: z.sum() if bool(torch.equal(z, exact)) else
                               (_ for _ in ()).throw(RuntimeError("kernel failed")), d,
                               hvp_method="fd", dtype=torch.float32)
    with pytest.raises(RuntimeError, match="kernel failed"):
        broken.product(None, v, live=[x])
    assert torch.equal(_bits(x), _bits(exact))
    # an engine that does not displace the point ignores live, and needs x
    exact64 = FunctionObjective(obj.f, d, hvp_method="rev-rev", dtype=torch.float32)
    assert torch.equal(exact64.product(x, v, live=[torch.zeros(d)]), exact64.product(x, v))
    with pytest.raises(ValueError, match="needs the flat point x"):
        exact64.product(None, v, live=[x])


class _TiedAndUnused(nn.Module):
    """One layer applied twice (its gradient sums two paths) and a parameter the loss never
    reads (its gradient is zero)."""

    def __init__(self):
        super().__init__()
        self.inner, self.head = nn.Linear(4, 4), nn.Linear(4, 2)
        self.unused = nn.Parameter(torch.ones(3))

    def forward(self, x):
        return self.head(torch.tanh(self.inner(torch.tanh(self.inner(x)))))


def test_fd_of_a_model_sums_both_gradients_a_parameter_at_a_time_as_plain_autograd():
    # float32: the sum into one buffer must give the bits of plain autograd's gradients at
    # x ± h·v̂ (a flat leaf, so autograd assembles each gradient), subtracted
    torch.manual_seed(0)
    model = _TiedAndUnused()
    X, Y = torch.randn(16, 4), torch.randn(16, 2)
    obj = ModelObjective(model, nn.functional.mse_loss, X, Y, hvp_method="fd",
                         dtype=torch.float32)
    x = obj.x0()
    exact, v = x.clone(), torch.randn(x.numel())
    names = [n for n, _ in model.named_parameters()]

    def grad_at(z):
        z = z.detach().requires_grad_(True)
        params = dict(zip(names, obj.layout.parts(z), strict=True))
        loss = nn.functional.mse_loss(torch.func.functional_call(model, params, (X,)), Y)
        return torch.autograd.grad(loss, z)[0]

    h, norm = fd_step(exact), float(v.norm())
    plus = grad_at(exact + v * (h / norm))
    minus = grad_at(exact + v * (-h / norm))
    want = (plus - minus).mul_(norm / (2 * h))
    assert float(want[:3].abs().max()) == 0.0 < float(want.abs().max())  # `unused` is first
    with obj.at(x) as point:  # its own copy, displaced in place
        got = point.hvp(v)
    assert torch.equal(got, want) and torch.equal(x, exact)
    # at the module's own parameters: the same bits, and every parameter given back
    before = [p.detach().clone() for p in obj.live_parameters()]
    with obj.at(None, live=obj.live_parameters()) as point:
        assert torch.equal(point.hvp(v), want) and torch.equal(point.x, exact)
    assert all(torch.equal(_bits(p.detach()), _bits(b))
               for p, b in zip(model.parameters(), before, strict=True))
    assert torch.equal(obj.product(exact.clone(), v), want)  # a displaced copy


def test_compiled_fd_at_a_models_own_parameters_sums_gradients_a_part_at_a_time(monkeypatch):
    """``fd+compile`` at the live parameters takes eager ``fd``'s path: the compiled loss is
    called on the parameters' leaves and each gradient is summed into the output a part at
    a time (a flat point and a flat gradient would be two d-long vectors more); the result
    is eager ``fd``'s to rounding, and every parameter is given back."""
    torch.manual_seed(0)
    model = _TiedAndUnused().double()
    X, Y = torch.randn(16, 4, dtype=F64), torch.randn(16, 2, dtype=F64)
    eager, compiled = (ModelObjective(model, nn.functional.mse_loss, X, Y, hvp_method=m)
                       for m in ("fd", "fd+compile"))
    v = torch.randn(eager.dim, dtype=F64, generator=torch.Generator().manual_seed(1))
    with eager.at(None, live=eager.live_parameters()) as point:
        want = point.hvp(v)
    before = [p.detach().clone() for p in model.parameters()]

    def flat(*args):
        raise AssertionError("a flat gradient was assembled")

    monkeypatch.setattr(products, "_grad_at", flat)
    with warnings.catch_warnings():
        warnings.simplefilter("error", products.CompileFallbackWarning)
        with compiled.at(None, live=compiled.live_parameters()) as point:
            got = point.hvp(v)
    assert R.relative_error(got, want) <= 1e-10
    assert all(torch.equal(_bits(p.detach()), _bits(b))
               for p, b in zip(model.parameters(), before, strict=True))
