"""``spectrum.csv`` and ``spectrum_nodes.csv``: the whole spectrum along a run.

With ``--spectrum-every K``, every K steps the :class:`~eoskit.spectrum.along_run.SpectrumMeter`
measures at ``x_t`` and its rows go to the two tables: one row per measured
step in ``spectrum.csv`` (trace, λ_min, Gauss–Newton and remainder tops, each
module's λ₁, the mass above the threshold, the products spent) and the SLQ
quadrature, one row per node, in ``spectrum_nodes.csv``. Both are run tables
like ``metrics.csv`` (a checkpoint snapshots them, a resume cuts them back to
it); the trackers' vectors ride in the checkpoint's ``extra``. A distributed run
measures the same spectrum on every rank (the objective's products are all-reduced and
the trackers replicated) and rank 0 writes the tables.
"""

from __future__ import annotations

from torch import Tensor

from eoskit.spectrum.along_run import NODE_COLUMNS, SpectrumMeter, layout_blocks

SPECTRUM_CSV = "spectrum.csv"
NODES_CSV = "spectrum_nodes.csv"
STATE_KEY = "spectrum"


class SpectrumLog:
    """The measurement every ``cfg.spectrum_every`` steps and the two tables it writes.

    With ``spectrum_every = 0`` it has no tables and measures nothing, so the loop
    calls it without asking.
    """

    def __init__(self, obj, cfg):
        self.obj, self.every = obj, cfg.spectrum_every
        self.meter = None
        self.tables: dict = {}
        if not self.every:
            return
        self.meter = SpectrumMeter(cfg.spectrum_probes, cfg.spectrum_steps, cfg.eig_tol,
                                   cfg.eig_restart_every, cfg.eig_criterion, cfg.seed,
                                   blocks=layout_blocks(obj))

    def columns(self) -> dict[str, list[str]]:
        """The tables' names and columns, for the run's table opener."""
        if self.meter is None:
            return {}
        return {SPECTRUM_CSV: self.meter.columns, NODES_CSV: NODE_COLUMNS}

    def attach(self, logs: dict) -> None:
        """Take the opened tables (name → :class:`eoskit.store.CsvLog`) from ``logs``."""
        self.tables = {name: logs[name] for name in self.columns()}

    def maybe_measure(self, step: int, x: Tensor, threshold: float) -> dict | None:
        """On a measured step, measure at ``x`` (the iterate of ``step``), write both
        tables and return the row; else None."""
        if self.meter is None or step % self.every:
            return None
        row, nodes = self.meter.measure(self.obj, x, threshold, step)
        self.tables[SPECTRUM_CSV].write(row)
        for node in nodes:
            self.tables[NODES_CSV].write(node)
        return row

    def logs(self) -> list:
        return list(self.tables.values())

    def close(self) -> None:
        for log in self.tables.values():
            log.close()

    def save_into(self, extra: dict) -> None:
        """The trackers' state into a checkpoint's ``extra``."""
        if self.meter is not None:
            extra[STATE_KEY] = self.meter.state_dict()

    def restore_from(self, extra: dict, device) -> None:
        """The trackers' state from a restored checkpoint's ``extra`` (if it has one)."""
        if self.meter is not None and STATE_KEY in extra:
            self.meter.load_state_dict(extra[STATE_KEY], device)
