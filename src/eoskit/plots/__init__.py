"""Every figure eoskit draws; the only package that imports matplotlib.

* :mod:`~eoskit.plots.run_figures`: a run's loss, sharpness and effective curvature.
* :mod:`~eoskit.plots.diagnostics`: the edge-coupling diagnostics of a run.
* :mod:`~eoskit.plots.sweep_figures`: a sweep's sharpness curves and plateau.
* :mod:`~eoskit.plots.bifurcation`: bifurcation diagrams.
* :mod:`~eoskit.plots.flows`: GD beside gradient flow and the central flow.

Figures read run directories through :mod:`eoskit.store` and never compute
theory quantities themselves.
"""

from eoskit.plots.bifurcation import plot_bifurcation
from eoskit.plots.diagnostics import plot_diagnostics
from eoskit.plots.flows import plot_flows
from eoskit.plots.run_figures import plot_run
from eoskit.plots.sweep_figures import plot_sweep

__all__ = ["plot_run", "plot_diagnostics", "plot_sweep", "plot_bifurcation", "plot_flows"]
