"""The run directory: a documented contract, written so that a killed run loses nothing.

Layout of ``--out DIR``::

    config.json       resolved configuration, package/torch versions, seed
    metrics.csv       one row per step, appended (and flushed) as the run goes
    diagnostics.csv   edge-coupling diagnostics every --diagnose-every steps
    summary.json      status (running, completed, diverged, interrupted) and results
    plots/            PNG figures
    checkpoints/      ckpt-<step>.pt + ckpt-<step>.json (sha256), the last few kept
    params_final.pt   final flat parameter vector

JSON files and checkpoints are written atomically (temporary file, fsync,
rename); checkpoints carry a SHA-256 checksum, so a corrupted or truncated
one is detected and the previous good one is used.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from eoskit.config import RunConfig
from eoskit.objective import ModelObjective
from eoskit.problem import build_problem

# summary.json "status": a run is "running" until it ends in one of the others
STATUSES = ("running", "completed", "diverged", "interrupted", "failed")
FINAL_STATUSES = ("completed", "diverged")  # a resume (and a resumed sweep) leaves these alone

# ---------------------------------------------------------------- atomic files
def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clean_json(obj):
    """A JSON-ready copy: NaN/inf become null (JSON has neither), tensors, numpy values,
    tuples and paths become plain lists, numbers and strings, dict keys become strings."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, int):
        return obj
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # torch tensors, numpy arrays and numpy scalars
        if hasattr(obj, "detach"):
            obj = obj.detach().cpu()
        return clean_json(obj.tolist())
    return obj


def dumps_json(obj, indent: int | None = 2) -> str:
    """The one JSON text eoskit writes (cleaned, strict: never NaN)."""
    return json.dumps(clean_json(obj), indent=indent, allow_nan=False)


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (dumps_json(obj) + "\n").encode())


def read_json(path: Path):
    return json.loads(Path(path).read_text())


# ---------------------------------------------------------------- CSV written live
def format_cell(v) -> str:
    """The one text form of a CSV cell: empty for None/NaN, ``true``/``false``,
    ``repr`` for floats (round-trips exactly), JSON for lists and dicts."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(clean_json(v))
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:  # numpy / torch scalars
        return format_cell(v.item())
    return str(v)


def parse_cell(text: str | None):
    """The inverse of :func:`format_cell`: None, bool, int, float, list/dict or str.

    >>> [parse_cell(t) for t in ["", "true", "false", "3", "0.5", "inf", "[1, 2]", "ok"]]
    [None, True, False, 3, 0.5, inf, [1, 2], 'ok']
    """
    if text is None or text == "":
        return None
    if text == "true":
        return True
    if text == "false":
        return False
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    if text[0] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


class CsvLog:
    """Append-only CSV with fixed columns; each row is flushed as it is written.

    Opening an existing file keeps its complete rows with ``step`` below
    ``keep_below`` (a resumed run rewrites the rest) and drops a torn last line.
    """

    def __init__(self, path: Path, columns: list[str], keep_below: int | None = None):
        self.path = Path(path)
        self.columns = list(columns)
        rows = []
        if keep_below is not None and self.path.exists():
            rows = [r for r in read_csv(self.path) if int(r["step"]) < keep_below]
        new = keep_below is None or not self.path.exists()
        if not new:
            # rewrite atomically: only the kept rows survive
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
            atomic_write_bytes(self.path, buf.getvalue().encode())
        self._fh = open(self.path, "a" if not new else "w", newline="")
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(self.columns)
            self._fh.flush()

    def write(self, row: dict) -> None:
        self._writer.writerow([format_cell(row.get(c)) for c in self.columns])
        self._fh.flush()

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV written by :class:`CsvLog` as text; a torn last line (killed
    mid-write) and short rows are skipped. Most callers want :func:`read_rows`."""
    text = Path(path).read_text()
    if not text:
        return []
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    reader = csv.DictReader(lines)
    n = len(reader.fieldnames or [])
    return [r for r in reader if len(r) == n and None not in r.values()]


