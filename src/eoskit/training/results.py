"""A finished (or stopped) training run's results: its summary and its figures.

Both read back what the loop wrote into the run directory: the summary is
:mod:`eoskit.metrics.summary`'s of the rows of ``metrics.csv`` (and
``diagnostics.csv``) with the run's forcing identity and costs; the figures
are :mod:`eoskit.plots`'.
"""

from __future__ import annotations

from pathlib import Path

from eoskit import store
from eoskit.metrics.summary import (
    forcing_summary,
    sharpness_series,
    summarize_diagnostics,
    summarize_series,
)


def run_summary(out: Path, rule, forcing, state, status: str, diagnosed: bool) -> dict:
    """summary.json's contents from ``metrics.csv`` (and diagnostics.csv if ``diagnosed``)."""
    rows = store.read_rows(out / "metrics.csv")
    summary = summarize_series(rows, rule.threshold, status, sharpness_series(type(rule)))
    summary.update(forcing_summary(forcing, rows))
    summary.update({"hvps_total": state.hvps_total, "wall_time": state.elapsed})
    if diagnosed and (out / "diagnostics.csv").exists():
        summary["diagnostics"] = summarize_diagnostics(store.read_rows(out / "diagnostics.csv"))
    return summary


def plot_results(out: Path, lr: float) -> None:
    """The run's figures into ``out/plots``; a failure is a warning, never a lost run."""
    from eoskit.plots import plot_run

    try:
        plot_run(out)
        if (out / "diagnostics.csv").exists():
            from eoskit.plots.diagnostics_figures import plot_diagnostics

            plot_diagnostics(out / "diagnostics.csv", out / "plots", lr)
        if (out / "spectrum.csv").exists():
            from eoskit.plots.spectrum_figures import plot_spectrum

            plot_spectrum(out)
    except Exception as err:  # a figure must never lose a finished run
        print(f"eoskit: warning: plotting failed: {err}")
