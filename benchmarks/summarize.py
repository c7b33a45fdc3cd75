"""Markdown tables from ``eoskit bench sharpness --json`` rows.

Usage::

    .venv/bin/python benchmarks/summarize.py benchmarks/results/sharpness.json
"""

from __future__ import annotations

import sys

from eoskit.store import read_json


def _f(v, spec=".3g"):
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return format(v, spec)
    return str(v)


def markdown(rows: list[dict]) -> str:
    out = []
    cold = [r for r in rows if r["section"] == "cold"]
    if cold:
        out += ["### Cold top eigenvalue", "",
                "| setting | method | HVPs | seconds | rel. error |", "|---|---|---:|---:|---:|"]
        out += [f"| {r['setting']} | {r['method']} | {r['hvps']} | {_f(r['seconds'])} | "
                f"{_f(r['rel_error'], '.1e')} |" for r in cold]
        out.append("")
    costs = [r for r in rows if r["section"] == "costs"]
    if costs:
        out += ["### One gradient, one HVP", "",
                "| setting | method | ms per vector | × gradient |", "|---|---|---:|---:|"]
        out += [f"| {r['setting']} | {r['method']} | {_f(r['seconds'] * 1e3)} | "
                f"{_f(r.get('per_gradient'), '.2f')} |" for r in costs]
        out.append("")
    for sec, title in (("track", "Tracking every step (100 GD steps from the EoS point)"),
                       ("stream", "Streaming through the EoS phase")):
        rs = [r for r in rows if r["section"] == sec]
        if rs:
            out += [f"### {title}", "",
                    "| method | HVPs/step | s/step (median) | × GD step | max rel. error | "
                    "median rel. error |", "|---|---:|---:|---:|---:|---:|"]
            out += [f"| {r['method']} | {_f(r['hvps'])} | {_f(r['seconds'])} | "
                    f"{_f(r.get('per_gd_step'), '.2f')} | {_f(r['rel_error'], '.1e')} | "
                    f"{_f(r.get('median_rel_error'), '.1e')} |" for r in rs]
            out.append("")
    sc = [r for r in rows if r["section"] == "scaling"]
    if sc:
        out += ["### Scaling (float32, at initialisation)", "",
                "| axis | value | params | gradient ms | HVP ms | HVP/grad | tracked step ms "
                "(HVPs) |", "|---|---:|---:|---:|---:|---:|---:|"]
        keyed: dict = {}
        for r in sc:
            keyed.setdefault((r["axis"], r["value"]), {})[r["method"]] = r
        for (axis, value), d in keyed.items():
            g = d.get("gradient", {})
            h = d.get("eoskit HVP retained graph", {})
            t = d.get("eoskit tracked step (tol 1e-4)", {})
            out.append(f"| {axis} | {value} | {h.get('params', '—')} | "
                       f"{_f(g.get('seconds', 0) * 1e3)} | {_f(h.get('seconds', 0) * 1e3)} | "
                       f"{_f(h.get('per_gradient'), '.2f')} | {_f(t.get('seconds', 0) * 1e3)} "
                       f"({_f(t.get('hvps'))}) |")
        out.append("")
    goals = [r for r in rows if r["section"] == "goal"]
    if goals:
        out += ["### Goals", "", "| goal | setting | measured | target | met |",
                "|---|---|---:|---|---|"]
        out += [f"| {r['method']} | {r['setting']} | {_f(r['ratio'])} | {r['target']} | "
                f"{_f(r['met'])} |" for r in goals]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown(read_json(sys.argv[1])))
