"""The benchmark's goals, each a measured number against its target (``section: "goal"``).

Targets:

* cold top eigenvalue to 1e-6: the fastest peer that reaches that accuracy
  takes at least ``COLD_SPEEDUP`` (2) times eoskit's seconds;
* tracking every step (``TRACKING_TARGETS``): at most 4 HVPs and 7 plain GD
  steps' time per step within 1e-4 (eoskit-track), at most 1.5 HVPs and 2.5
  GD steps within 1e-2 (eoskit-stream);
* one HVP on the retained graph costs at most ``HVP_PER_GRADIENT`` (1.4) gradients;
* seconds grow linearly in the training set size and the parameter count
  (log-log slope ~1; reported, not judged).

>>> rows = [{"section": "costs", "method": "eoskit HVP retained graph", "setting": "s",
...          "per_gradient": 1.2}]
>>> [(g["ratio"], g["target"], g["met"]) for g in goals(rows)]
[(1.2, '<= 1.4', True)]
"""

from __future__ import annotations

from eoskit.bench.rows import row
from eoskit.bench.scaling import loglog_slope
from eoskit.bench.setting import REL_ACCURACY_COLD, STREAM_TOL, TRACK_TOL
from eoskit.bench.tracking import STREAM_NAME, TRACK_NAME

COLD_SPEEDUP = 2.0
HVP_PER_GRADIENT = 1.4
# (section, method, HVPs per step, seconds per plain GD step, max relative error)
TRACKING_TARGETS = (
    ("track", TRACK_NAME, 4.0, 7.0, TRACK_TOL),
    ("track", STREAM_NAME, 1.5, 2.5, STREAM_TOL),
    ("stream", STREAM_NAME, 1.5, 2.5, STREAM_TOL),
)
SCALING_METHODS = ("eoskit HVP retained graph", "eoskit tracked step (tol 1e-4)", "gradient")


def goal(name: str, ratio, target: str, met, setting: str, **extra) -> dict:
    return row("goal", name, setting, None, None, None, ratio=ratio, target=target,
               met=bool(met) if met is not None else None, **extra)


def _cold_goals(rows: list[dict]) -> list[dict]:
    out = []
    cold = [r for r in rows if r["section"] == "cold"]
    for label in sorted({r["setting"] for r in cold}):
        rs = [r for r in cold if r["setting"] == label]
        ours = next((r for r in rs if r["method"] == "eoskit-cold"), None)
        if ours is None:
            continue
        peers_all = [r for r in rs if r.get("peer")]
        peers_ok = [r for r in peers_all if r["rel_error"] is not None
                    and r["rel_error"] <= REL_ACCURACY_COLD]
        if peers_ok:
            best = min(peers_ok, key=lambda r: r["seconds"])
            ratio = best["seconds"] / ours["seconds"]
            met = ratio >= COLD_SPEEDUP and (ours["rel_error"] or 0) <= REL_ACCURACY_COLD
            out.append(goal("cold top eigenvalue to 1e-6: best peer seconds / eoskit seconds",
                            ratio, f">= {COLD_SPEEDUP:g}", met, label,
                            best_peer=best["method"], eoskit_rel_error=ours["rel_error"]))
        if peers_all:
            fastest = min(peers_all, key=lambda r: r["seconds"])
            out.append(goal("cold: fastest peer at any accuracy / eoskit",
                            fastest["seconds"] / ours["seconds"], "(info)", None, label,
                            peer=fastest["method"], peer_rel_error=fastest["rel_error"]))
    return out


def _tracking_goals(rows: list[dict]) -> list[dict]:
    out = []
    for sec, name, max_hvps, max_steps, tol in TRACKING_TARGETS:
        short = name.split(" ")[0]
        for r in rows:
            if r["section"] != sec or r["method"] != name:
                continue
            out.append(goal(f"{sec}: {short} HVPs per step", r["hvps"], f"<= {max_hvps}",
                            r["hvps"] <= max_hvps, r["setting"]))
            out.append(goal(f"{sec}: {short} seconds per step / plain GD step",
                            r["per_gd_step"], f"<= {max_steps}", r["per_gd_step"] <= max_steps,
                            r["setting"], mean_ratio=r["mean_per_gd_step"]))
            out.append(goal(f"{sec}: {short} max relative error", r["rel_error"],
                            f"<= {tol:g}", r["rel_error"] <= tol, r["setting"]))
    return out


def _cost_goals(rows: list[dict]) -> list[dict]:
    return [goal("HVP / gradient (retained graph)", r["per_gradient"],
                 f"<= {HVP_PER_GRADIENT}", r["per_gradient"] <= HVP_PER_GRADIENT, r["setting"])
            for r in rows
            if r["section"] == "costs" and r["method"] == "eoskit HVP retained graph"]


def _scaling_goals(rows: list[dict]) -> list[dict]:
    out = []
    sc = [r for r in rows if r["section"] == "scaling"]
    for axis in ("n", "width"):
        for method in SCALING_METHODS:
            s = loglog_slope(sc, axis, method)
            if s is not None:
                out.append(goal(f"scaling in {axis}: log-log slope of seconds ({method})", s,
                                "~1 (linear)", None, "scaling"))
            s = loglog_slope(sc, axis, method, x="params") if axis == "width" else None
            if s is not None:
                out.append(goal("scaling in parameter count (width axis): log-log slope "
                                f"({method})", s, "~1 (linear)", None, "scaling"))
    return out


def goals(rows: list[dict]) -> list[dict]:
    """Every goal measured on ``rows``, met or not (``met`` None: reported, not judged)."""
    return _cold_goals(rows) + _tracking_goals(rows) + _cost_goals(rows) + _scaling_goals(rows)
