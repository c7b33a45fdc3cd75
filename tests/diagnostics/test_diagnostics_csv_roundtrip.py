"""A diagnostics row survives the run's CSV: written by store.CsvLog, read by store.read_rows,
and a non-smooth step is marked by the diagnostics figures.

The old plot had its own reader that knew ``True``/``False`` only; CsvLog writes
``true``/``false``, so every step read back looked smooth and none was ever marked.
"""

from __future__ import annotations

import subprocess
import sys

import matplotlib.pyplot as plt
import torch

from eoskit import store
from eoskit.diagnostics import DIAGNOSTIC_COLUMNS, diagnose_step
from eoskit.objective import FunctionObjective
from eoskit.plots.diagnostics_figures import (
    BAND_GID,
    MARKER_GID,
    diagnostics_figures,
    non_smooth_steps,
    plot_diagnostics,
)

LR = 0.3
STEPS = (0, 5, 10)  # not the row indices: the mark must sit at the written step
ROUGH = 5


def _diagnosed_rows() -> list[dict]:
    """Three GD steps on a quartic (smooth to rounding), the middle one flagged as a run
    would flag a kink."""
    obj = FunctionObjective(lambda x: (x ** 4).sum() / 12 + (x ** 2).sum(), dim=2)
    x = torch.tensor([0.5, -0.3], dtype=torch.float64)
    rows = []
    for t in STEPS:
        s = -LR * obj.grad(x)
        row = {"step": t, **diagnose_step(obj, x, s, -LR * obj.grad(x + s), LR, None, None)}
        assert row["smooth_flag"] is True and row["bound_holds"] is True
        rows.append(row)
        x = x + s
    rows[1].update(smooth_flag=False, bound_holds=False)
    return rows


def _write(path, rows) -> None:
    log = store.CsvLog(path, DIAGNOSTIC_COLUMNS)  # exactly as train.py writes diagnostics.csv
    for row in rows:
        log.write(row)
    log.close()


def _gid_artists(fig, gid):
    return [a for a in fig.findobj() if a.get_gid() == gid]


def test_non_smooth_row_reads_back_non_smooth(tmp_path):
    path = tmp_path / "diagnostics.csv"
    _write(path, _diagnosed_rows())
    back = store.read_rows(path)
    assert [r["step"] for r in back] == list(STEPS)
    assert [r["smooth_flag"] for r in back] == [True, False, True]
    assert [r["bound_holds"] for r in back] == [True, False, True]
    assert non_smooth_steps(path).tolist() == [ROUGH]


def test_plot_marks_the_non_smooth_step_only(tmp_path):
    path = tmp_path / "diagnostics.csv"
    _write(path, _diagnosed_rows())
    figs = diagnostics_figures(path, LR)
    try:
        markers = _gid_artists(figs["diag_curvatures"], MARKER_GID)
        assert len(markers) == 1
        assert markers[0].get_xdata().tolist() == [ROUGH]
        bands = _gid_artists(figs["diag_residuals"], BAND_GID)
        assert [band.get_xdata()[0] for band in bands] == [ROUGH]
    finally:
        for fig in figs.values():
            plt.close(fig)
    written = plot_diagnostics(path, tmp_path / "plots", LR)
    assert [p.name for p in written] == ["diag_curvatures.png", "diag_localisation.png",
                                         "diag_residuals.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_smooth_rows_are_not_marked(tmp_path):
    rows = _diagnosed_rows()
    rows[1].update(smooth_flag=True)
    path = tmp_path / "diagnostics.csv"
    _write(path, rows)
    assert non_smooth_steps(path).tolist() == []
    figs = diagnostics_figures(path, LR)
    try:
        assert not _gid_artists(figs["diag_curvatures"], MARKER_GID)
        assert not _gid_artists(figs["diag_residuals"], BAND_GID)
    finally:
        for fig in figs.values():
            plt.close(fig)


def test_diagnostics_import_is_matplotlib_free():
    code = "import sys, eoskit.diagnostics; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
