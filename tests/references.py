"""Ground truth for tests, independent of the code under test: no eoskit imports.

Everything here is plain torch on a flat float64 parameter vector ``x``:

* small models (:func:`mlp_tanh`, :func:`mlp_gelu_layernorm`, :func:`tiny_cnn`) and
  :func:`module_loss`, which turns any module and data set into a closure ``f(x)``
  through ``torch.func.functional_call`` on the module's own parameter layout
  (:func:`flat_parameters`, for a test's own loss on a module);
  losses: MSE ``½‖f − y‖²`` summed over outputs, mean over samples, and mean
  cross-entropy;
* derivatives by reverse mode only: :func:`dense_grad`, :func:`hvp`,
  :func:`dense_hessian` (column by column, double backward), :func:`dense_jacobian`
  (row by row, one backward each), and
  :func:`third_derivative` (``T[u, v, ·]``, triple backward) and
  :func:`fourth_directional` (``F[v, v, v, v]``, quadruple backward);
* central finite differences: :func:`fd_grad`, :func:`fd_hvp`, :func:`directional_fd`,
  :func:`fd_third_derivative` (the last two difference double-backward HVPs), and the
  Richardson-extrapolated :func:`fd_hvp_extrapolated` and :func:`fd_hessian`;
* :func:`eigh_top`, the top algebraic eigenpairs of a dense symmetric matrix.

What to trust on ``nn.LayerNorm`` (torch 2.13, measured in tests/test_references.py).
Double backward through the fused ``layer_norm`` is right (Hessian columns match
finite differences of gradients to ~1e-9). Forward mode over it is not:
``torch.func.hessian = jacfwd(jacrev(f))`` comes out asymmetric by ~1e-1 relative,
and nested ``jvp`` is wrong from the second order on. Third and fourth derivatives are
wrong in *every* autograd mode (triple backward too). So on a LayerNorm model the
references for third and fourth derivatives are finite differences of HVPs, or the same
network with :class:`PlainLayerNorm`, the identical function written in plain ops.

Example:
    >>> import torch
    >>> f = lambda x: x[0] ** 3 + x[0] * x[1]
    >>> dense_hessian(f, torch.tensor([1.0, 2.0], dtype=torch.float64)).tolist()
    [[6.0, 1.0], [1.0, 0.0]]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

F64 = torch.float64
ScalarFn = Callable[[Tensor], Tensor]


# ---------------------------------------------------------------- losses and models
def mse_mean(out: Tensor, target: Tensor) -> Tensor:
    """½‖f − y‖² summed over outputs, mean over samples."""
    return 0.5 * ((out - target) ** 2).sum(dim=1).mean()


def ce_mean(out: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy, mean over samples."""
    return nn.functional.cross_entropy(out, target, reduction="mean")


LOSS_FNS = {"mse": mse_mean, "ce": ce_mean}


@dataclass
class Problem:
    """A module, its data and the loss ``f(x)`` on its flat float64 parameters."""

    model: nn.Module
    inputs: Tensor
    targets: Tensor
    loss_name: str
    x0: Tensor  # (d,) the module's parameters, flat
    f: ScalarFn

    @property
    def dim(self) -> int:
        return self.x0.numel()


def flat_parameters(model: nn.Module) -> tuple[Tensor, Callable[[Tensor], dict[str, Tensor]]]:
    """The module's parameters as one flat vector (a copy, in ``named_parameters`` order),
    and the map from any such vector to the ``{name: view}`` dict ``functional_call`` takes."""
    names = tuple(n for n, _ in model.named_parameters())
    shapes = tuple(p.shape for _, p in model.named_parameters())
    sizes = tuple(p.numel() for _, p in model.named_parameters())
    x0 = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()]).clone()

    def params_of(x: Tensor) -> dict[str, Tensor]:
        return {n: c.view(s) for n, c, s in zip(names, torch.split(x, sizes), shapes,
                                                strict=True)}

    return x0, params_of


def module_loss(model: nn.Module, inputs: Tensor, targets: Tensor, loss: str) -> Problem:
    """The mean loss of ``model`` on ``(inputs, targets)`` as a closure on flat parameters."""
    model = model.to(F64)
    x0, params_of = flat_parameters(model)
    inputs = inputs.to(F64)
    targets = targets.to(F64) if targets.is_floating_point() else targets
    loss_fn = LOSS_FNS[loss]

    def f(x: Tensor) -> Tensor:
        return loss_fn(functional_call(model, params_of(x), (inputs,)), targets)

    return Problem(model, inputs, targets, loss, x0, f)


