"""The sinks eoskit opens by name, listed once in :data:`SINK_CLASSES`.

``eoskit run --log`` and ``Monitor(loggers=...)`` take their names from here;
adding a sink is one module with its :class:`~eoskit.loggers.sink.NamedSink`
class and one entry here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from eoskit.loggers.mlflow_sink import MLflowSink
from eoskit.loggers.sink import SINK_METHODS, NamedSink
from eoskit.loggers.tensorboard_sink import TensorBoardSink
from eoskit.loggers.wandb_sink import WandbSink

SINK_CLASSES: tuple[type[NamedSink], ...] = (TensorBoardSink, MLflowSink, WandbSink)

SINKS: dict[str, type[NamedSink]] = {s.name: s for s in SINK_CLASSES}


def parse_loggers(text: str | list | tuple | None) -> list[str]:
    """``"tensorboard,mlflow"`` (or a list) as a list of names; a ValueError names a bad one."""
    if text is None:
        return []
    names = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip() for n in names if n.strip()]
    bad = [n for n in names if n not in SINKS]
    if bad:
        raise ValueError(f"unknown logger {bad[0]!r}; choose from {', '.join(SINKS)}")
    return list(dict.fromkeys(names))


def make_sinks(loggers: Sequence, out: str | Path | None) -> list:
    """Sink objects from names (:data:`SINKS`, opened inside ``out``) or objects."""
    if isinstance(loggers, str):
        loggers = [loggers]
    sinks = []
    for item in loggers:
        if isinstance(item, str):
            if item not in SINKS:
                raise ValueError(f"unknown logger {item!r}; choose from {', '.join(SINKS)} "
                                 "or pass a sink object")
            if out is None:
                raise ValueError(f"the {item!r} logger writes inside the run directory: pass out=")
            sinks.append(SINKS[item].open(Path(out)))
        else:
            missing = [m for m in SINK_METHODS if not callable(getattr(item, m, None))]
            if missing:
                raise TypeError(f"{type(item).__name__} is not a sink (no {', '.join(missing)})")
            sinks.append(item)
    return sinks
