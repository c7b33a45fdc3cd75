"""Built-in objectives for the orbit and bifurcation tools, and a loader for user objectives.

Built-ins (``BUILTINS``; each gives an :class:`ObjectiveProblem`: the objective, a
default start ``x0`` and, where known, a fixed point ``x_star``):

``theory-example``
    ``L(x1, x2) = x1² + 0.25 x2² + 1.3 x1² x2 + x1⁴/8 + 0.7 x2³/6`` (docs/theory.md
    worked check). ``x* = 0``, ``λ = 2`` along ``e1``, ``Q = −3.13``.
``double-well``
    ``L(x) = (x² − 1)²/4`` in 1-D; ``x* = 1``: ``L'' = 2``, ``L''' = 6``,
    ``L'''' = 6``, ``Q = 1/2 − 36/8 = −4`` (supercritical, ``η_c = 1``).
``supercritical-1d``
    ``L(x) = x² + x³ + x⁴/2``; ``x* = 0``, ``Q = 1 − 36/8 = −3.5``, ``η_c = 1``.
``subcritical-1d``
    ``L(x) = x² + x³/3 + x⁴/2``; ``x* = 0``, ``Q = 1 − 4/8 = 0.5``, ``η_c = 1``.
``linear-net``
    Two-layer linear network ``x ↦ W2 W1 x`` (input 10, hidden 3, output 5,
    no biases; 45 parameters, ``W1`` first), MSE ``½‖W2 W1 X − Y‖²/n`` over
    ``n = 200`` samples. Inputs are Gaussian, then whitened so that
    ``X Xᵀ/n = I`` exactly; the target map ``M* = U diag(3, 2, 1) Vᵀ`` has
    random orthonormal ``U`` (5×3), ``V`` (10×3), so ``Y = M* X`` is rank 3.
    Every minimum has ``W2 W1 = M*``: a 9-dimensional manifold (the GL(3)
    orbit ``W2 A, A⁻¹ W1``), so the Hessian there has a 9-dimensional null
    space. At a *balanced* minimum (``W1 W1ᵀ = W2ᵀ W2``) the sharpness is
    exactly ``2 σ₁(M*) = 6`` (with whitened inputs), i.e. ``η_c = 1/σ₁``;
    :func:`linear_net_balanced_minimum` builds one. ``x0`` is a small seeded
    random start (std 0.1) for GD.
``digits-mlp``
    A tanh MLP (8 → 12 → 1, with biases, 121 parameters) on 48 samples of
    scikit-learn's ``load_digits``: pixels /16, centred, projected on their
    top 8 principal components and scaled to unit overall std; the target is
    the digit value standardised, ``(label − 4.5)/3``. Loss: MSE plus
    ``(10⁻³/2)|θ|²``. Without the ridge term the tanh net's loss keeps
    sliding down flat valleys (eigenvalues ``~1e-8`` that shrink under
    Newton): no isolated minimum at finite parameters, hence no fixed point to
    reduce at. With it the minimum is isolated (smallest eigenvalue ``~8e-6``).
    One scalar output avoids the near-degenerate top eigenvalues that a
    one-hot output layer brings (its Hessian block is ``I₁₀ ⊗ Σ_h``). ``x0`` is
    PyTorch's default initialisation under the seed.

User objectives (:func:`load_objective`): ``FILE.py:NAME`` or
``package.module:NAME`` naming a callable that maps a 1-D float64 tensor to a
scalar tensor (its dimension comes from ``x0`` or from an attribute ``dim``
on the callable; an attribute ``x0`` gives the default start), or an
:class:`~eoskit.objective.Objective` instance. A callable is wrapped by
:func:`checked_callable`: whatever it does wrong later (raises, returns a
non-tensor, detaches its graph) is an :class:`ObjectiveError` naming it and the
step where it happened, never a traceback from deep inside a solver.

Modules: :mod:`~eoskit.testfns.problems` (the built-ins),
:mod:`~eoskit.testfns.loading` (start vectors and user objectives); the error and the
wrapper are :mod:`eoskit.objective.failures`.

Example:
    >>> import torch
    >>> p = builtin("theory-example")
    >>> float(p.objective.value(torch.tensor([1.0, 0.0], dtype=torch.float64)))
    1.125
"""

from eoskit.testfns.loading import load_objective, parse_vector
from eoskit.testfns.problems import (
    BUILTINS,
    DTYPE,
    ObjectiveProblem,
    builtin,
    digits_mlp,
    double_well,
    linear_net,
    linear_net_balanced_minimum,
    subcritical_1d,
    supercritical_1d,
    theory_example,
)

__all__ = [
    # the built-in problems
    "BUILTINS", "ObjectiveProblem", "builtin", "linear_net_balanced_minimum", "DTYPE",
    "theory_example", "double_well", "supercritical_1d", "subcritical_1d", "linear_net",
    "digits_mlp",
    # user objectives and start vectors
    "load_objective", "parse_vector",
]
