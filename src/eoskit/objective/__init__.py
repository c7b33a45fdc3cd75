"""Objectives: a scalar loss on a flat parameter vector and its derivatives.

* :mod:`~eoskit.objective.base`: :class:`Objective` (value, gradient, HVPs, ``d3``,
  ``d4``), :class:`PointObjective` (the one
  "products at a point" path), :class:`FunctionObjective`.
* :mod:`~eoskit.objective.model`: :class:`ModelObjective`, a module's mean loss
  over data in chunks, and the flat-parameter layout.
* :mod:`~eoskit.objective.products`: the Hessian-vector product engines and their
  registry (``hvp_method``); :mod:`~eoskit.objective.displacement`: the ``fd`` engine's
  displaced points, formed in place and given back bit for bit.
* :mod:`~eoskit.objective.gauss_newton_products`: the Gauss–Newton product ``Jᵀ∇²ℓJ v``
  of a loss of network outputs (:meth:`Objective.gauss_newton`).
* :mod:`~eoskit.objective.losses`: the per-chunk loss sums.
"""

from eoskit.objective.base import (
    FunctionObjective,
    Objective,
    PointObjective,
    directional_derivative,
)
from eoskit.objective.gauss_newton_products import gauss_newton_product
from eoskit.objective.losses import LOSS_SUMS, LOSSES, ce_sum, mse_sum, n_correct
from eoskit.objective.model import (
    ModelObjective,
    ParamLayout,
    chunk_bounds,
    flatten_params,
    layout_of,
    trainable,
)
from eoskit.objective.products import EXACT_METHODS, HVP_METHODS, fd_step

__all__ = [
    # objectives
    "Objective", "PointObjective", "FunctionObjective", "ModelObjective",
    # derivatives and options
    "HVP_METHODS", "EXACT_METHODS", "fd_step", "directional_derivative", "gauss_newton_product",
    # losses
    "LOSSES", "LOSS_SUMS", "mse_sum", "ce_sum", "n_correct",
    # flat parameters
    "ParamLayout", "layout_of", "trainable", "flatten_params", "chunk_bounds",
]
