"""The whole spectrum measured along a run: one row of numbers per measured step.

:class:`SpectrumMeter` holds the warm-started trackers (λ_min, each module's
block λ₁, the Gauss–Newton part's and the remainder's top) and measures, at
a model objective's point: the SLQ density (the trace is its first moment
times ``d``, so it costs nothing more), the mass above the stability
threshold, and the tracked eigenvalues. It returns rows; writing them is the
caller's (``eoskit run``'s spectrum log, the Monitor's).

The Gauss–Newton product is the objective's own
(:meth:`~eoskit.objective.ModelObjective.gauss_newton`: the sum of its chunks', and of its
ranks' in a distributed run), so the meter measures a distributed run's shards as it does
one process's data: every product it asks for is the objective's.

Example:
    >>> import torch
    >>> from eoskit.objective import ModelObjective
    >>> torch.manual_seed(0) is not None
    True
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
    ...                             torch.nn.Linear(4, 2)).double()
    >>> X, Y = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    >>> obj = ModelObjective(model, "mse", X, Y, physical_batch=4)
    >>> meter = SpectrumMeter(probes=2, steps=5, blocks=layout_blocks(obj))
    >>> row, nodes = meter.measure(obj, obj.x0(), threshold=2.0, step=0)
    >>> sorted(k for k in row if k.startswith("block_")), len(nodes)
    (['block_0', 'block_2'], 10)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from eoskit.eigs import MatVec
from eoskit.objective import ModelObjective, Objective
from eoskit.spectrum.blocks import ROOT, BlockSharpnessTracker
from eoskit.spectrum.density import spectral_density
from eoskit.spectrum.gauss_newton import GaussNewtonTracker
from eoskit.spectrum.negative import LambdaMinTracker

PRODUCT_COLUMNS = ["products_density", "products_lambda_min", "products_blocks",
                   "products_gauss_newton", "products_remainder"]
NODE_COLUMNS = ["step", "probe", "node", "weight"]

__all__ = ["SpectrumMeter", "spectrum_columns", "layout_blocks", "NODE_COLUMNS",
           "PRODUCT_COLUMNS"]


def layout_blocks(obj: ModelObjective) -> dict[str, Tensor]:
    """Module name → indices of its parameters in ``obj``'s flat vector.

    Read off the objective's own layout (the parameters it optimises), grouped by
    owner as :func:`eoskit.spectrum.module_blocks` groups a model's.
    """
    groups: dict[str, list[Tensor]] = {}
    start = 0
    for name, size in zip(obj.layout.names, obj.layout.sizes, strict=True):
        owner = name.rpartition(".")[0] or ROOT
        groups.setdefault(owner, []).append(torch.arange(start, start + size))
        start += size
    return {owner: torch.cat(parts) for owner, parts in groups.items()}


def spectrum_columns(block_names) -> list[str]:
    """``spectrum.csv``'s columns for a model whose blocks are ``block_names``.

    ``remainder_top`` is the top of ``H − G``; ``mass_above_threshold`` the SLQ
    estimate of how many eigenvalues lie above the threshold; the ``products_*``
    count products of each operator (a remainder product is one Hessian and one
    Gauss–Newton product).
    """
    return (["step", "threshold", "trace", "lambda_min", "gn_top", "remainder_top"]
            + [f"block_{name}" for name in block_names]
            + ["mass_above_threshold"] + PRODUCT_COLUMNS)


class _Counted:
    """A product that counts its calls."""

    def __init__(self, matvec: MatVec):
        self.matvec, self.calls = matvec, 0

    def __call__(self, v: Tensor) -> Tensor:
        self.calls += 1
        return self.matvec(v)


@dataclass
class SpectrumMeter:
    """Density, trace, λ_min, blocks and the Gauss–Newton split at each measured point.

    ``probes``/``steps``: SLQ's; the probes of the measurement at step ``t`` are
    drawn with seed ``seed + t`` (a resumed run draws the same ones). ``tol``,
    ``restart_every``, ``criterion``: the trackers' (as :class:`eoskit.eigs.SharpnessTracker`).
    ``blocks``: module name → flat indices (:func:`layout_blocks`).
    """

    probes: int = 1
    steps: int = 80
    tol: float = 1e-6
    restart_every: int = 50
    criterion: str = "residual"
    seed: int = 0
    blocks: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if self.probes < 1 or self.steps < 1:
            raise ValueError(f"spectrum probes and steps must be at least 1, got "
                             f"{self.probes} and {self.steps}")
        opts = dict(tol=self.tol, restart_every=self.restart_every, criterion=self.criterion)
        self.lambda_min = LambdaMinTracker(**opts)
        self.block_tracker = BlockSharpnessTracker(**opts)
        self.gauss_newton = GaussNewtonTracker(**opts)

    @property
    def columns(self) -> list[str]:
        return spectrum_columns(self.blocks)

    def measure(self, obj: Objective, x: Tensor, threshold: float | None,
                step: int) -> tuple[dict, list[dict]]:
        """``spectrum.csv``'s row and ``spectrum_nodes.csv``'s rows at ``x``.

        ``threshold``: the stability threshold (None when unknown: no mass above it).
        """
        x = x.detach()
        d, args = x.numel(), (x.dtype, x.device)
        with torch.enable_grad(), obj.at(x) as point:
            hvp = {name: _Counted(point.hvp) for name in ("density", "lambda_min", "blocks")}
            sd = spectral_density(hvp["density"], d, self.probes, self.steps, self.seed + step,
                                  *args)
            low = self.lambda_min.measure(hvp["lambda_min"], d, *args)
            blocks = self.block_tracker.measure(hvp["blocks"], self.blocks, d, *args)
            split = self._split(obj, x, point.hvp)
        row = {"step": step, "threshold": threshold, "trace": sd.trace,
               "lambda_min": float(low.eigenvalues[0]), **split,
               **{f"block_{n}": float(r.eigenvalues[0]) for n, r in blocks.items()},
               "mass_above_threshold": None if threshold is None else sd.count_above(threshold),
               "products_density": hvp["density"].calls,
               "products_lambda_min": hvp["lambda_min"].calls,
               "products_blocks": hvp["blocks"].calls}
        nodes = [{"step": step, "probe": p, "node": float(sd.nodes[p, j]),
                  "weight": float(sd.weights[p, j])}
                 for p in range(sd.nodes.shape[0]) for j in range(sd.nodes.shape[1])]
        return row, nodes

    def _split(self, obj: Objective, x: Tensor, hvp: MatVec) -> dict:
        """The Gauss–Newton and remainder tops and their products; empty cells where the
        objective has no Gauss–Newton product (a model whose output is not one tensor)."""
        product = obj.gauss_newton(x)
        if product is None:
            return {"gn_top": None, "remainder_top": None, "products_gauss_newton": 0,
                    "products_remainder": 0}
        d, args = x.numel(), (x.dtype, x.device)
        G = _Counted(product)
        gn = self.gauss_newton.parts["gauss_newton"].measure(G, d, *args)
        g_calls = G.calls
        rest = _Counted(lambda v: hvp(v) - G(v))
        top = self.gauss_newton.parts["remainder"].measure(rest, d, *args)
        return {"gn_top": float(gn.eigenvalues[0]), "remainder_top": float(top.eigenvalues[0]),
                "products_gauss_newton": g_calls, "products_remainder": rest.calls}

    def state_dict(self) -> dict:
        return {"lambda_min": self.lambda_min.state_dict(),
                "blocks": self.block_tracker.state_dict(),
                "gauss_newton": self.gauss_newton.state_dict()}

    def load_state_dict(self, state: dict, device) -> None:
        self.lambda_min.load_state_dict(state["lambda_min"], device)
        self.block_tracker.load_state_dict(state["blocks"], device)
        self.gauss_newton.load_state_dict(state["gauss_newton"], device)
