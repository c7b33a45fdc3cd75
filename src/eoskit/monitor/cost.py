"""What the Monitor costs the loop, in the loop's own steps.

:class:`CostClock` times the Monitor's calls and the loop's time between them
(the user's forward, backward, update and data). A measurement's time divided
by the median of recent loop steps is its cost in steps; the running share is
the Monitor's time over the wall time since its first call. So ``every`` can be
read off a number: a measurement costing ``c`` steps at ``every = n`` adds about
``c/n`` to the loop's time.

Example:
    >>> clock = CostClock()
    >>> clock.loop_steps.extend([0.5, 0.5, 0.7])
    >>> clock.cells(2.0)["measure_steps"]
    4.0
"""

from __future__ import annotations

import time

import numpy as np

COST_COLUMNS = ["measure_seconds", "measure_steps", "overhead"]
_RECENT = 50  # loop steps the median is taken over


class CostClock:
    """The Monitor's own time, and the loop's step time between its calls."""

    def __init__(self):
        self.first: float | None = None
        self.own = 0.0  # seconds inside the Monitor
        self.loop_steps: list[float] = []  # seconds the loop spent between two calls
        self._left: float | None = None  # when the last call returned
        self._entered: float | None = None

    def enter(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        if self._left is not None:
            self.loop_steps.append(now - self._left)
            del self.loop_steps[:-_RECENT]
        self._entered = now

    def leave(self) -> None:
        now = time.perf_counter()
        if self._entered is not None:
            self.own += now - self._entered
        self._entered, self._left = None, now

    def step_time(self) -> float | None:
        return float(np.median(self.loop_steps)) if self.loop_steps else None

    def cells(self, measure_seconds: float) -> dict:
        """``measure_seconds``, ``measure_steps`` (in loop steps) and the running ``overhead``."""
        step = self.step_time()
        wall = None if self.first is None else time.perf_counter() - self.first
        return {"measure_seconds": measure_seconds,
                "measure_steps": None if not step else measure_seconds / step,
                "overhead": None if not wall else min(1.0, (self.own + measure_seconds) / wall)}
