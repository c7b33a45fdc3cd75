"""What a flows run says once it ends: per flow, medians after the Edge-of-Stability onset.

:func:`summarize_flows` reads the recorded rows (``flows.csv``): the onset is GD's first
sharpness at ≥ 0.95·2/η (with the central flow's constraint active), and each flow's
predicted loss, distance to GD and sharpness are summarised after it.
:func:`loss_error_by_window` compares each flow's predicted loss with GD's raw per-step
losses (``gd_steps.csv``) averaged over centred windows.

Example:
    >>> rows = [{"step": 0, "flow": "gd", "sharpness": 2.0, "predicted_loss": 1.0,
    ...          "dist_to_gd": 0.0, "half_amplitude_sq": None}]
    >>> summarize_flows(rows, threshold=2.0, status="completed")["eos_onset_step"]
    0
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from eoskit.metrics.summary import ONSET_FRACTION

WINDOWS = (21, 51, 101)  # the loss error is also summarised for these centred windows


def summarize_flows(rows: list[dict], threshold: float, status: str) -> dict:
    """Post-onset medians per flow.

    Onset: the first recorded step where GD's sharpness is ≥ 0.95 · 2/η and, when
    the central flow runs, its X is active (an initial sharpness near 2/η that
    GD's early transient pulls back down is not yet the Edge of Stability).
    """
    gd = {r["step"]: r for r in rows if r["flow"] == "gd"}
    active = {r["step"]: (r["trace_sigma"] or 0) > 0 for r in rows if r["flow"] == "central"}
    onset = next((t for t, r in sorted(gd.items())
                  if r["sharpness"] >= ONSET_FRACTION * threshold and active.get(t, True)),
                 None)
    last = max(gd) if gd else None
    out = {"status": status, "threshold": threshold, "eos_onset_step": onset,
           "last_step": last, "flows": {}}
    for name in sorted({r["flow"] for r in rows}):
        mine = [r for r in rows if r["flow"] == name and r["step"] in gd]
        after = [r for r in mine if onset is not None and r["step"] >= onset]
        rel = [abs(r["predicted_loss"] - gd[r["step"]]["predicted_loss"])
               / gd[r["step"]]["predicted_loss"] for r in after]
        out["flows"][name] = {
            "median_rel_loss_error_after_onset": _median(rel),
            "median_dist_to_gd_after_onset": _median([r["dist_to_gd"] for r in after]),
            "final_dist_to_gd": mine[-1]["dist_to_gd"] if mine else None,
            "median_sharpness_over_threshold_after_onset":
                _median([r["sharpness"] / threshold for r in after]),
            "max_sharpness_over_threshold_after_onset":
                max((r["sharpness"] / threshold for r in after), default=None),
        }
    central = [r for r in rows if r["flow"] == "central" and r["step"] in gd
               and onset is not None and r["step"] >= onset]
    if central:
        out["flows"]["central"]["median_sigma_top_after_onset"] = _median(
            [r["sigma_top"] for r in central])
        out["flows"]["gd"]["median_half_amplitude_sq_after_onset"] = _median(
            [gd[r["step"]]["half_amplitude_sq"] for r in central])
        # the oscillation's size on all tracked directions, median and time average
        sig = [r["trace_sigma"] for r in central]
        amp = [gd[r["step"]].get("trace_half_amplitude_sq") for r in central]
        out["flows"]["central"]["mean_trace_sigma_after_onset"] = _mean(sig)
        out["flows"]["central"]["median_trace_sigma_after_onset"] = _median(sig)
        out["flows"]["gd"]["mean_trace_half_amplitude_sq_after_onset"] = _mean(amp)
        out["flows"]["gd"]["median_trace_half_amplitude_sq_after_onset"] = _median(amp)
    return out


def loss_error_by_window(rows: list[dict], gd_steps: list[dict], onset: int | None,
                         windows: tuple[int, ...] = WINDOWS) -> dict:
    """Median |predicted − GD smoothed| / GD smoothed after onset, per flow and window.

    GD's loss is averaged over each centred ``window`` of its raw per-step losses
    (cut at the run's ends), so how the goal depends on the window is read off one run.
    """
    if onset is None or not gd_steps:
        return {}
    ordered = sorted(gd_steps, key=lambda r: r["step"])
    if [r["step"] for r in ordered] != list(range(len(ordered))):
        raise ValueError("loss_error_by_window needs GD's every step from step 0")
    raw = np.array([r["loss"] for r in ordered])
    csum = np.concatenate([[0.0], np.cumsum(raw)])
    out: dict = {}
    for w in windows:
        h = w // 2
        for r in rows:
            t = r["step"]
            if r["flow"] == "gd" or t < onset or t >= len(raw):
                continue
            lo, hi = max(0, t - h), min(len(raw), t + h + 1)
            smooth = (csum[hi] - csum[lo]) / (hi - lo)
            out.setdefault(r["flow"], {}).setdefault(str(w), []).append(
                abs(r["predicted_loss"] - smooth) / smooth)
    return {f: {w: _median(v) for w, v in ws.items()} for f, ws in out.items()}


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else None


def _median(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(vals) if vals else None
