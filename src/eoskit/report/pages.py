"""``report.html``: one self-contained page for a run directory or a sweep directory.

Figures are embedded as base64 PNG (``data:`` URIs) and the style sheet is
inline, so the file opens offline and can be mailed as it is; nothing on the
page refers to another file or to the network. A run's page has its summary,
its figures, the identities checked (only checks that can fail, read from
``diagnostics.csv``: κ from the loss change against κ from the Hessian
quadrature, the step recurrence, the localisation bound; the page says so
when the run has none), the forcing gap with its fitted slope, and its
configuration; a sweep's page has the sweep options, the
``runs.csv`` table and the sweep figures.

Example:
    >>> import tempfile
    >>> from eoskit.training.config import RunConfig
    >>> from eoskit.training.loop import train
    >>> out = tempfile.mkdtemp()
    >>> _ = train(RunConfig(dataset="digits", n_train=32, n_test=0, width=4, steps=3,
    ...                     dtype="float64", checkpoint_every=0), out, progress=False)
    >>> write_report(out).name
    'report.html'
"""

from __future__ import annotations

import base64
import html
import math
import tempfile
import time
from pathlib import Path

from eoskit import store
from eoskit.components import check_files
from eoskit.report import spectrum_section
from eoskit.report.flows_section import flows_dir, flows_figures, flows_medians

# The page reports how many of its figures the browser decoded (a check that needs no network).
_IMAGE_CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = document.getElementsByTagName("img"), ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; }
  }
  var el = document.getElementById("image-check");
  el.setAttribute("data-loaded", String(ok));
  el.setAttribute("data-total", String(imgs.length));
  el.textContent = ok + " of " + imgs.length + " figures rendered";
});
</script>"""

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; padding-bottom: .2em; }
.meta { color: #666; font-size: .9em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
.status { display: inline-block; padding: .05em .5em; border-radius: .8em; font-size: .85em; }
.completed { background: #dff3e2; } .diverged { background: #fdf0d5; }
.failed, .interrupted { background: #fadddd; } .running, .pending { background: #e6ecf7; }
.ok { color: #11772d; } .bad { color: #b3261e; }
figure { display: inline-block; vertical-align: top; margin: .5em 1em .5em 0; }
figure img { max-width: 520px; width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
"""

# checks in diagnostics.csv that can fail: column, what it compares. (The loss-change form
# and s_t = −η g(x_t) restate κ's definition and the update rule; the forcing identity's
# two sides are equal by algebra. None of those is listed as a check.)
IDENTITIES = [
    ("kappa_mismatch", "κ from the loss change = κ from the Hessian quadrature "
                       "∫2(1−τ) sᵀH(x+τs)s dτ/|s|² (docs/theory.md §3)"),
    ("recurrence_residual", "step recurrence s_{t+1} = s_t − η H̄ s_t, H̄ by quadrature (§2)"),
]


