"""Reference flows beside the discrete run: gradient flow and the central flow of GD.

* :mod:`~eoskit.flows.gradient`: gradient flow dx/dt = −η∇L by adaptive
  ``solve_ivp`` (time in GD steps).
* :mod:`~eoskit.flows.central`: the central flow of GD (Cohen, Damian et al.,
  ICLR 2025): the time-averaged trajectory at the Edge of Stability.
* :mod:`~eoskit.flows.complementarity`: its X ⪰ 0 solve (closed form for one
  constrained eigenvalue, cvxpy beyond).
* :mod:`~eoskit.flows.tracks`: the three trajectories advanced side by side.
* :mod:`~eoskit.flows.flow_run`: the driver behind ``eoskit flow`` (rows, summary,
  checkpoints, all through :mod:`eoskit.store`); :mod:`~eoskit.flows.flow_summary`: the
  post-onset medians its summary holds.

* :mod:`~eoskit.flows.rmsprop_central` and :mod:`~eoskit.flows.rmsprop_tracks`: the central flow of
  RMSProp (preconditioned Hessian, ν dynamics) and its stable flow.
"""

from eoskit.flows.central import DEFAULT_FRACTION, CentralFlow, CentralPoint, pair_gradients
from eoskit.flows.complementarity import closed_form, solve_complementarity, solve_cvxpy
from eoskit.flows.flow_run import FLOW_COLUMNS, FLOWS, FlowSettings, run_flows
from eoskit.flows.flow_summary import summarize_flows
from eoskit.flows.gradient import GradientFlowSettings, integrate
from eoskit.flows.tracks import CentralTrack, GDTrack, GradientTrack

__all__ = [
    # gradient flow
    "integrate", "GradientFlowSettings",
    # central flow
    "CentralFlow", "CentralPoint", "pair_gradients", "DEFAULT_FRACTION",
    # complementarity
    "solve_complementarity", "closed_form", "solve_cvxpy",
    # side by side
    "GDTrack", "GradientTrack", "CentralTrack",
    # driver
    "run_flows", "FlowSettings", "summarize_flows", "FLOWS", "FLOW_COLUMNS",
]