class PlainLayerNorm(nn.Module):
    """``nn.LayerNorm`` over the last dimension, written in plain ops (parameters copied).

    The same function as the fused layer, so the same loss and layout, but autograd
    differentiates it correctly to every order.
    """

    def __init__(self, fused: nn.LayerNorm):
        super().__init__()
        self.weight = nn.Parameter(fused.weight.detach().clone())
        self.bias = nn.Parameter(fused.bias.detach().clone())
        self.eps = fused.eps

    def forward(self, z: Tensor) -> Tensor:
        mean = z.mean(-1, keepdim=True)
        var = ((z - mean) ** 2).mean(-1, keepdim=True)  # biased, as nn.LayerNorm
        return (z - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


def _data(n: int, shape: tuple[int, ...], outputs: int, loss: str, seed: int):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, *shape, dtype=F64, generator=gen)
    if loss == "mse":
        Y = torch.randn(n, outputs, dtype=F64, generator=gen)
    else:
        Y = torch.randint(0, outputs, (n,), generator=gen)
    return X, Y


def _perturbed(model: nn.Module, scale: float, seed: int) -> nn.Module:
    """Move every parameter off its initial value (LayerNorm starts at weight 1, bias 0)."""
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, dtype=p.dtype, generator=gen))
    return model


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().to(F64)


def mlp_tanh(loss: str = "mse", n: int = 12, inputs: int = 5, width: int = 6,
             outputs: int = 3, seed: int = 0) -> Problem:
    """Linear → tanh → Linear → tanh → Linear."""
    model = _seeded(lambda: nn.Sequential(
        nn.Linear(inputs, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
        nn.Linear(width, outputs)), seed)
    return module_loss(model, *_data(n, (inputs,), outputs, loss, seed), loss)


def mlp_gelu_layernorm(loss: str = "mse", n: int = 12, inputs: int = 4, width: int = 6,
                       outputs: int = 3, seed: int = 0, plain: bool = False) -> Problem:
    """Linear → GELU → LayerNorm (affine, perturbed off 1/0) → Linear.

    ``plain=True`` swaps the fused layer for :class:`PlainLayerNorm` (same parameters).
    """
    model = _seeded(lambda: nn.Sequential(
        nn.Linear(inputs, width), nn.GELU(), nn.LayerNorm(width), nn.Linear(width, outputs)),
        seed)
    model = _perturbed(model, 0.3, seed)
    if plain:
        model[2] = PlainLayerNorm(model[2])
    return module_loss(model, *_data(n, (inputs,), outputs, loss, seed), loss)


def tiny_cnn(loss: str = "mse", n: int = 6, channels: int = 2, outputs: int = 3,
             seed: int = 0) -> Problem:
    """Conv2d(1→channels, 3×3, pad 1) → tanh → AvgPool2d(2) → Flatten → Linear, 4×4 inputs."""
    model = _seeded(lambda: nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(channels * 4, outputs)), seed)
    return module_loss(model, *_data(n, (1, 4, 4), outputs, loss, seed), loss)


PROBLEMS: dict[str, Callable[..., Problem]] = {
    "mlp-tanh": mlp_tanh, "mlp-gelu-layernorm": mlp_gelu_layernorm, "tiny-cnn": tiny_cnn,
}


# ---------------------------------------------------------------- exact, reverse mode only
def _leaf(x: Tensor) -> Tensor:
    return x.detach().clone().requires_grad_(True)


def dense_grad(f: ScalarFn, x: Tensor) -> Tensor:
    """∇f(x) by one backward pass, (d,)."""
    xr = _leaf(x)
    (g,) = torch.autograd.grad(f(xr), xr)
    return g


def hvp(f: ScalarFn, x: Tensor, v: Tensor) -> Tensor:
    """H(x) v by double backward, (d,)."""
    xr = _leaf(x)
    (g,) = torch.autograd.grad(f(xr), xr, create_graph=True)
    (hv,) = torch.autograd.grad(g, xr, v)
    return hv


def dense_hessian(f: ScalarFn, x: Tensor) -> Tensor:
    """H(x), (d, d): column i is H e_i by double backward. Not symmetrised."""
    xr = _leaf(x)
    (g,) = torch.autograd.grad(f(xr), xr, create_graph=True)
    eye = torch.eye(x.numel(), dtype=x.dtype, device=x.device)
    cols = [torch.autograd.grad(g, xr, e, retain_graph=True)[0] for e in eye]
    return torch.stack(cols, dim=1)


