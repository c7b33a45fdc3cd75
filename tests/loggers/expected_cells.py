"""What a sink should store of a run's rows: one place for the loggers' read-back tests."""

from __future__ import annotations

import math


def numeric_cells(rows: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """{column: [(step, value)]} of the finite numeric cells, as a sink should store them."""
    out: dict[str, list] = {}
    for r in rows:
        for k, v in r.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) \
                    and math.isfinite(v):
                out.setdefault(k, []).append((r["step"], float(v)))
    return out
