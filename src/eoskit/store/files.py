"""Files that are never half-written: atomic replace with fsync, and strict JSON."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` all at once; on any failure ``path`` is untouched and
    no temporary file is left (an OSError names ``path``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:  # a full disk, a read-only folder, Ctrl-C mid-write
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise named(err, path) from None
        raise
    _fsync_dir(path.parent)


def named(err: OSError, path: Path) -> OSError:
    """``err`` naming ``path`` when it names no file (a failed write or fsync does not)."""
    if err.filename is None:
        err.filename = str(path)
    return err


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
