"""Every figure eoskit draws; the only package that imports matplotlib.

* :mod:`~eoskit.plots.run_figures`: a run's loss, sharpness and effective curvature.
* :mod:`~eoskit.plots.diagnostics_figures`: the edge-coupling diagnostics of a run.
* :mod:`~eoskit.plots.sweep_figures`: a sweep's sharpness curves and plateau.
* :mod:`~eoskit.plots.bifurcation_figures`: bifurcation diagrams.
* :mod:`~eoskit.plots.flows_figures`: GD beside gradient flow and the central flow.

Figures read run directories through :mod:`eoskit.store` and never compute
theory quantities themselves.
"""

from eoskit.plots.bifurcation_figures import plot_bifurcation
from eoskit.plots.diagnostics_figures import plot_diagnostics
from eoskit.plots.flows_figures import plot_flows
from eoskit.plots.run_figures import plot_run
from eoskit.plots.sweep_figures import plot_sweep

__all__ = ["plot_run", "plot_diagnostics", "plot_sweep", "plot_bifurcation", "plot_flows"]