def write_report(path: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` for a run directory or a sweep directory; returns its path."""
    d = Path(path)
    if not d.is_dir():
        raise ValueError(f"{d} is not a directory")
    if (d / "runs.csv").exists() or (d / "sweep.json").exists():
        page = sweep_html(d)
    elif (d / "flow_config.json").exists():
        page = _page(f"eoskit flows report: {d.name}", [f"<h1>eoskit flows: {_e(d)}</h1>",
                                                         _flows_section(d)])
    elif (d / "config.json").exists():
        # a run's report names its model/data/loss files: refuse if they are no longer those
        check_files((_read_json(d / "config.json") or {}).get("components"))
        page = run_html(d)
    else:
        raise ValueError(f"{d} is neither an eoskit run directory (config.json) nor a sweep "
                         "directory (runs.csv)")
    target = Path(out) if out is not None else d / "report.html"
    store.atomic_write_bytes(target, page.encode("utf-8"))
    return target


# ---------------------------------------------------------------- a run
def run_html(run_dir: Path) -> str:
    run_dir = Path(run_dir)
    conf = _read_json(run_dir / "config.json")
    c = conf["config"]
    summary = _read_json(run_dir / "summary.json") or {}
    status = summary.get("status", "unknown")
    title = (f"{c['dataset']} · {c['model']} · {c['loss']} · {c['optimizer']} "
             f"η={c['lr']:g}")
    parts = [f"<h1>eoskit run: {_e(title)}</h1>",
             f"<p class='meta'>{_e(run_dir.resolve())} · {_status(status)} · "
             f"report written {_e(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>",
             "<p class='meta' id='image-check'>figures not checked</p>"]

    keys = [("status", "status"), ("steps", "steps recorded"), ("final_loss", "final train loss"),
            ("threshold", "stability threshold"), ("initial_sharpness", "initial sharpness"),
            ("final_sharpness", "final sharpness"), ("eos_onset_step", "EoS onset step"),
            ("sharpness_after_onset_median", "median sharpness after onset"),
            ("sharpness_after_onset_max", "max sharpness after onset"),
            ("sharpness_after_onset_median_over_threshold", "plateau median / threshold"),
            ("sharpness_after_onset_max_over_threshold", "plateau max / threshold"),
            ("eff_curvature_weighted_mean", "step-weighted mean κ"),
            ("eff_curvature_weighted_mean_over_threshold", "step-weighted mean κ / (2/η)"),
            ("forcing_gap_slope", "forcing gap log–log slope (−1: forced)"),
            ("hvps_total", "Hessian-vector products"), ("wall_time", "wall time (s)")]
    parts.append("<h2>Summary</h2>")
    parts.append(_kv_table([(label, summary.get(k)) for k, label in keys if k in summary]))

    parts.append("<h2>Figures</h2>")
    figs = _run_figures(run_dir)
    parts.append(_figures(figs) if figs else "<p>No figures (the run has no metrics yet).</p>")

    if spectrum_section.has_spectrum(run_dir):
        parts.append("<h2>The whole spectrum</h2>")
        parts.append(_figures(spectrum_section.spectrum_figures(run_dir))
                     + _kv_table(spectrum_section.spectrum_numbers(run_dir)))

    parts.append("<h2>Identities checked</h2>")
    parts.append(_identities(run_dir, c))

    parts.append("<h2>Forcing: the weighted mean of κ is pushed to 2/η</h2>")
    parts.append(_forcing(run_dir, summary))

    if flows_dir(run_dir) is not None:
        parts.append(_flows_section(flows_dir(run_dir)))

    parts.append("<h2>Configuration</h2>")
    parts.append(_kv_table(sorted(c.items())))
    meta = [(k, conf.get(k)) for k in ("threshold", "n_params", "n_train", "seed",
                                       "eoskit_version", "torch_version", "python_version")
            if k in conf]
    if conf.get("preprocessing"):
        meta.append(("preprocessing", conf["preprocessing"]))
    parts.append("<h3>Recorded with the run</h3>")
    parts.append(_kv_table(meta))
    return _page(f"eoskit run report: {title}", parts)


def _flows_section(d: Path) -> str:
    """GD beside gradient flow and the central flow (``eoskit flow``): figures, medians."""
    figs = flows_figures(d)
    return ("<h2>Reference flows: gradient flow and the central flow</h2>"
            + (_figures(figs) if figs else "<p>No flow figures.</p>")
            + _kv_table(flows_medians(d)))


def _run_figures(run_dir: Path) -> list[tuple[str, bytes]]:
    plots = run_dir / "plots"
    names = ["loss.png", "sharpness.png", "eff_curvature.png"]  # forcing_gap.png: its section
    if not all((plots / n).exists() for n in names + [_FORCING_PNG]) and (
            run_dir / "metrics.csv").exists():
        try:
            from eoskit.plots import plot_run

            plot_run(run_dir)
        except Exception:  # an empty or torn metrics file: show what there is
            pass
    figs = [(n.removesuffix(".png").replace("_", " "), (plots / n).read_bytes())
            for n in names if (plots / n).exists()]
    # diagnostics figures are drawn in the identities section, beside their table
    figs += [(p.stem.replace("_", " "), p.read_bytes()) for p in sorted(plots.glob("*.png"))
             if p.name not in names + [_FORCING_PNG] + [n for n, _ in spectrum_section.FIGURES]
             and not p.name.startswith("diag_")
             ] if plots.exists() else []
    return figs


def _identities(run_dir: Path, c: dict) -> str:
    diag_path = run_dir / "diagnostics.csv"
    if not diag_path.exists():
        return ("<p class='bad'>No identity that can fail was checked in this run: it has no "
                "<code>diagnostics.csv</code>. Rerun it in float64 with "
                "<code>diagnose_every</code> set to compare κ from the loss change with κ from "
                "the Hessian quadrature, check the step recurrence and the localisation bound."
                "</p>")
    from eoskit.metrics.summary import summarize_diagnostics

    rows = store.read_rows(diag_path)
    d = summarize_diagnostics(rows)
    out = [f"<p>Edge-coupling diagnostics at {d['diagnosed_steps']} steps "
           f"({d['non_smooth_steps']} flagged non-smooth).</p>"]
    trs = ["<tr><th>check</th><th>column</th><th>worst (smooth steps)</th>"
           "<th>worst (all steps)</th></tr>"]
    for col, what in IDENTITIES:
        trs.append(f"<tr><td>{_e(what)}</td><td><code>{col}</code></td>"
                   f"<td class='num'>{_fmt(d.get(f'max_{col}'))}</td>"
                   f"<td class='num'>{_fmt(d.get(f'max_{col}_all'))}</td></tr>")
    margins = [m for m in (r.get("bound_margin") for r in rows)
               if isinstance(m, (int, float)) and math.isfinite(m)]
    checked = sum(isinstance(r.get("bound_holds"), bool) for r in rows)
    trs.append("<tr><td>localisation bound κ ≤ λ_max(x+τ̃s) (§4): violations of "
               f"{checked}; smallest margin λ_max − κ in the last column</td>"
               "<td><code>bound_holds</code></td>"
               f"<td class='num'>{d['bound_violations']}</td>"
               f"<td class='num'>{_fmt(min(margins) if margins else None)}</td></tr>")
    out.append("<table>" + "".join(trs) + "</table>")
    try:
        from eoskit.plots.diagnostics_figures import plot_diagnostics

        with tempfile.TemporaryDirectory() as tmp:
            paths = plot_diagnostics(diag_path, tmp, c["lr"])
            figs = [(Path(p).stem.replace("_", " "), Path(p).read_bytes()) for p in paths]
        out.append(_figures(figs))
    except Exception as err:  # figures are a bonus; the table is the record
        out.append(f"<p class='bad'>diagnostics figures failed: {_e(err)}</p>")
    return "\n".join(out)


_FORCING_PNG = "forcing_gap.png"


def _forcing(run_dir: Path, summary: dict) -> str:
    """The forcing gap figure and slope; the identity's two sides only as bookkeeping."""
    from eoskit.metrics.summary import forcing_gap_curve, forcing_gap_slope

    png = run_dir / "plots" / _FORCING_PNG
    try:
        rows = store.read_rows(run_dir / "metrics.csv")
    except (OSError, ValueError):  # absent or torn: the figure section says what there is
        rows = []
    slope = forcing_gap_slope(*forcing_gap_curve(rows))
    out = ["<p>Σ w_t (2/η − κ_t) = 2 (L_0 − L_T)/S_T with w_t = |s_t|²/S_T, "
           "S_T = Σ|s_t|². κ_t is defined from the loss change, so the two sides are equal by "
           "algebra; what the theory adds is that L is bounded below, so the right side falls "
           "like 1/S_T (log–log slope −1) and the weighted mean of κ is forced to 2/η.</p>"]
    out.append(_kv_table([
        ("fitted log–log slope (later half of the run)", slope),
        ("2 (L_0 − L_T)/S_T at the end", summary.get("forcing_loss_drop_ratio")),
        ("bookkeeping: |left − right|/max (equal by construction)",
         summary.get("forcing_bookkeeping_error")),
    ]))
    if png.exists():
        out.append(_figures([("forcing gap", png.read_bytes())]))
    return "\n".join(out)


# ---------------------------------------------------------------- a sweep
def sweep_html(sweep_dir: Path) -> str:
    sweep_dir = Path(sweep_dir)
    meta = _read_json(sweep_dir / "sweep.json") or {}
    rows = store.read_rows(sweep_dir / "runs.csv") if (sweep_dir / "runs.csv").exists() else []
    counts: dict[str, int] = {}
    for r in rows:
        status = r.get("status") or ""
        counts[status] = counts.get(status, 0) + 1
    parts = [f"<h1>eoskit sweep: {_e(sweep_dir.name)}</h1>",
             f"<p class='meta'>{_e(sweep_dir.resolve())} · {len(rows)} runs: "
             + ", ".join(f"{n} {_status(s)}" for s, n in counts.items())
             + f" · report written {_e(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>",
             "<p class='meta' id='image-check'>figures not checked</p>"]
    parts.append("<h2>Figures</h2>")
    plots = sweep_dir / "plots"
    names = ["sharpness.png", "plateau.png"]
    if rows and not all((plots / n).exists() for n in names):
        try:
            from eoskit.plots.sweep_figures import plot_sweep
            from eoskit.sweep.index import indexed_runs

            plot_sweep(sweep_dir, indexed_runs(sweep_dir))
        except Exception:
            pass
    figs = [(n.removesuffix(".png"), (plots / n).read_bytes()) for n in names
            if (plots / n).exists()]
    parts.append(_figures(figs) if figs else "<p>No figures yet.</p>")
    parts.append("<h2>Runs (runs.csv)</h2>")
    if rows:
        parts.append(_runs_table(rows))
    else:
        parts.append("<p>No runs.csv yet.</p>")
    if meta:
        parts.append("<h2>Sweep configuration</h2><h3>[run]</h3>")
        parts.append(_kv_table(sorted(meta.get("run", {}).items())))
        parts.append("<h3>[grid]</h3>")
        parts.append(_kv_table(list(meta.get("grid", {}).items())))
        if meta.get("eoskit_version"):
            parts.append(f"<p class='meta'>eoskit {_e(meta['eoskit_version'])}</p>")
    return _page(f"eoskit sweep report: {sweep_dir.name}", parts)


def _runs_table(rows: list[dict]) -> str:
    """runs.csv as a table: status as a badge, the run directory by its name."""
    cols = list(rows[0])
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            if c == "status":
                cells.append(f"<td>{_status(v)}</td>")
            elif c == "run_dir":
                cells.append(f"<td><code>{_e(Path(v or '').name)}</code></td>")
            else:
                cells.append(_td(v))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return ("<div class='scroll'><table><tr>" + head + "</tr>" + "".join(body)
            + "</table></div>")


# ---------------------------------------------------------------- HTML helpers
def _page(title: str, parts: list[str]) -> str:
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
            f"{_IMAGE_CHECK}\n</body>\n</html>\n")


def _figures(figs: list[tuple[str, bytes]]) -> str:
    out = []
    for caption, png in figs:
        b64 = base64.b64encode(png).decode("ascii")
        out.append(f"<figure><img alt='{_e(caption)}' src='data:image/png;base64,{b64}'>"
                   f"<figcaption>{_e(caption)}</figcaption></figure>")
    return "<div>" + "".join(out) + "</div>"


def _kv_table(items) -> str:
    trs = "".join(f"<tr><th>{_e(k)}</th>{_td(v)}</tr>" for k, v in items)
    return f"<table>{trs}</table>"


def _td(v) -> str:
    return f"<td class='{'num' if _is_num(v) else ''}'>{_fmt(v)}</td>"


def _status(s) -> str:
    s = str(s)
    return f"<span class='status {_e(s)}'>{_e(s)}</span>"


def _fmt(v) -> str:
    """A value as page text: the CSV cell text of :func:`eoskit.store.format_cell`
    (lists and dicts as JSON, ``true``/``false``), except that finite floats show
    6 significant digits and an empty cell (None, NaN) shows as a dash.

    >>> [_fmt(v) for v in (None, True, 0.1234567891, 3, [0, 1], {"a": None}, "<b>")]
    ['—', 'true', '0.123457', '3', '[0, 1]', '{&quot;a&quot;: null}', '&lt;b&gt;']
    """
    if isinstance(v, float) and math.isfinite(v):
        return _e(f"{v:.6g}")  # display precision; the files keep every digit
    return _e(store.format_cell(v)) or "—"


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def _read_json(path: Path):
    """A JSON file of the directory: None when absent; unreadable is bad input (never a
    report that silently says "unknown")."""
    if not path.exists():
        return None
    try:
        data = store.read_json(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is unreadable ({type(err).__name__}: {err}); restore it "
                         "or rerun; the report was not written") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object; the report was not written")
    return data