def dense_jacobian(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """J(x) of ``fn`` (any output shape, flattened to m values), (m, d): row i is ∇fn_i(x)
    by one backward pass."""
    xr = _leaf(x)
    out = fn(xr).reshape(-1)
    eye = torch.eye(out.numel(), dtype=out.dtype, device=out.device)
    return torch.stack([torch.autograd.grad(out, xr, e, retain_graph=True)[0] for e in eye])


def third_derivative(f: ScalarFn, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """T[u, v, ·] = ∇(uᵀ H(x) v) by triple backward, (d,)."""
    xr = _leaf(x)
    (g,) = torch.autograd.grad(f(xr), xr, create_graph=True)
    (hv,) = torch.autograd.grad(g, xr, v, create_graph=True)
    (t,) = torch.autograd.grad(hv @ u, xr)
    return t


def fourth_directional(f: ScalarFn, x: Tensor, v: Tensor) -> Tensor:
    """F[v, v, v, v] = d⁴/dε⁴ f(x + εv) at 0, by quadruple backward, scalar."""
    xr = _leaf(x)
    (g,) = torch.autograd.grad(f(xr), xr, create_graph=True)
    (hv,) = torch.autograd.grad(g, xr, v, create_graph=True)
    (t,) = torch.autograd.grad(hv @ v, xr, create_graph=True)
    (q,) = torch.autograd.grad(t @ v, xr)
    return q @ v


# ---------------------------------------------------------------- central finite differences
def fd_grad(f: ScalarFn, x: Tensor, h: float = 1e-6) -> Tensor:
    """(f(x + h e_i) − f(x − h e_i))/(2h) for every i, (d,)."""
    x = x.detach()
    eye = torch.eye(x.numel(), dtype=x.dtype, device=x.device)
    with torch.no_grad():
        return torch.stack([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in eye])


def fd_hvp(f: ScalarFn, x: Tensor, v: Tensor, h: float = 1e-5) -> Tensor:
    """(∇f(x + hv) − ∇f(x − hv))/(2h) ≈ H(x) v, (d,)."""
    return (dense_grad(f, x + h * v) - dense_grad(f, x - h * v)) / (2 * h)


def fd_hvp_extrapolated(f: ScalarFn, x: Tensor, v: Tensor, h: float = 1e-3) -> Tensor:
    """H(x) v by central differences of gradients along v, Richardson-extrapolated (error
    O(h⁴)), (d,): a larger ``h`` than :func:`fd_hvp` for less cancellation."""
    x = x.detach()

    def central(step: float) -> Tensor:
        return (dense_grad(f, x + step * v) - dense_grad(f, x - step * v)) / (2 * step)

    return (4 * central(h / 2) - central(h)) / 3


def fd_hessian(f: ScalarFn, x: Tensor, h: float = 1e-3) -> Tensor:
    """H(x), (d, d), without a second derivative: column i is :func:`fd_hvp_extrapolated`
    along e_i. Not symmetrised."""
    eye = torch.eye(x.numel(), dtype=x.dtype, device=x.device)
    return torch.stack([fd_hvp_extrapolated(f, x, e, h) for e in eye], dim=1)


def directional_fd(f: ScalarFn, x: Tensor, v: Tensor, order: int,
                   h: float | None = None) -> Tensor:
    """d^order/dε^order f(x + εv) at 0 for order 3 or 4, by central differences of
    double-backward HVPs along v, Richardson-extrapolated (error O(h⁴)).

    order 3: vᵀ(H(x+hv) − H(x−hv))v/(2h); order 4: vᵀ(H(x+hv) − 2H(x) + H(x−hv))v/h².
    Default ``h``: 1e-3 (order 3), 3e-3 (order 4), for a unit ``v`` on the models here.
    """
    x, v = x.detach(), v.detach()
    h = (1e-3 if order == 3 else 3e-3) if h is None else h

    def curv(eps: float) -> Tensor:  # vᵀ H(x + εv) v
        return v @ hvp(f, x + eps * v, v)

    def central(step: float) -> Tensor:
        if order == 3:
            return (curv(step) - curv(-step)) / (2 * step)
        if order == 4:
            return (curv(step) - 2 * curv(0.0) + curv(-step)) / step**2
        raise ValueError(f"order must be 3 or 4, got {order!r}")

    return (4 * central(h / 2) - central(h)) / 3


def fd_third_derivative(f: ScalarFn, x: Tensor, u: Tensor, v: Tensor,
                        h: float = 1e-3) -> Tensor:
    """T[u, v, ·] ≈ (H(x + hu) v − H(x − hu) v)/(2h), Richardson-extrapolated, (d,)."""
    x = x.detach()

    def central(step: float) -> Tensor:
        return (hvp(f, x + step * u, v) - hvp(f, x - step * u, v)) / (2 * step)

    return (4 * central(h / 2) - central(h)) / 3


# ---------------------------------------------------------------- dense eigenpairs
def eigh_top(H: Tensor, k: int = 1) -> tuple[Tensor, Tensor]:
    """Top-k *algebraic* eigenvalues (descending, (k,)) and unit eigenvectors (d, k).

    ``H`` is symmetrised first; pass a matrix that is symmetric to rounding.
    """
    if not 1 <= k <= H.shape[0]:
        raise ValueError(f"k must be between 1 and {H.shape[0]}, got {k}")
    vals, vecs = torch.linalg.eigh((H + H.T) / 2)
    return vals.flip(0)[:k], vecs.flip(1)[:, :k]


def relative_error(a: Tensor, b: Tensor) -> float:
    """‖a − b‖/‖b‖ (Frobenius for matrices)."""
    den = float(b.norm())
    return float((a - b).norm()) / den if den > 0 else (0.0 if float(a.norm()) == 0 else math.inf)
