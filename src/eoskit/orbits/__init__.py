"""Fixed points, period-two orbits and the half-amplitude reduction (docs/theory.md §1, §5).

* :mod:`~eoskit.orbits.orbit`: :func:`find_orbit` solves ``∇A_η = 0``,
  ``A_η(x, y) = L(x) + L(y) − |x − y|²/(2η)``, whose solutions are the fixed
  points and period-two orbits of GD at learning rate ``η``; starts from a
  pair, a point or :func:`gd_iterates`.
* :mod:`~eoskit.orbits.newton`: the globalised Newton–MINRES solver behind it
  (with optional deflation of the fixed-point set).
* :mod:`~eoskit.orbits.floquet`: Floquet multipliers of the two-step map, the
  stability verdict and the exact orbit checks.
* :mod:`~eoskit.orbits.minimum`: :func:`find_minimum`, a fixed point to reduce at.
* :mod:`~eoskit.orbits.reduction`: :func:`reduce_at_fixed_point`, ``η_c = 2/λ``
  and ``Q`` per eigendirection, the predicted half-amplitude and orbit.
* :mod:`~eoskit.orbits.preconditioned_gd`: :class:`PreconditionedObjective`, the
  same tools for preconditioned GD with a fixed diagonal ``P`` (via ``z = P^{1/2} x``).
* :mod:`~eoskit.orbits.continuation`: :func:`bifurcation_sweep` continues one
  branch over learning rates; :func:`eoskit.plots.bifurcation_figures.plot_bifurcation`
  draws it.

Example:
    >>> import torch
    >>> from eoskit.objective import FunctionObjective
    >>> from eoskit.testfns import theory_example
    >>> obj = FunctionObjective(theory_example, 2)
    >>> red = reduce_at_fixed_point(obj, torch.zeros(2, dtype=torch.float64), k=1)
    >>> round(red.directions[0].Q, 6), red.directions[0].side
    (-3.13, 'supercritical')
    >>> orb = find_orbit(obj, 1.01, *red.predicted_orbit(1.01))
    >>> orb.kind, round(orb.half_amplitude ** 2, 7)
    ('period_two', 0.0031436)
"""

from eoskit.orbits.continuation import BifurcationRow, BifurcationSweep, bifurcation_sweep
from eoskit.orbits.floquet import floquet_multipliers, orbit_checks
from eoskit.orbits.minimum import MinimumResult, find_minimum
from eoskit.orbits.orbit import OrbitResult, find_orbit, find_orbit_from_gd, gd_iterates
from eoskit.orbits.preconditioned_gd import (
    PreconditionedObjective,
    check_preconditioner,
    orbit_to_x,
    reduction_to_x,
)
from eoskit.orbits.reduction import (
    DirectionReduction,
    Reduction,
    half_amplitude_coefficient,
    predicted_half_amplitude,
    reduce_at_fixed_point,
)

__all__ = [
    # orbits at one learning rate
    "OrbitResult", "find_orbit", "find_orbit_from_gd", "gd_iterates",
    # stability and exactness of an orbit
    "floquet_multipliers", "orbit_checks",
    # fixed points
    "MinimumResult", "find_minimum",
    # the half-amplitude reduction
    "Reduction", "DirectionReduction", "reduce_at_fixed_point", "half_amplitude_coefficient",
    "predicted_half_amplitude",
    # a fixed diagonal preconditioner (z = P^{1/2} x)
    "PreconditionedObjective", "check_preconditioner", "orbit_to_x", "reduction_to_x",
    # continuation over learning rates
    "BifurcationSweep", "BifurcationRow", "bifurcation_sweep",
]

