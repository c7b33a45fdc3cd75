"""Run summaries from the typed rows of ``metrics.csv`` and ``diagnostics.csv``.

Pure functions of rows (as :func:`eoskit.store.read_rows` returns them): the
Edge-of-Stability onset, the plateau statistics after it, the post-onset
weighted mean of the effective curvature, and the worst diagnostic residuals;
and the whole run's forcing identity (docs/theory.md §3) from its tracker.

Example:
    >>> rows = [{"step": t, "loss": 1.0, "sharpness": v} for t, v in enumerate([1.0, 9.6, 9.8])]
    >>> s = summarize(rows, 10.0, "completed")
    >>> s["eos_onset_step"], s["sharpness_after_onset_max"]
    (1, 9.8)
"""

from __future__ import annotations

import math
import statistics

ONSET_FRACTION = 0.95  # onset: first measured sharpness ≥ this fraction of the threshold


def summarize(rows: list[dict], threshold: float, status: str) -> dict:
    """The run summary fields derived from ``metrics.csv`` rows."""
    sharp = [(int(r["step"]), float(r["sharpness"])) for r in rows
             if r.get("sharpness") is not None]
    onset = next((t for t, v in sharp if v >= ONSET_FRACTION * threshold), None)
    after = [v for t, v in sharp if onset is not None and t >= onset]
    losses = [float(r["loss"]) for r in rows if r.get("loss") is not None]
    med = statistics.median(after) if after else None
    mx = max(after) if after else None
    # the forcing identity's weighted mean of κ, restricted to the steps after onset
    num = den = 0.0
    for r in rows:
        if onset is not None and int(r["step"]) >= onset and r.get("eff_curvature") is not None \
                and r.get("step_norm"):
            k, s2 = float(r["eff_curvature"]), float(r["step_norm"]) ** 2
            if math.isfinite(k):
                num, den = num + s2 * k, den + s2
    kappa_after = num / den if den > 0 else None
    return {
        "status": status,
        "steps": len(rows),
        "final_loss": losses[-1] if losses else None,
        "threshold": threshold,
        "initial_sharpness": sharp[0][1] if sharp else None,
        "final_sharpness": sharp[-1][1] if sharp else None,
        "eos_onset_step": onset,
        "sharpness_after_onset_median": med,
        "sharpness_after_onset_max": mx,
        "sharpness_after_onset_median_over_threshold": None if med is None else med / threshold,
        "sharpness_after_onset_max_over_threshold": None if mx is None else mx / threshold,
        "eff_curvature_weighted_mean_after_onset": kappa_after,
        "eff_curvature_weighted_mean_after_onset_over_threshold":
            None if kappa_after is None else kappa_after / threshold,
    }


def forcing_summary(forcing) -> dict:
    """The forcing identity's two sides over the run, from a :class:`ForcingTracker`.

    The weighted mean of κ is also given relative to ``2/η``, the identity's
    reference for every update rule (not the rule's own threshold).
    """
    kappa = forcing.weighted_mean_kappa
    return {
        "eff_curvature_weighted_mean": kappa,
        "eff_curvature_weighted_mean_over_threshold": kappa / (2 / forcing.lr),
        "forcing_lhs": forcing.lhs, "forcing_rhs": forcing.rhs,
        "forcing_relative_error": _relative_gap(forcing.lhs, forcing.rhs),
    }


def _relative_gap(a: float, b: float) -> float:
    """``|a − b| / max(|a|, |b|)``; NaN unless both are finite."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.nan
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def summarize_diagnostics(rows: list[dict]) -> dict:
    """Worst residuals over the diagnosed steps (smooth steps only, and all)."""
    def worst(name, only_smooth):
        vals = [float(r[name]) for r in rows if r.get(name) is not None
                and (not only_smooth or r.get("smooth_flag") is not False)]
        vals = [v for v in vals if math.isfinite(v)]
        return max(vals) if vals else None

    names = ["recurrence_residual", "loss_change_residual", "kappa_mismatch", "grad_x_residual"]
    out = {"diagnosed_steps": len(rows),
           "non_smooth_steps": sum(r.get("smooth_flag") is False for r in rows)}
    for n in names:
        out[f"max_{n}"] = worst(n, True)
        out[f"max_{n}_all"] = worst(n, False)
    out["bound_violations"] = sum(r.get("bound_holds") is False for r in rows)
    return out
