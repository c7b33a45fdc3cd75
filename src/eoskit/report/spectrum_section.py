"""What ``eoskit report`` shows of a run's spectrum (``--spectrum-every``): two figures, numbers.

The figures are :mod:`eoskit.plots.spectrum_figures`' (drawn here if the run
stopped before drawing them); the table has the first and last measurement's
row of ``spectrum.csv`` and the products one measurement spent on average.
"""

from __future__ import annotations

from pathlib import Path

from eoskit import store

FIGURES = (("spectrum.png", "spectrum: the Hessian's SLQ density through training (log scale), "
            "2/η dashed, the tracked λ₁, the Gauss–Newton top and λ_min over it"),
           ("layers.png", "layers: each module's block λ₁ against step"))
SHOWN = ("trace", "lambda_min", "gn_top", "remainder_top", "mass_above_threshold")


def has_spectrum(run_dir: Path) -> bool:
    return (Path(run_dir) / "spectrum.csv").is_file()


def spectrum_figures(run_dir: Path) -> list[tuple[str, bytes]]:
    """(caption, PNG) of both figures, drawing them first when missing."""
    plots = Path(run_dir) / "plots"
    if not all((plots / name).is_file() for name, _ in FIGURES):
        try:
            from eoskit.plots.spectrum_figures import plot_spectrum

            plot_spectrum(run_dir)
        except Exception:  # an empty or torn table: show what there is
            pass
    return [(caption, (plots / name).read_bytes()) for name, caption in FIGURES
            if (plots / name).is_file()]


def spectrum_numbers(run_dir: Path) -> list[tuple[str, object]]:
    """(label, value) rows: the measurements, the first and last values, the cost."""
    rows = store.read_rows(Path(run_dir) / "spectrum.csv")
    if not rows:
        return [("measurements", 0)]
    first, last = rows[0], rows[-1]
    out: list[tuple[str, object]] = [("measurements", len(rows))]
    for key in SHOWN + tuple(k for k in first if k.startswith("block_")):
        out.append((f"{key} at step {first['step']} → step {last['step']}",
                    f"{first.get(key)} → {last.get(key)}"))
    spent = [sum(r.get(k) or 0 for k in r if k.startswith("products_")) for r in rows]
    out.append(("operator products per measurement (mean)", sum(spent) / len(spent)))
    return out
