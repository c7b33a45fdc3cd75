"""The one abstraction underneath eoskit: a loss on a flat parameter vector.

An :class:`Objective` maps a 1-D tensor ``x`` (float32 or float64, any device)
to a scalar loss and offers its derivatives:

* ``value(x)``, ``grad(x)``, ``value_and_grad(x)``, ``value_grad_aux(x)``
* ``hvp(x, v)`` for ``v`` of shape ``(d,)`` or a block ``(d, k)``, by the engine named
  ``hvp_method`` (:mod:`eoskit.objective.products`: ``retained``, ``rev-rev``,
  ``fwd-rev``, ``fd``, and ``+compile`` variants)
* ``d3(x, u, v)`` = ``T[u, v, ·]`` (third derivative tensor contracted twice)
* ``d4(x, v)`` = ``F[v, v, v, v]`` (fourth directional derivative)
* ``at(x)``: a :class:`PointObjective`, the *only* implementation of "many
  Hessian-vector products at one point". With ``hvp_method="retained"`` it
  keeps one gradient graph alive, so each product costs one backward; with
  the other methods it applies that method at the fixed point. Everything in
  eoskit that needs products at a point (eigensolvers, diagnostics, orbits)
  goes through it.

A loss over data is a *sum of terms* (one per chunk of the training set, each
weighted by its share of the samples), and every derivative is the sum of the
terms' derivatives, so chunking changes memory, never the numbers.

Example:
    >>> import torch
    >>> obj = FunctionObjective(lambda x: (x ** 4).sum() / 4, dim=3)
    >>> x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    >>> obj.hvp(x, torch.ones(3, dtype=torch.float64)).tolist()
    [3.0, 12.0, 27.0]
    >>> with obj.at(x) as point:
    ...     float(point.value), point.hvp(torch.ones(3, dtype=torch.float64)).tolist()
    (24.5, [3.0, 12.0, 27.0])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.func import grad, jvp

from eoskit.objective.layers import exact_derivatives
from eoskit.objective.products import ENGINES, engine_for, graph_product, writable

ScalarFn = Callable[[Tensor], Tensor]
Term = Callable[[Tensor], tuple[Tensor, Tensor | None]]


# ---------------------------------------------------------------- the point-bound form
class PointObjective:
    """Value, gradient and Hessian-vector products at one fixed point ``x``.

    ``hvp_method="retained"``: the gradient is built once with
    ``create_graph=True`` and each product is one backward pass through it
    (no forward pass is redone). Other methods: value and gradient are
    computed on first use and each product runs the method at ``x``.
    Use as a context manager (or call :meth:`release`) to free the graph.
    ``copy=False`` keeps ``x`` itself instead of a copy (one d-long vector less): the
    caller must not change it while the point is in use. ``live``: the tensors that hold
    the point in the objective's :attr:`~Objective.parts` layout (a model's own
    parameters, in the objective's dtype; ``[x]`` without parts): an engine that
    displaces the point (``fd``) forms its displaced points there and gives every bit
    back after each product, so no d-long vector holds the point while products run.
    ``x`` may then be None: the flat point is made from ``live`` when first needed
    (value, gradient, other engines). A point's own copy (``copy=True``) is displaced in
    place the same way.
    """

    def __init__(self, parent: Objective, x: Tensor | None, copy: bool = True,
                 live: list[Tensor] | None = None):
        if x is None and live is None:
            raise ValueError("a point needs x or the live tensors that hold it")
        self.parent = parent
        self.retained = parent.engine.point_bound
        self._x = None if x is None else x.detach().clone() if copy else x.detach()
        if live is None and copy and x is not None:  # its own copy: no displaced one beside it
            live = parent.parts(self._x) if parent.parts is not None else [self._x]
        self.live = live
        self._graph_grad: Tensor | None = None
        self._vga: tuple[Tensor, Tensor, Tensor | None] | None = None
        if self.retained:
            self.x.requires_grad_(True)
            self._build_graph()

    @property
    def x(self) -> Tensor:
        """The point, flat (d,); made from ``live`` on first use when not given."""
        if self._x is None:
            self._x = flat_copy(self.live)
        return self._x

    def _build_graph(self) -> None:
        total = grad_total = aux_total = None
        for term in self.parent.exact_terms(self.parent.engine.needs):
            loss, aux = term(self.x)
            (g,) = torch.autograd.grad(loss, self.x, create_graph=True)
            total = loss.detach() if total is None else total + loss.detach()
            grad_total = g if grad_total is None else grad_total + g
            if aux is not None:
                aux_total = aux if aux_total is None else aux_total + aux
        self._graph_grad = grad_total  # (d,), carries the graph
        self._vga = (total, grad_total.detach(), aux_total)
        self.parent.grad_count += 1

    def _value_grad_aux(self) -> tuple[Tensor, Tensor, Tensor | None]:
        if self._vga is None:
            self._vga = self.parent.value_grad_aux(self.x)
        return self._vga

    @property
    def value(self) -> Tensor:
        return self._value_grad_aux()[0]

    @property
    def grad(self) -> Tensor:
        return self._value_grad_aux()[1]

    @property
    def aux(self) -> Tensor | None:
        return self._value_grad_aux()[2]

    @property
    def alive(self) -> bool:
        """Whether products can still be taken (a released retained graph cannot)."""
        return not self.retained or self._graph_grad is not None

    def hvp(self, v: Tensor) -> Tensor:
        """H(x) v for v of shape (d,) or (d, k)."""
        if not self.retained:
            if self.live is not None and getattr(self.parent.engine, "displaces", False):
                return self.parent.product(self._x, v, live=self.live)
            return self.parent.product(self.x, v)
        if self._graph_grad is None:
            raise RuntimeError("this PointObjective was released; take a new one with at(x)")
        self.parent.hvp_count += 1 if v.ndim == 1 else v.shape[1]
        return graph_product(self._graph_grad, self.x, v, retain_graph=True)

    def release(self) -> None:
        """Drop the graph (frees its activations) and the objective's hold on this point
        (its ``x`` and gradient: two d-long vectors the objective would keep until the
        next ``at``)."""
        self._graph_grad = None
        if getattr(self.parent, "_point", None) is self:
            self.parent._point = None

    def __enter__(self) -> PointObjective:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------- base class
class Objective:
    """A scalar loss on a flat parameter vector, as a sum of terms.

    Subclasses implement :meth:`terms`, yielding callables ``term(x) -> (loss,
    aux)`` whose losses sum to the objective (``aux`` is an optional detached
    side result, e.g. correct predictions, summed alongside).
    """

    dim: int
    dtype: torch.dtype
    device: torch.device

    def __init__(self, hvp_method: str = "retained"):
        self.hvp_method = hvp_method
        self.hvp_count = 0  # single-vector Hessian products so far
        self.grad_count = 0  # gradient evaluations so far

    @property
    def hvp_method(self) -> str:
        """The product engine's name; setting it switches the engine (and drops the point)."""
        return self.engine.name

    @hvp_method.setter
    def hvp_method(self, method: str) -> None:
        self.engine = engine_for(method)  # refuses a name not in HVP_METHODS
        self._point: PointObjective | None = None

    # subclasses
    def terms(self) -> Iterator[Term]:
        raise NotImplementedError

    def exact_terms(self, needs: str = "any") -> Iterator[Term]:
        """The terms, each evaluated under :func:`exact_derivatives` routed for ``needs``
        (``"any"``: fused norms and attention replaced by composite formulas, so every
        derivative order is right; ``"grad"``: the model's own kernels)."""
        for term in self.terms():
            yield _exact(term, needs)

    def term_fns(self, needs: str = "any") -> Iterator[ScalarFn]:
        """Each term's loss as a function of the flat vector; where the objective splits it
        (:attr:`parts`), the function also takes the list of parts and carries ``parts``
        (the ``fd`` engine then sums gradients a part at a time)."""
        for term in self.exact_terms(needs):
            fn = (lambda x, term=term: term(x)[0])
            if self.parts is not None:
                fn.parts = self.parts
            yield fn

    # a function splitting a flat (d,) vector into the views the terms also accept, or None
    parts = None

    def live_parameters(self) -> list[Tensor] | None:
        """Tensors that hold the current point in the :attr:`parts` layout, which an ``fd``
        product may displace in place (see :class:`PointObjective`): a model's own
        parameters (:class:`~eoskit.objective.ModelObjective`); None here."""
        return None

    def gauss_newton(self, x: Tensor) -> Callable[[Tensor], Tensor] | None:
        """``v ↦ G v``, the Gauss–Newton part of the Hessian at ``x``, where the loss is one
        of network outputs (:mod:`~eoskit.objective.gauss_newton_products`); None here: a
        loss with no outputs has no such split."""
        return None

    # values and gradients
    def value(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return sum(fn(x) for fn in self.term_fns("grad"))

    def value_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        value, g, _ = self.value_grad_aux(x)
        return value, g

    def value_grad_aux(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Loss, gradient and summed aux in one pass over the data."""
        xr = x.detach().requires_grad_(True)
        value = torch.zeros((), dtype=x.dtype, device=x.device)
        g = None  # the first term's gradient is the sum's storage: no d-long zeros beside it
        aux_total = None
        for term in self.exact_terms("grad"):
            loss, aux = term(xr)
            (gc,) = torch.autograd.grad(loss, xr)
            value = value + loss.detach()
            g = writable(gc) if g is None else g.add_(gc)
            if aux is not None:
                aux_total = aux if aux_total is None else aux_total + aux
        self.grad_count += 1
        return value, g, aux_total

    def grad(self, x: Tensor) -> Tensor:
        return self.value_and_grad(x)[1]

    # second order
    def at(self, x: Tensor | None, copy: bool = True,
           live: list[Tensor] | None = None) -> PointObjective:
        """Point-bound form: value, gradient and repeated HVPs at ``x`` (``copy`` and
        ``live``: see :class:`PointObjective`)."""
        point = PointObjective(self, x, copy, live)
        self._point = point
        return point

    def hvp(self, x: Tensor, v: Tensor) -> Tensor:
        """Hessian-vector product; ``v`` is (d,) or a block (d, k).

        Consecutive calls at the same ``x`` share one point (one retained graph).
        """
        point = self._point
        if point is None or not point.alive or not _same_point(point.x, x):
            point = self.at(x)
        return point.hvp(v)

    def product(self, x: Tensor | None, v: Tensor, live: list[Tensor] | None = None) -> Tensor:
        """H(x) v by the engine at a point it does not keep (``retained``: double
        backward), summed over the terms, counted. ``live``: see :class:`PointObjective`
        (an engine that displaces the point uses it, and ``x`` may then be None)."""
        self.hvp_count += 1 if v.ndim == 1 else v.shape[1]
        kw = {"live": live} if live is not None and getattr(
            self.engine, "displaces", False) else {}
        if not kw and x is None:
            raise ValueError(f"the {self.engine.name} engine needs the flat point x")
        x = None if x is None else x.detach()
        out = None  # the first term's product is the sum's storage (no zeros held beside it)
        for fn in self.term_fns(self.engine.needs):
            part = self.engine.product(fn, x, v, **kw)
            out = writable(part) if out is None else out.add_(part)
        return out

    # higher directional derivatives
    def d3(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """``T[u, v, ·]``: the gradient of ``uᵀ H(x) v`` (reverse over forward-forward)."""
        x = x.detach()
        out = torch.zeros_like(x)
        for fn in self.term_fns():
            def second(y, fn=fn):
                return jvp(lambda z: jvp(fn, (z,), (u,))[1], (y,), (v,))[1]

            out = out + grad(second)(x)
        return out

    def d4(self, x: Tensor, v: Tensor) -> Tensor:
        """``F[v, v, v, v]``: fourth derivative of ``ε ↦ L(x + εv)`` at 0 (nested forward)."""
        x = x.detach()
        total = torch.zeros((), dtype=x.dtype, device=x.device)
        for fn in self.term_fns():
            total = total + directional_derivative(fn, x, v, order=4)
        return total

    def hessian(self, x: Tensor) -> Tensor:
        """Dense Hessian (d, d) from d Hessian-vector products (tiny problems only).

        Built from the objective's own products (columns ``H e_i``) when its engine is
        exact, else (``fd``) from double backward, so it is exact for every layer
        PyTorch differentiates twice; symmetrised against rounding.
        """
        x = x.detach()
        eye = torch.eye(x.numel(), dtype=x.dtype, device=x.device)
        if self.engine.exact:
            with self.at(x) as point:
                H = point.hvp(eye)
        else:
            self.hvp_count += x.numel()
            H = sum(ENGINES["rev-rev"].product(fn, x, eye)
                    for fn in self.term_fns("double-backward"))
        return (H + H.T) / 2


def _exact(term: Term, needs: str) -> Term:
    def call(x: Tensor):
        with exact_derivatives(needs):
            return term(x)

    return call


def directional_derivative(fn: ScalarFn, x: Tensor, v: Tensor, order: int) -> Tensor:
    """d^order/dε^order fn(x + εv) at ε = 0, by nested forward-mode AD."""
    g = fn
    for _ in range(order):
        g = (lambda h: (lambda y: jvp(h, (y,), (v,))[1]))(g)
    return g(x)


def flat_copy(tensors) -> Tensor:
    """One fresh flat vector holding ``tensors`` (detached) one after the other."""
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _same_point(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(
        a.detach(), b.detach()
    )


# ---------------------------------------------------------------- a plain function
class FunctionObjective(Objective):
    """Any callable ``f(x) -> scalar tensor`` on a 1-D tensor of length ``dim``.

    Example:
        >>> import torch
        >>> obj = FunctionObjective(lambda x: x[0] ** 2 + 3 * x[0] * x[1], dim=2)
        >>> obj.hessian(torch.zeros(2, dtype=torch.float64)).tolist()
        [[2.0, 3.0], [3.0, 0.0]]
    """

    def __init__(
        self,
        f: ScalarFn,
        dim: int,
        *,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        hvp_method: str = "retained",
    ):
        super().__init__(hvp_method)
        self.f = f
        self.dim = int(dim)
        self.dtype = dtype
        self.device = torch.device(device)

    def terms(self):
        yield lambda x: (self.f(x), None)

