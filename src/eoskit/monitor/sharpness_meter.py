"""What a Monitor measurement computes of the Hessian's top: the raw and the preconditioned
sharpness of the measurement set's loss, with ``P`` read off the user's optimiser.

``mode="shared"``: one :class:`~eoskit.eigs.SharedTracker` measures both quantities from
one set of products; ``mode="lean"`` measures them one after the other in a few d-long
vectors (:class:`~eoskit.eigs.LeanTracker`); ``"auto"`` (the default) takes the shared
tracker where its smallest basis fits the 256 MB allowance
(:func:`~eoskit.eigs.shared_budget.shared_fits`: up to about 3.7M float32 parameters for
both quantities) or ``image_dtype`` (the shared basis's) is given, else the lean one;
``"lanczos"`` or ``"streaming"`` gives each quantity a tracker of its own. ``raw=False``
(an adaptive optimiser only) measures the preconditioned sharpness alone. The product
engine a measurement uses is the objective's (:func:`default_engine` of its dtype unless
the user names one).

Example:
    >>> import torch
    >>> from eoskit.objective import ModelObjective
    >>> model = torch.nn.Linear(3, 1).double()
    >>> X, Y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    >>> obj = ModelObjective(model, torch.nn.functional.mse_loss, X, Y)
    >>> meter = SharpnessMeter(obj, model, None, 1)
    >>> x = obj.x0()
    >>> with torch.enable_grad(), obj.at(x) as point:
    ...     eig, peig = meter.measure(point.hvp)
    >>> dense = torch.linalg.eigvalsh(obj.hessian(x))[-1]
    >>> bool(abs(eig.eigenvalues[0] - dense) < 1e-3 * dense), peig is None
    (True, True)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from eoskit._heap import release_free_heap
from eoskit.eigs import TRACKERS, LeanTracker, SharedTracker, make_tracker, preconditioned_matvec
from eoskit.eigs.shared_budget import budget_for, shared_fits
from eoskit.eigs.warm_tracker import WarmTracker
from eoskit.monitor.optimizers import adaptive, optimizer_kind, unwrap
from eoskit.objective.model import trainable
from eoskit.optim import StateDiagonal, state_preconditioner

MODES = ("auto", "shared", "lean", *TRACKERS)


def default_engine(dtype: torch.dtype) -> str:
    """The Monitor's product engine for a measurement in ``dtype``.

    Below float64, finite differences of gradients (``"fd"``): on the 5.3M-parameter GPT-2
    of issue 22 a product costs what a double-backward product at a held point costs
    (``benchmarks/products.py``), the top Ritz values agree with double backward to ~2e-5
    (far inside the default tol 1e-3), and no gradient graph is held (the graph was ~20
    model-sized vectors there). float64 measurements keep exact double backward
    (``"retained"``), whose products match a dense Hessian to rounding.
    """
    return "retained" if dtype == torch.float64 else "fd"


class SharpnessMeter:
    """The top-k of ``H`` and, under an adaptive optimiser, of ``P^{-1/2} H P^{-1/2}``.

    ``objective``: the Monitor's (its ``dim`` and ``dtype`` size the tracker's budget);
    the other options are the :class:`~eoskit.monitor.Monitor`'s of the same names.
    """

    def __init__(self, objective, model: nn.Module, optimizer, k: int, *, mode: str = "auto",
                 tol: float = 1e-3, restart_every: int = 50, criterion: str = "eigenvalue",
                 max_vectors: int | None = None, raw: bool = True,
                 max_warm_products: int | None = None,
                 image_dtype: torch.dtype | None = None):
        self.objective, self.model, self.optimizer, self.k = objective, model, optimizer, k
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.preconditioned = adaptive(optimizer)
        if not raw and not self.preconditioned:
            raise ValueError("raw_sharpness=False measures the preconditioned sharpness alone, "
                             "which needs an adaptive optimiser (torch Adam, AdamW or RMSprop); "
                             f"got {optimizer_kind(optimizer)}")
        self.raw = bool(raw)
        sizing = {"quantities": 2 if self.raw and self.preconditioned else 1,
                  "eigenvectors": False}
        if mode == "auto":
            mode = "shared" if image_dtype is not None or shared_fits(
                k, objective.dim, objective.dtype, **sizing) else "lean"
        self.mode = mode  # as resolved
        if image_dtype is not None and mode != "shared":
            raise ValueError(f"image_dtype is the shared tracker's; mode is {mode!r}")
        if max_warm_products is not None and mode not in ("shared", "lean"):
            raise ValueError(f"max_warm_products is the shared and lean trackers'; mode is "
                             f"{mode!r}")
        if mode == "lean":  # the rows report values only, as the shared tracker's
            self.tracker = LeanTracker(k, tol, restart_every, max_vectors=max_vectors,
                                       criterion=criterion,
                                       max_warm_products=max_warm_products, **sizing)
            self.precond_tracker = None
            return
        if mode == "shared":
            # the rows report values only: no Ritz vectors kept, and one quantity's basis
            # is sized for one
            budget = max_vectors or budget_for(k, objective.dim, objective.dtype, **sizing)
            self.tracker = SharedTracker(k, tol, restart_every, max_vectors=budget,
                                         max_warm_products=max_warm_products,
                                         criterion=criterion, image_dtype=image_dtype,
                                         **sizing)
            self.precond_tracker = None
            return
        if criterion == "change":
            raise ValueError("criterion 'change' is the shared and lean trackers'; mode is "
                             + repr(mode))
        # one tracker per quantity: P changes between measurements, so the preconditioned
        # one is warm-started from its own vectors
        opts = {"criterion": criterion, "max_vectors": max_vectors}
        self.tracker = make_tracker(mode, k, tol, restart_every, **opts) if self.raw else None
        self.precond_tracker = make_tracker(mode, k, tol, restart_every, **opts) if (
            self.preconditioned) else None

    def measure(self, hvp):
        """The raw (None with ``raw=False``) and the preconditioned (None without ``P``)
        top-k at the point whose products ``hvp`` gives (in the objective's dtype)."""
        d, p = self.objective.dim, self._state_diagonal()
        dtype, device = self.objective.dtype, self.objective.device
        if not self.raw and p is None:  # before the optimiser's first step: nothing to measure
            return None, None
        release_free_heap(device)  # what the loop's heap kept is not counted twice
        if isinstance(self.tracker, WarmTracker):  # shared or lean
            # P by slices off the optimiser's state: no d-long copy beside the basis
            out = self.tracker.measure(hvp, d, dtype, device, p, raw=self.raw)
            return out.get("raw"), out.get("pre")
        p = None if p is None else p.full()
        eig = self.tracker.measure(hvp, d, dtype, device) if self.raw else None
        peig = None if p is None else self.precond_tracker.measure(
            preconditioned_matvec(hvp, p), d, dtype, device)
        return eig, peig

    def preconditioner(self) -> Tensor | None:
        """The optimiser's current ``P = √v̂ + ε`` (d,) in the objective's dtype; None
        without an adaptive optimiser, before its first step, or if it lacks a parameter."""
        p = self._state_diagonal()
        return None if p is None else p.full()

    def _state_diagonal(self) -> StateDiagonal | None:
        """:meth:`preconditioner` a slice at a time (:class:`~eoskit.optim.StateDiagonal`)."""
        if not self.preconditioned:
            return None
        try:
            p = state_preconditioner(unwrap(self.optimizer),
                                     [p for _, p in trainable(self.model)])
        except (KeyError, ValueError):  # no step yet; a parameter the optimiser does not own
            return None
        return p.to(dtype=self.objective.dtype, device=self.objective.device)
