"""The Monitor's spectrum (``Monitor(spectrum_every=K)``): ``eoskit run``'s spectrum tables.

Every K optimiser steps the :class:`~eoskit.spectrum.along_run.SpectrumMeter`
measures at the model's current parameters on the Monitor's measurement set;
the rows go to ``spectrum.csv`` and ``spectrum_nodes.csv`` in the Monitor's
run directory (and stay in :attr:`MonitorSpectrum.rows` without one; under
torch.distributed every rank measures the sum over the ranks' shards, the
products the objective all-reduces, and rank 0 writes), and
closing draws ``plots/spectrum.png`` and ``plots/layers.png``. The user's
random generators are left as they were (a forward pass may draw dropout masks).
"""

from __future__ import annotations

from pathlib import Path

import torch

from eoskit import store
from eoskit.spectrum.along_run import NODE_COLUMNS, SpectrumMeter, layout_blocks


class MonitorSpectrum:
    """The meter, its rows and (with ``out``) the two tables."""

    def __init__(self, objective, every: int, out: str | Path | None, *, probes: int,
                 steps: int, tol: float, restart_every: int, criterion: str, seed: int):
        if every < 1:
            raise ValueError(f"spectrum_every must be at least 1, got {every}")
        self.objective, self.every = objective, every
        self.meter = SpectrumMeter(probes, steps, tol, restart_every, criterion, seed,
                                   blocks=layout_blocks(objective))
        self.rows: list[dict] = []
        self.out = None if out is None else Path(out)
        self.tables = {} if self.out is None else {
            "spectrum.csv": store.CsvLog(self.out / "spectrum.csv", self.meter.columns),
            "spectrum_nodes.csv": store.CsvLog(self.out / "spectrum_nodes.csv", NODE_COLUMNS)}

    def maybe_measure(self, step: int, threshold: float | None) -> dict | None:
        """Measure if ``step`` is due (and not measured yet); the row, else None."""
        if step % self.every or (self.rows and self.rows[-1]["step"] == step):
            return None
        obj = self.objective
        devices = [obj.device.index or 0] if obj.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            row, nodes = self.meter.measure(obj, obj.x0(), threshold, step)
        self.rows.append(row)
        if self.tables:
            self.tables["spectrum.csv"].write(row)
            for node in nodes:
                self.tables["spectrum_nodes.csv"].write(node)
        return row

    def close(self) -> list[Path]:
        """Close the tables and draw the figures; the figures' paths."""
        for log in self.tables.values():
            log.close()
        if self.out is None or not self.rows:
            return []
        try:
            from eoskit.plots.spectrum_figures import plot_spectrum

            return plot_spectrum(self.out)
        except Exception:  # figures are a bonus; the tables are written
            return []
