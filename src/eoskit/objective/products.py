"""Hessian-vector product engines: one matvec ``H(x) v`` of a scalar function each.

An engine takes a scalar function ``fn`` of a flat vector, a point ``x`` and ``v`` of
shape ``(d,)`` or a block ``(d, k)``, and returns ``H(x) v`` of the same shape. The
:class:`~eoskit.objective.Objective` sums an engine's products over its terms; the engine
is chosen by name (``hvp_method``) from :data:`ENGINES`, the one registry every option
list (:data:`HVP_METHODS`) is derived from.

* ``retained`` / ``rev-rev``: double backward (reverse over reverse). ``retained`` keeps
  the gradient graph at a point so each further product is one backward.
* ``fwd-rev``: forward over reverse (``jvp`` of ``grad``).
* ``fd``: central differences of gradients, for kernels without a double backward or a
  forward-mode rule (fused/flash attention, custom autograd functions); approximate (its
  step, :func:`fd_step`, keeps top Ritz values of a float32 model within ~1e-5), and it
  keeps no graph: the leanest product in memory.

Each engine states what :func:`~eoskit.objective.layers.exact_derivatives` routing its
derivative order needs (``needs``): first-order reverse mode needs none, double backward
only attention (whose fused kernels have no double backward), forward mode all of it.

``"<engine>+compile"`` runs an engine under :func:`torch.compile`: ``fd+compile`` compiles
the loss (forward and its backward, what AOTAutograd is built for); ``fwd-rev+compile``
compiles the whole ``jvp∘grad`` product. Double backward is not offered: AOTAutograd has
no double backward. If compilation fails on the platform, one warning says so and the
eager engine is used from then on.

Example:
    >>> import torch
    >>> fn = lambda x: (x ** 3).sum() / 6
    >>> x, v = torch.tensor([1.0, 2.0], dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    >>> ENGINES["fwd-rev"].product(fn, x, v).tolist()
    [1.0, 2.0]
    >>> err = ENGINES["fd"].product(fn, x, v) - x * v  # O(h²): exact for a cubic
    >>> bool(err.abs().max() < 1e-9)
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor
from torch.func import grad, jvp, vmap

from eoskit.objective.displacement import displace, undo

ScalarFn = Callable[[Tensor], Tensor]


def graph_product(g: Tensor, x: Tensor, v: Tensor, retain_graph: bool) -> Tensor:
    """``H v`` as the backward of a gradient ``g`` built with ``create_graph=True``."""
    if not g.requires_grad:  # ∇f does not depend on x: H = 0
        return torch.zeros(v.shape, dtype=x.dtype, device=x.device)
    if v.ndim == 1:
        (hv,) = torch.autograd.grad(g, x, v, retain_graph=retain_graph)
        return hv
    try:  # (k, d) batched cotangents: one vmapped backward for the whole block
        (hv,) = torch.autograd.grad(g, x, v.T.contiguous(), retain_graph=True,
                                    is_grads_batched=True)
        return hv.T
    except RuntimeError:
        # a fused kernel's backward without a batching rule (group_norm, layer_norm on
        # images: unrouted for double backward) raises under vmap: one column at a time
        k = v.shape[1]
        return torch.stack([torch.autograd.grad(g, x, v[:, j], retain_graph=retain_graph or
                                                j < k - 1)[0] for j in range(k)], dim=1)


class DoubleBackward:
    """Reverse over reverse: build ∇f with its graph, then backward it along ``v``."""

    name, needs, exact, point_bound, compiles = "rev-rev", "double-backward", True, False, False

    def product(self, fn: ScalarFn, x: Tensor, v: Tensor) -> Tensor:
        xr = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(xr), xr, create_graph=True)
        return graph_product(g, xr, v, retain_graph=False)


class RetainedGraph(DoubleBackward):
    """Double backward whose gradient graph a :class:`PointObjective` keeps at its point."""

    name, point_bound = "retained", True


class ForwardOverReverse:
    """``jvp`` of ``grad``: one forward-mode pass over the backward (needs forward rules)."""

    name, needs, exact, point_bound, compiles = "fwd-rev", "any", True, False, True

    def product(self, fn: ScalarFn, x: Tensor, v: Tensor) -> Tensor:
        def hvp1(vec):
            # + 0·vec: a function linear in x has a tangent that does not depend on vec,
            # which vmap cannot batch (it raised for a block of vectors)
            return jvp(grad(fn), (x.detach(),), (vec,))[1] + 0 * vec

        return hvp1(v) if v.ndim == 1 else vmap(hvp1, in_dims=1, out_dims=1)(v)

    def compiled_product(self, fn: ScalarFn, x: Tensor, v: Tensor) -> Tensor:
        return _compiled(self.product)(fn, x, v)


def fd_step(x: Tensor | Sequence[Tensor]) -> float:
    """The finite-difference step along a unit direction: ``h = (ε · r)^(1/3)``.

    ``ε`` is the machine epsilon of ``x``'s dtype and ``r = max(rms(x), √ε)`` the typical
    size of a coordinate (``x``: a flat point, or the tensors holding it, e.g. a model's
    parameters; the squares are summed in float64 a tensor at a time). The central
    difference's truncation error is ``h²/6 · ∇³f[v̂, v̂, ·]`` relative to ``H v̂``; rounding
    the displaced point ``x ± h v̂`` moves each coordinate by up to ``ε |xᵢ|``, which a
    Rayleigh quotient ``v̂ᵀHv`` sees as about ``ε r / h``. The step balances the two.

    The scale is per coordinate (``rms``), not ``‖x‖``. Along a Transformer's top Hessian
    direction the loss is far from quadratic: ``h ∝ ‖x‖`` (ε^(1/3)·‖x‖ = 0.31 on the
    5.3M-parameter GPT-2 of ``benchmarks/products.py``) put the Rayleigh quotient of the top
    eigenvector 73% off, where this step (1.5e-3) puts Lanczos's top value within 2e-5.
    """
    parts = [x] if isinstance(x, Tensor) else list(x)
    eps = torch.finfo(parts[0].dtype).eps
    n = sum(t.numel() for t in parts)
    squares = sum(float(t.detach().reshape(-1).double().square().sum()) for t in parts)
    rms = (squares / n) ** 0.5 if n else 0.0
    return (eps * max(rms, eps ** 0.5)) ** (1 / 3)


class FiniteDifference:
    """``H v ≈ (∇f(x + h v̂) − ∇f(x − h v̂)) / (2h) · ‖v‖`` with ``h`` from :func:`fd_step`.

    Two first-order backward passes per vector and no graph kept: it works for every
    kernel with a gradient, needs no layer routing, and its error is O(h²) (see
    :func:`fd_step`). Where ``fn`` has ``parts`` (a model's loss: ``parts(t)`` splits a flat
    vector into its parameters' views, which ``fn`` also accepts) both gradients are summed
    into the output a parameter at a time (:func:`_grad_into`): the output is the only
    d-long vector the product makes. A block is done column by column.

    Each displaced point is formed in place (:func:`~eoskit.objective.displacement.displace`)
    and given back bit for bit after its gradient, also when the gradient raises: in a
    copy of ``x``, or, given ``live`` (the tensors that hold the point: in ``fn.parts``'s
    layout, e.g. a model's own parameters, or ``[x]`` for a function without parts), in
    those tensors themselves, with no d-long vector for the point at all (``x`` is then
    not read and may be None).
    """

    name, needs, exact, point_bound, compiles = "fd", "grad", False, False, True
    displaces = True  # accepts ``live``

    def product(self, fn: ScalarFn, x: Tensor | None, v: Tensor,
                live: Sequence[Tensor] | None = None) -> Tensor:
        if v.ndim == 2:
            return torch.stack([self.product(fn, x, col, live) for col in v.T], dim=1)
        parts = getattr(fn, "parts", None)
        point = list(live) if live is not None else [x.detach().clone()]
        v = v.to(point[0].dtype)
        norm = float(v.norm())
        if norm == 0.0:
            return torch.zeros_like(v)
        split = parts is not None and live is not None  # else point is [the flat point]
        directions = parts(v) if split else [v]
        h = fd_step(point if split or parts is None else parts(point[0]))
        out = torch.zeros_like(v)
        for sign in (1.0, -1.0):
            record = displace(point, directions, sign * h / norm)
            try:
                if parts is None:
                    out.add_(_grad_at(fn, point[0]), alpha=sign)
                else:
                    _grad_into(fn, point if split else parts(point[0]), out, sign)
            finally:
                undo(point, directions, sign * h / norm, record)
        return out.mul_(norm / (2 * h))

    def compiled_product(self, fn: ScalarFn, x: Tensor | None, v: Tensor,
                         live: Sequence[Tensor] | None = None) -> Tensor:
        return self.product(_compiled(fn), x, v, live)


def _grad_into(fn: ScalarFn, point: list[Tensor], out: Tensor, sign: float) -> None:
    """``out += sign · ∇fn(point)`` with no d-long gradient beside ``out``.

    ``point``: the tensors ``fn`` accepts in place of a flat vector (a model's parameters,
    or their views of one), in the layout of ``fn.parts``. ``fn`` runs on leaves sharing
    their storage, and each leaf's gradient is added into its slice of ``out`` as soon as
    autograd has it, then dropped. A flat leaf would have its gradient assembled into a
    fresh d-long vector first (the backward of the split), beside ``out`` and the other
    point's gradient: two vectors more at the peak.
    """
    leaves = [piece.detach().requires_grad_(True) for piece in point]

    def drain(target: Tensor, leaf: Tensor) -> None:
        target.add_(leaf.grad, alpha=sign)
        leaf.grad = None

    hooks = [leaf.register_post_accumulate_grad_hook(partial(drain, target))
             for leaf, target in zip(leaves, fn.parts(out), strict=True)]
    try:
        value = fn(leaves)
        if value.requires_grad:  # else ∇fn = 0: nothing to add
            value.backward(inputs=leaves)
    finally:
        for hook in hooks:
            hook.remove()


def _grad_at(fn: ScalarFn, x: Tensor) -> Tensor:
    xr = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(xr), xr, allow_unused=True)
    return torch.zeros_like(x) if g is None else writable(g)


def writable(t: Tensor) -> Tensor:
    """``t`` if an in-place update of it is safe, else a dense copy: autograd may return an
    expanded or aliased gradient (a linear function's), which callers then write into."""
    return t if t.is_contiguous() and not t._is_view() else t.contiguous().clone()


def _compiled(fn: Callable) -> Callable:
    # torch.compile caches by code object, so wrapping a fresh closure of the same code
    # reuses the compiled graph while its guards hold; static shapes: chunks of two sizes
    # get a graph each instead of one symbolic graph (slow to build, slower to run)
    return torch.compile(fn, dynamic=False)


class CompileFallbackWarning(UserWarning):
    """``torch.compile`` failed on this platform; the eager product is used instead."""


_COMPILE_FAILED: set[str] = set()  # engines whose compilation failed in this process


class Compiled:
    """An engine run under :func:`torch.compile`, falling back to eager once it fails."""

    def __init__(self, engine):
        self.engine = engine
        self.name = engine.name + "+compile"
        self.needs, self.exact, self.point_bound = engine.needs, engine.exact, False
        self.displaces = getattr(engine, "displaces", False)

    def product(self, fn: ScalarFn, x: Tensor, v: Tensor, **kw) -> Tensor:
        if self.engine.name not in _COMPILE_FAILED:
            try:
                return self.engine.compiled_product(fn, x, v, **kw)
            except Exception as exc:  # any backend failure: the product must still come
                _COMPILE_FAILED.add(self.engine.name)
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                warnings.warn(f"torch.compile of the {self.engine.name} product failed "
                              f"({type(exc).__name__}: {first[:200]}); using it eagerly",
                              CompileFallbackWarning, stacklevel=3)
        return self.engine.product(fn, x, v, **kw)


ENGINES = {e.name: e for e in (RetainedGraph(), DoubleBackward(), ForwardOverReverse(),
                               FiniteDifference())}
HVP_METHODS = tuple(ENGINES) + tuple(n + "+compile" for n, e in ENGINES.items() if e.compiles)
EXACT_METHODS = tuple(n for n, e in ENGINES.items() if e.exact)  # exact up to rounding


def engine_for(method: str):
    """The engine named ``method`` (one of :data:`HVP_METHODS`)."""
    if method not in HVP_METHODS:
        raise ValueError(f"hvp_method must be one of {HVP_METHODS}, got {method!r}")
    base, _, compile_ = method.partition("+")
    return Compiled(ENGINES[base]) if compile_ else ENGINES[base]

