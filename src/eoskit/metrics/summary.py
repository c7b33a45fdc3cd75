"""Summaries of the typed rows of ``metrics.csv`` and ``diagnostics.csv``, for a run and a Monitor.

Pure functions of rows (as :func:`eoskit.store.read_rows` returns them): the
Edge-of-Stability onset, the plateau statistics after it, the post-onset
weighted mean of the effective curvature, and the worst diagnostic residuals;
and the whole run's forcing identity (docs/theory.md §3) from its tracker, with the
forcing gap curve and its log–log slope (the part of it that carries content).

Which sharpness series a summary is about: an adaptive rule's threshold is on
the preconditioned sharpness λ₁(P^{-1/2} H P^{-1/2}) (docs/theory.md §6), so
its onset and plateau are read off ``precond_sharpness``, not the raw ``sharpness``.

Example:
    >>> rows = [{"step": t, "loss": 1.0, "sharpness": v} for t, v in enumerate([1.0, 9.6, 9.8])]
    >>> s = summarize(rows, 10.0, "completed")
    >>> s["eos_onset_step"], s["sharpness_after_onset_max"]
    (1, 9.8)
    >>> from eoskit.optim import rule_class
    >>> sharpness_series(rule_class("adam")), sharpness_series(rule_class("gd"))
    ('precond_sharpness', 'sharpness')
    >>> series_rows([{"sharpness": 1.0, "precond_sharpness": 5.0}], "precond_sharpness")
    [{'sharpness': 5.0, 'precond_sharpness': 5.0}]
"""

from __future__ import annotations

import math
import statistics

from eoskit.metrics.columns import PRECOND

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


def sharpness_series(rule_cls) -> str:
    """The metrics column whose values the rule's threshold is about."""
    return PRECOND if rule_cls.preconditioned else "sharpness"


def series_rows(rows: list[dict], series: str) -> list[dict]:
    """Rows whose ``sharpness`` is ``series``, for :func:`summarize`."""
    if series == "sharpness":
        return rows
    return [{**r, "sharpness": r.get(series)} for r in rows]


def summarize_series(rows: list[dict], threshold: float, status: str, series: str) -> dict:
    """:func:`summarize` of the rows' ``series`` (``sharpness`` or ``precond_sharpness``),
    naming it in ``sharpness_series``."""
    return {**summarize(series_rows(rows, series), threshold, status), "sharpness_series": series}


def monitor_summary(rows: list[dict], status: str) -> dict:
    """A Monitor's summary: :func:`summarize` against the last row's threshold (none: no onset
    is claimed), of ``precond_sharpness`` when the rows have it (an adaptive optimiser)."""
    thresholds = [r["threshold"] for r in rows if r.get("threshold") is not None]
    threshold = thresholds[-1] if thresholds else math.inf
    series = PRECOND if any(PRECOND in r for r in rows) else "sharpness"
    summary = summarize_series(rows, threshold, status, series)
    if not thresholds:
        summary["threshold"] = None
    summary["steps"] = rows[-1]["step"] if rows else 0
    summary["measurements"] = len(rows)
    return summary


def forcing_summary(forcing, rows: list[dict] | None = None) -> dict:
    """The forcing identity over the run, from a :class:`ForcingTracker` (and the rows).

    ``forcing_weighted_gap`` is Σ w_t (2/η − κ_t) with w_t = |s_t|²/S_T and
    ``forcing_loss_drop_ratio`` is 2 (L_0 − L_T)/S_T. κ_t is *defined* from the
    loss change, so the two agree by algebra: ``forcing_bookkeeping_error``
    checks the arithmetic, not the theory. What carries content is how the
    ratio falls as S_T grows (L is bounded below, so it goes like 1/S_T and
    the weighted mean of κ is forced to 2/η): ``forcing_gap_slope``, the
    log–log slope of :func:`forcing_gap_curve` (None without ``rows``).

    The weighted mean of κ is also given relative to ``2/η``, the identity's
    reference for every update rule (not the rule's own threshold).
    """
    kappa = forcing.weighted_mean_kappa
    gap, ratio = forcing.lhs, forcing.rhs
    error = _relative_gap(gap, ratio)
    slope = forcing_gap_slope(*forcing_gap_curve(rows)) if rows is not None else None
    return {
        "eff_curvature_weighted_mean": kappa,
        "eff_curvature_weighted_mean_over_threshold": kappa / (2 / forcing.lr),
        "forcing_weighted_gap": gap, "forcing_loss_drop_ratio": ratio,
        "forcing_bookkeeping_error": error, "forcing_gap_slope": slope,
    }


def forcing_gap_curve(rows: list[dict]) -> tuple[list[float], list[float]]:
    """``(S_T, 2 (L_0 − L_T)/S_T)`` for T = 1, 2, … from ``metrics.csv`` rows.

    Row t holds ``loss`` = L_t and ``step_norm`` = |s_t|, so L_T is row T's loss
    and S_T = Σ_{t<T} |s_t|². The curve stops at the first row without a finite
    loss or step (a diverged run's tail).

    >>> rows = [{"loss": 1.0, "step_norm": 1.0}, {"loss": 0.5, "step_norm": 1.0},
    ...         {"loss": 0.5, "step_norm": 2.0}]
    >>> forcing_gap_curve(rows)
    ([1.0, 2.0], [1.0, 0.5])
    """
    total, sq, gap = 0.0, [], []
    loss_0 = None
    for prev, row in zip(rows, rows[1:], strict=False):  # row T after row T − 1
        s, loss_T = prev.get("step_norm"), row.get("loss")
        if not all(isinstance(v, (int, float)) and math.isfinite(v)
                   for v in (s, loss_T, prev.get("loss"))):
            break
        loss_0 = float(prev["loss"]) if loss_0 is None else loss_0
        total += float(s) ** 2
        if total > 0:
            sq.append(total)
            gap.append(2.0 * (loss_0 - float(loss_T)) / total)
    return sq, gap


def forcing_gap_fit_range(sq: list[float], gap: list[float]) -> list[int]:
    """Indices of the curve the slope is fitted on: the later half of T, positive gaps only
    (before that the loss is still falling fast and L_0 − L_T is far from its limit)."""
    return [i for i in range(len(sq) // 2, len(sq)) if gap[i] > 0]


def forcing_gap_slope(sq: list[float], gap: list[float]) -> float | None:
    """Least-squares slope of ``log gap`` on ``log S_T`` over :func:`forcing_gap_fit_range`;
    None with fewer than 3 points or no spread in S_T. −1 once the loss has levelled off.

    >>> s = [float(t) for t in range(1, 41)]
    >>> round(forcing_gap_slope(s, [3.0 / v for v in s]), 12)
    -1.0
    """
    idx = forcing_gap_fit_range(sq, gap)
    if len(idx) < 3:
        return None
    xs = [math.log(sq[i]) for i in idx]
    ys = [math.log(gap[i]) for i in idx]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


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
