"""The issue's three goals, the costs and the Σ comparison, read off a flows folder.

Usage::

    .venv/bin/python benchmarks/flows_goals.py runs/flows-mnist-demo

Prints markdown: the post-onset loss error (for each window), the central flow's
sharpness against 2/η, dist(GD, central) against dist(GD, gradient) at the end, the
cost per unit time in GD steps, and X against GD's measured oscillation.
"""

from __future__ import annotations

import sys
from pathlib import Path

from eoskit.store import read_json


def _f(v, spec=".3g") -> str:
    return "—" if v is None else format(v, spec)


def goals(folder: Path) -> str:
    s = read_json(folder / "summary.json")
    fl, cost = s["flows"], s.get("cost", {})
    central, gradient, gd = fl.get("central", {}), fl.get("gradient", {}), fl["gd"]
    err = central.get("median_rel_loss_error_after_onset")
    sharp = central.get("median_sharpness_over_threshold_after_onset")
    d_c, d_g = central.get("final_dist_to_gd"), gradient.get("final_dist_to_gd")
    ratio = d_c / d_g if d_c is not None and d_g else None
    out = [f"status {s['status']}, onset step {s['eos_onset_step']}, last step {s['last_step']}",
           "", "| goal | measured | met |", "|---|---|---|",
           f"| median loss error after onset ≤ 5% (window of the run) | {_f(err)} "
           f"| {'yes' if err is not None and err <= 0.05 else 'no'} |",
           f"| central sharpness within 1% of 2/η | median {_f(sharp, '.5f')}, max "
           f"{_f(central.get('max_sharpness_over_threshold_after_onset'), '.5f')} | "
           f"{'yes' if sharp is not None and abs(sharp - 1) <= 0.01 else 'no'} |",
           f"| dist(GD, central) ≤ ⅓ dist(GD, gradient) at the end | {_f(d_c)} vs {_f(d_g)} "
           f"(ratio {_f(ratio)}) | {'yes' if ratio is not None and ratio <= 1 / 3 else 'no'} |",
           "", "| flow | loss error, window 21 | 51 | 101 |", "|---|---|---|---|"]
    for name, by in (s.get("loss_error_by_window") or {}).items():
        out.append(f"| {name} | {_f(by.get('21'))} | {_f(by.get('51'))} | {_f(by.get('101'))} |")
    out += ["", "| track | seconds / unit time | GD steps / unit time | HVPs | d3 calls |",
            "|---|---|---|---|---|"]
    for name, c in cost.items():
        out.append(f"| {name} | {_f(c.get('seconds_per_unit_time'))} | "
                   f"{_f(c.get('cost_in_gd_steps'))} | {c.get('hvps')} | {c.get('d3_calls')} |")
    out += ["", "| after onset | median | mean |", "|---|---|---|",
            f"| central: top eigenvalue of X | {_f(central.get('median_sigma_top_after_onset'))}"
            " | — |",
            f"| gd: (u₁ᵀΔx)²/4 | {_f(gd.get('median_half_amplitude_sq_after_onset'))} | — |",
            f"| central: trace X | {_f(central.get('median_trace_sigma_after_onset'))} | "
            f"{_f(central.get('mean_trace_sigma_after_onset'))} |",
            f"| gd: Σᵢ (uᵢᵀΔx)²/4 | "
            f"{_f(gd.get('median_trace_half_amplitude_sq_after_onset'))} | "
            f"{_f(gd.get('mean_trace_half_amplitude_sq_after_onset'))} |"]
    return "\n".join(out)


if __name__ == "__main__":
    print(goals(Path(sys.argv[1])))
