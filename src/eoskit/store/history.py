"""What a checkpoint promises about the files beside it.

A checkpoint records the digest of the resolved configuration and a
*snapshot* of each live table (``metrics.csv``, ``diagnostics.csv``) as it
stood when the checkpoint was written: its row count, SHA-256 and the bytes
themselves (zlib-compressed; they compress ~4x). On resume,
:func:`restore_table` makes the table equal to the snapshot again: rows
written after the checkpoint and a torn last line are cut, and rows the
checkpoint covers that were lost or edited are put back. So a resumed table
equals an uninterrupted one whatever happened to the file in between.

Example:
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = p.write_text("step,loss\\n0,1.0\\n1,0.5\\n")
    >>> snap = snapshot_table(p)
    >>> _ = p.write_text("step,loss\\n0,1.0\\n1,0.5\\n2,0.2\\n3,0.")   # later rows, torn line
    >>> restore_table(p, snap)
    't.csv: cut 2 line(s) written after the checkpoint'
    >>> _ = p.write_text("step,loss\\n0,1.0\\n")                      # rows lost
    >>> restore_table(p, snap)
    't.csv: restored from the checkpoint (it differed from line 3 on)'
    >>> p.read_text()
    'step,loss\\n0,1.0\\n1,0.5\\n'
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

from eoskit.store.files import atomic_write_bytes
from eoskit.store.rundir import RunDirError


def config_digest(config: dict) -> str:
    """SHA-256 of a configuration's canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def changed_keys(stored: dict, current: dict) -> list[str]:
    """Keys whose values differ between two configurations (sorted)."""
    return sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))


def check_config(folder: Path, step: int, stored: dict, current: dict,
                 name: str = "config.json") -> None:
    """Refuse (:class:`RunDirError`) when ``current`` is not the configuration of
    checkpoint ``step`` (its ``stored`` copy), listing the keys that changed."""
    if config_digest(stored) != config_digest(current):
        keys = ", ".join(_changed(stored, current)) or "?"
        raise RunDirError(f"cannot resume {folder}: {name} no longer matches the "
                          f"checkpoint at step {step} (changed: {keys}); restore it, or "
                          "start over with --overwrite")


def _changed(stored: dict, current: dict, prefix: str = "") -> list[str]:
    """Changed keys, nested tables named by their path (``settings.lr``)."""
    keys = []
    for k in changed_keys(stored, current):
        a, b = stored.get(k), current.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed(a, b, f"{prefix}{k}.")
        else:
            keys.append(prefix + k)
    return keys


def snapshot_table(path: Path) -> dict:
    """The table as it is now: rows, digest and compressed bytes (empty if absent)."""
    path = Path(path)
    data = path.read_bytes() if path.exists() else b""
    return {"rows": max(data.count(b"\n") - 1, 0), "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data), "zlib": zlib.compress(data, 6)}


def _first_difference(a: bytes, b: bytes) -> int:
    """1-based line number where ``a`` and ``b`` first differ."""
    for i, (la, lb) in enumerate(zip(a.split(b"\n"), b.split(b"\n"), strict=False)):
        if la != lb:
            return i + 1
    return min(a.count(b"\n"), b.count(b"\n")) + 1


def restore_table(path: Path, snap: dict) -> str | None:
    """Make ``path`` equal to its snapshot; a note of what was repaired, or None."""
    path = Path(path)
    data = zlib.decompress(snap["zlib"])
    if hashlib.sha256(data).hexdigest() != snap["sha256"]:
        raise ValueError(f"checkpoint's copy of {path.name} fails its digest")
    current = path.read_bytes() if path.exists() else b""
    if current == data:
        return None
    if current.startswith(data):
        extra = current[len(data):]
        lines = len(extra.splitlines())
        note = f"{path.name}: cut {lines} line(s) written after the checkpoint"
    else:
        note = (f"{path.name}: restored from the checkpoint "
                f"(it differed from line {_first_difference(current, data)} on)")
    atomic_write_bytes(path, data)
    return note


def table_record(config: dict, tables) -> dict:
    """What a checkpoint covers: ``config`` (as JSON), its digest and a snapshot of each
    table in ``tables`` (paths), keyed by file name."""
    return {"config": config, "config_sha256": config_digest(config),
            "tables": {Path(t).name: snapshot_table(t) for t in tables}}


def repair_tables(folder: Path, record: dict, names=None) -> list[str]:
    """Put each table of ``record`` (those in ``names``, default all) in ``folder`` back to
    what the checkpoint covers; the notes of what was repaired."""
    notes = []
    for name, snap in record["tables"].items():
        if names is None or name in names:
            note = restore_table(Path(folder) / name, snap)
            if note is not None:
                notes.append(note)
    return notes
