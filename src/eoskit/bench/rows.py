"""The benchmark's JSON rows: ``{section, method, setting, hvps, seconds, rel_error}`` + extras.

>>> row("cold", "eoskit-cold", "tiny", 12, 0.5, rel_error(2.0, 2.0), peer=False)["peer"]
False
>>> rel_error(1.1, 1.0) == abs(1.1 - 1.0), rel_error(float("nan"), 1.0)
(True, None)
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable


def row(section: str, method: str, setting: str, hvps, seconds, rel_error, **extra) -> dict:
    out = {"section": section, "method": method, "setting": setting, "hvps": hvps,
           "seconds": seconds, "rel_error": rel_error}
    out.update(extra)
    return out


def rel_error(value: float | None, ref: float | None) -> float | None:
    """``|value - ref| / |ref|``; None where either is missing or ``value`` is not finite."""
    if value is None or ref is None or not math.isfinite(value):
        return None
    return abs(value - ref) / abs(ref)


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls (after ``warmup`` untimed ones) and the last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out
