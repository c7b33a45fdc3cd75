"""What ``eoskit report`` shows of an ``eoskit flow`` result: its figures and medians.

A flows result is a directory with ``flow_config.json`` (``eoskit flow --out DIR``), given
directly or as a run directory's ``flows/`` sub-result.
"""

from __future__ import annotations

from pathlib import Path

from eoskit import store

FIGURES = (("flows_loss.png", "loss: GD (smoothed), gradient flow, central flow (predicted)"),
           ("flows_sharpness.png", "sharpness of the three trajectories against 2/η"),
           ("flows_distance.png", "distance to GD of gradient flow and the central flow"),
           ("flows_sigma.png", "the central flow's X against GD's measured oscillation"))
MEDIANS = (("median_rel_loss_error_after_onset", "median |predicted − GD smoothed| / GD"),
           ("median_dist_to_gd_after_onset", "median distance to GD"),
           ("final_dist_to_gd", "final distance to GD"),
           ("median_sharpness_over_threshold_after_onset", "median sharpness / (2/η)"))


def flows_dir(path: Path) -> Path | None:
    """The flows result at ``path`` or in its ``flows/`` sub-directory, else None."""
    for d in (Path(path), Path(path) / "flows"):
        if (d / "flow_config.json").is_file():
            return d
    return None


def flows_figures(d: Path) -> list[tuple[str, bytes]]:
    return [(caption, (d / "plots" / name).read_bytes()) for name, caption in FIGURES
            if (d / "plots" / name).is_file()]


def flows_medians(d: Path) -> list[tuple[str, object]]:
    """(label, value) rows: the onset, then per flow its post-onset medians."""
    summary = store.read_json(d / "summary.json") if (d / "summary.json").is_file() else {}
    rows: list[tuple[str, object]] = [("status", summary.get("status")),
                                      ("EoS onset step", summary.get("eos_onset_step"))]
    for name, s in (summary.get("flows") or {}).items():
        rows += [(f"{name}: {label}", s.get(key)) for key, label in MEDIANS if key in s]
    for name, by_window in (summary.get("loss_error_by_window") or {}).items():
        rows += [(f"{name}: median loss error, GD averaged over {w} steps", v)
                 for w, v in by_window.items()]
    return rows
