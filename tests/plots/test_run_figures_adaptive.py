"""A run's figures for adaptive runs: both sharpness series and the preconditioned threshold."""

from __future__ import annotations

from eoskit.plots.run_figures import sharpness_figure


def _lines(fig):
    ax = fig.axes[0]
    return ax, {ln.get_label(): list(ln.get_ydata()) for ln in ax.get_lines()}


def test_adaptive_sharpness_figure_draws_both_series_and_the_threshold():
    rows = [{"step": t, "sharpness": 10.0 + t, "precond_sharpness": 1e4 * (t + 1)}
            for t in range(0, 50, 10)]
    ax, lines = _lines(sharpness_figure(rows, {"optimizer": "adam"}, 3.8e4, "t"))
    pre = next(v for k, v in lines.items() if k.startswith("preconditioned"))
    raw = next(v for k, v in lines.items() if k.startswith("sharpness"))
    thr = next(v for k, v in lines.items() if "threshold" in k)
    assert pre == [1e4 * (t + 1) for t in range(0, 50, 10)]
    assert raw == [10.0 + t for t in range(0, 50, 10)]
    assert thr == [3.8e4, 3.8e4] and ax.get_yscale() == "log"


def test_gd_sharpness_figure_is_unchanged():
    rows = [{"step": t, "sharpness": 1.0 + t} for t in range(3)]
    ax, lines = _lines(sharpness_figure(rows, {"optimizer": "gd"}, 20.0, "t"))
    assert len(lines) == 2 and ax.get_yscale() == "linear"
    assert not any(k.startswith("preconditioned") for k in lines)
