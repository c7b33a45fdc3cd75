"""The ``metrics.csv`` contract, shared by ``eoskit run`` and :class:`eoskit.Monitor`.

* :mod:`~eoskit.metrics.columns`: the column names, for a run's rule or a Monitor.
* :mod:`~eoskit.metrics.metric_rows`: a row's cells from one measurement, and κ of a step
  (the update rule's own reading).
* :mod:`~eoskit.metrics.summary`: summaries of rows (onset, plateau, forcing identity,
  the worst diagnostic residuals).

Pure functions of values and rows: nothing here reads or writes a file or plots.
"""

from eoskit.metrics.columns import (
    MONITOR_COLUMNS,
    PRECOND,
    RUN_COLUMNS,
    eig_columns,
    monitor_columns,
    precond_columns,
    run_columns,
)
from eoskit.metrics.metric_rows import eig_cells, first_row, monitor_row, precond_cells, step_cells
from eoskit.metrics.summary import (
    ONSET_FRACTION,
    forcing_gap_curve,
    forcing_gap_slope,
    forcing_summary,
    monitor_summary,
    sharpness_series,
    summarize,
    summarize_diagnostics,
    summarize_series,
)

__all__ = [
    # columns
    "RUN_COLUMNS", "MONITOR_COLUMNS", "PRECOND", "run_columns", "monitor_columns",
    "eig_columns", "precond_columns",
    # rows
    "first_row", "monitor_row", "eig_cells", "precond_cells", "step_cells",
    # summaries
    "ONSET_FRACTION", "summarize", "summarize_series", "sharpness_series", "monitor_summary",
    "forcing_summary", "forcing_gap_curve", "forcing_gap_slope", "summarize_diagnostics",
]