def read_rows(path: Path) -> list[dict]:
    """The one typed reader of eoskit's CSV files: cells through :func:`parse_cell`
    (empty → None, ``true``/``false`` → bool, numbers → int/float)."""
    return [{k: parse_cell(v) for k, v in r.items()} for r in read_csv(path)]


def column(rows: list[dict], name: str) -> list[float]:
    """A numeric column as floats, NaN for empty cells (text or typed rows)."""
    out = []
    for r in rows:
        v = r.get(name)
        out.append(math.nan if v is None or v == "" else float(v))
    return out


# ---------------------------------------------------------------- checkpoints
def save_checkpoint(folder: Path, step: int, state: dict, keep: int = 3) -> Path:
    """Write ``ckpt-<step>.pt`` and its checksum record atomically; prune old ones."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    path = folder / f"ckpt-{step:09d}.pt"
    atomic_write_bytes(path, data)
    meta = {"step": step, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    write_json(path.with_suffix(".json"), meta)
    for old in sorted(folder.glob("ckpt-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)
    return path


class CheckpointError(RuntimeError):
    pass


class CheckpointWarning(UserWarning):
    """A checkpoint was unusable (corrupted, truncated, unreadable) and was skipped."""


def load_latest_checkpoint(folder: Path) -> tuple[dict, Path] | None:
    """The newest checkpoint whose checksum verifies; bad ones are reported and skipped.

    Each skipped file gives a :class:`CheckpointWarning` naming it and why; when
    none is usable (or there are none) the result is None and the run restarts.
    """
    folder = Path(folder)
    paths = sorted(folder.glob("ckpt-*.pt"), reverse=True)
    for i, path in enumerate(paths):
        problem = _verify(path)
        if problem is None:
            try:
                state = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as err:  # checksum fine but unreadable: treat it like corruption
                problem = f"cannot be loaded: {type(err).__name__}: {err}"
            else:
                if isinstance(state, dict) and "step" in state:
                    return state, path
                problem = "not an eoskit checkpoint (no step)"
        then = "trying the previous one" if i + 1 < len(paths) else "no older one: starting over"
        warnings.warn(f"checkpoint {path} is unusable ({problem}); {then}", CheckpointWarning,
                      stacklevel=2)
    return None


def _verify(path: Path) -> str | None:
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        return "no checksum record"
    try:
        meta = read_json(meta_path)
    except (ValueError, OSError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return f"checksum record {meta_path.name} unreadable: {err}"
    if not isinstance(meta, dict):
        return "checksum record is not a JSON object"
    try:
        data = path.read_bytes()
    except OSError as err:
        return f"cannot be read: {err}"
    expected = meta.get("bytes")
    if isinstance(expected, int) and len(data) < expected:
        return f"truncated: {len(data)} bytes, expected {expected}"
    if len(data) != expected:
        return f"wrong size: {len(data)} bytes, expected {expected}"
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        return "checksum mismatch"
    return None


# ---------------------------------------------------------------- reading a run back
@dataclass
class StoredRun:
    path: Path
    config: RunConfig
    summary: dict
    x_final: torch.Tensor | None
    objective: ModelObjective  # on the training data

    @property
    def metrics(self) -> list[dict]:
        """Rows of ``metrics.csv``, typed (see :func:`read_rows`)."""
        return read_rows(self.path / "metrics.csv")


def load_run(run_dir: str | Path, device: str | None = None) -> StoredRun:
    """A finished (or interrupted) run: its config, summary, final parameters and objective."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise ValueError(f"{run_dir} is not an eoskit run directory (no config.json)")
    raw = read_json(run_dir / "config.json")
    cfg = RunConfig(**raw["config"])
    if device is not None:
        cfg = cfg.model_copy(update={"device": device})
    summary = read_json(run_dir / "summary.json") if (run_dir / "summary.json").exists() else {}
    problem = build_problem(cfg)
    x_final = None
    if (run_dir / "params_final.pt").exists():
        x_final = torch.load(run_dir / "params_final.pt", map_location=cfg.device)
    else:
        latest = load_latest_checkpoint(run_dir / "checkpoints")
        if latest is not None:
            x_final = latest[0]["x"].to(cfg.device)
    return StoredRun(run_dir, cfg, summary, x_final, problem.train)
