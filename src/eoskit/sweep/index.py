"""A sweep directory: ``sweep.json``, ``sweep.toml`` and ``runs.csv``, the index of its runs.

``runs.csv`` has one row per grid point, in grid order: the grid keys, then
:data:`INDEX_COLUMNS`; it is rewritten atomically each time a run finishes.

Example:
    >>> import tempfile
    >>> from eoskit.sweep.spec import parse_sweep
    >>> spec = parse_sweep({"run": {"dataset": "digits"}, "grid": {"lr": [0.1, 0.2]}})
    >>> index = SweepIndex(spec, tempfile.mkdtemp())
    >>> index.rows["lr=0.2"] = {"status": "diverged", "final_loss": None, "error": ""}
    >>> [r["status"] for r in store.read_rows(index.write())]
    ['pending', 'diverged']
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from eoskit import store
from eoskit._version import __version__
from eoskit.sweep.spec import GridPoint, SweepError, SweepSpec, parse_sweep

INDEX_COLUMNS = ["status", "eos_onset_step", "plateau_median_over_threshold",
                 "plateau_max_over_threshold", "final_loss", "error", "run_dir"]


class SweepIndex:
    """``runs.csv`` being filled: one row of results per grid point, pending until it ends."""

    def __init__(self, spec: SweepSpec, out: str | Path):
        self.spec, self.out = spec, Path(out)
        self.rows: dict[str, dict] = {p.name: {"status": "pending", "error": ""}
                                      for p in spec.points}

    def run_dir(self, p: GridPoint) -> Path:
        return (self.out / p.name).resolve()

    def index_rows(self) -> list[dict]:
        """runs.csv's rows as text cells (:func:`eoskit.store.format_cell`)."""
        rows = []
        for p in self.spec.points:
            r = self.rows[p.name]
            row = {k: store.format_cell(v) for k, v in p.params.items()}
            row.update({c: store.format_cell(r.get(c)) for c in INDEX_COLUMNS if c != "run_dir"})
            row["run_dir"] = str(self.run_dir(p))
            rows.append(row)
        return rows

    def write(self) -> Path:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.spec.keys + INDEX_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(self.index_rows())
        path = self.out / "runs.csv"
        store.atomic_write_bytes(path, buf.getvalue().encode())
        return path

    write_index = write  # the name before SweepIndex


def index_fields(summary: dict) -> dict:
    """A run's ``summary.json`` as its runs.csv cells."""
    return {
        "status": summary.get("status"),
        "eos_onset_step": summary.get("eos_onset_step"),
        "plateau_median_over_threshold": summary.get(
            "sharpness_after_onset_median_over_threshold"),
        "plateau_max_over_threshold": summary.get("sharpness_after_onset_max_over_threshold"),
        "final_loss": summary.get("final_loss"),
        "error": "",
    }


def prepare_out(spec: SweepSpec, out: Path, resume: bool, overwrite: bool = False) -> None:
    """Create (or check, when resuming) the sweep directory; SweepError on a clash.
    ``overwrite`` first removes the sweep there (:func:`clear_sweep`)."""
    out = Path(out)
    meta = out / "sweep.json"
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out} exists and is not a directory")
    if resume and overwrite:
        raise SweepError("--resume continues the sweep in --out; --overwrite replaces it")
    try:
        store.check_owner(out, "sweep")  # a run's figures or a flows run's files live here
    except store.RunDirError as err:
        raise SweepError(str(err)) from None
    if meta.exists() and overwrite:
        clear_sweep(out)
    if meta.exists():
        if not resume:
            raise SweepError(f"{out} already holds a sweep; pass --resume to continue it, "
                             "--overwrite to replace it, or choose another --out")
        stored = store.read_json(meta)
        if (stored.get("run") != store.clean_json(spec.run)
                or stored.get("grid") != store.clean_json(spec.grid)):
            raise SweepError(f"the sweep in {out} was made from a different [run]/[grid]; "
                             "resume it without --config, or choose another --out")
    elif not resume:
        taken = [p.name for p in spec.points if (out / p.name).exists()]
        if taken:
            raise SweepError(f"{out / taken[0]} already exists; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    store.record_owner(out, "sweep")
    store.write_json(meta, {**spec.as_json(), "eoskit_version": __version__,
                            "index_columns": spec.keys + INDEX_COLUMNS})
    if spec.source is not None:
        store.atomic_write_bytes(out / "sweep.toml", spec.source.encode())


def clear_sweep(out: Path) -> None:
    """Remove the sweep in ``out``: its index, figures and records, and each of its grid
    points' run files (the grid read from its ``sweep.json``). A point's folder goes unless
    files eoskit did not write are left in it; files of the sweep directory's own that
    eoskit did not write stay."""
    out = Path(out)
    try:
        points = load_stored_sweep(out).points
    except (SweepError, OSError, ValueError, KeyError, TypeError) as err:
        raise SweepError(f"cannot tell which runs belong to the sweep in {out} ({err}); "
                         "remove it yourself, or choose another --out") from None
    for point in points:
        folder = out / point.name
        if folder.is_dir() and store.owner_of(folder) in (None, "run"):
            store.discard(folder, "run")
    store.clear_run(out, "sweep")


def load_stored_sweep(out: Path) -> SweepSpec:
    """The sweep recorded in ``out/sweep.json`` (for ``--resume`` without ``--config``)."""
    meta = Path(out) / "sweep.json"
    if not meta.exists():
        raise SweepError(f"nothing to resume: {out} has no sweep.json (pass --config to start)")
    stored = store.read_json(meta)
    spec = parse_sweep({"run": stored["run"], "grid": stored["grid"]}, where=str(meta))
    toml = Path(out) / "sweep.toml"
    spec.source = toml.read_text() if toml.exists() else None
    return spec


def indexed_runs(sweep_dir: Path) -> list[tuple[dict, Path]]:
    """runs.csv's rows that have a run directory (one with ``config.json``), each with it."""
    index = Path(sweep_dir) / "runs.csv"
    pairs = []
    for row in store.read_rows(index) if index.exists() else []:
        run_dir = resolve_run_dir(sweep_dir, row)
        if run_dir is not None and (run_dir / "config.json").exists():
            pairs.append((row, run_dir))
    return pairs


def resolve_run_dir(sweep_dir: Path, row: dict) -> Path | None:
    """A runs.csv row's run directory; found by name under the sweep if the sweep moved."""
    p = Path(row.get("run_dir") or "")
    if str(p) and (p / "config.json").exists():
        return p
    local = Path(sweep_dir) / p.name
    return local if p.name and local.exists() else None
