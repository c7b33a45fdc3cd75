"""Checkpoints: ``ckpt-<step>.pt`` with a SHA-256 record, the newest good one found on load."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import torch

from eoskit.store.files import atomic_write_bytes, read_json, write_json


def save_checkpoint(folder: Path, step: int, state: dict, keep: int = 3) -> Path:
    """Write ``ckpt-<step>.pt`` and its checksum record atomically; prune old ones."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    path = folder / f"ckpt-{step:09d}.pt"
    meta = {"step": step, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    # the record goes first: a save cut off between the two files (Ctrl-C, SIGKILL) leaves
    # a record without its checkpoint, which loading never looks at, rather than a
    # checkpoint without its record, which loading reports as unusable
    write_json(path.with_suffix(".json"), meta)
    atomic_write_bytes(path, data)
    for old in sorted(folder.glob("ckpt-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)
    for record in folder.glob("ckpt-*.json"):  # records of saves that were cut off
        if record.stem < path.stem and not record.with_suffix(".pt").exists():
            record.unlink(missing_ok=True)
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
