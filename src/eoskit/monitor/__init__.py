"""Sharpness of your model, your loss and your training loop.

* :mod:`~eoskit.monitor.monitor`: :class:`Monitor`, measured every few optimiser steps.
* :mod:`~eoskit.monitor.sharpness_meter`: what a measurement computes: the raw and the
  preconditioned sharpness, the trackers, the product engine by dtype.
* :mod:`~eoskit.monitor.data`: the fixed measurement set (tensors or a DataLoader).
* :mod:`~eoskit.monitor.optimizers`: the stability threshold a torch optimiser implies.
* :mod:`~eoskit.monitor.monitor_dir`: the run directory a Monitor writes, and reading it back.
"""

from eoskit.monitor.data import measurement_set
from eoskit.monitor.monitor import Monitor
from eoskit.monitor.monitor_dir import MonitorRun, load_monitor_run
from eoskit.monitor.optimizers import optimizer_kind, optimizer_threshold
from eoskit.monitor.sharpness_meter import SharpnessMeter, default_engine

__all__ = [
    # the monitor
    "Monitor",
    # its pieces
    "measurement_set", "optimizer_threshold", "optimizer_kind", "default_engine",
    "SharpnessMeter",
    # its run directory
    "MonitorRun", "load_monitor_run",
]
