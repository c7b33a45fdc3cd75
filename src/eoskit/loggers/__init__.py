"""Sinks: where a run's rows go besides ``metrics.csv``.

* :mod:`~eoskit.loggers.sink`: the interface (any object with
  ``log_params``, ``log_row``, ``log_artifact``, ``close``) and :class:`NamedSink`,
  a sink opened by name.
* Three named sinks ship, each an optional extra: :class:`TensorBoardSink`
  (``tensorboard``), :class:`MLflowSink` (``mlflow``) and :class:`WandbSink` (``wandb``).
* :mod:`~eoskit.loggers.sink_registry`: :data:`SINK_CLASSES`, the one
  list of named sinks (``eoskit run --log`` and ``Monitor(loggers=...)``). To add
  a sink, write its module and list its class there.
"""

from eoskit.loggers.mlflow_sink import MLflowSink
from eoskit.loggers.sink import NamedSink, Sink, flat_params, scalars
from eoskit.loggers.sink_registry import (
    SINK_CLASSES,
    SINKS,
    make_sinks,
    parse_loggers,
)
from eoskit.loggers.tensorboard_sink import TensorBoardSink
from eoskit.loggers.wandb_sink import WandbSink

__all__ = ["MLflowSink", "NamedSink", "SINKS", "SINK_CLASSES", "Sink", "TensorBoardSink",
           "WandbSink", "flat_params", "make_sinks", "parse_loggers", "scalars"]
