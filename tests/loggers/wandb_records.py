"""What an offline W&B run logged, read back from its ``run-*.wandb`` files.

W&B 0.31 ships no Python reader for them; the format is LevelDB's log format (32 KiB
blocks of records, each with a 7-byte header: crc32c, length, type FULL/FIRST/MIDDLE/LAST)
behind a 7-byte file header ``:W&B`` + magic + version, each record a
``wandb_internal_pb2.Record`` protobuf.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: Path):
    """The protobuf records of one ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:_HEADER])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, magic, version)
    pos, parts = _HEADER, []
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # the block's tail is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        if kind == 0 and length == 0:  # zero padding after a block's last record
            pos += left
            continue
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        parts = [chunk] if kind in (_FULL, _FIRST) else parts + [chunk]
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            yield record


def run_files(run_dir: Path, run_id: str | None = None) -> list[Path]:
    """The run's ``.wandb`` files under ``RUN/wandb`` (one per session), oldest first."""
    files = sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
    return [f for f in files if run_id is None or f.stem == f"run-{run_id}"]


def history(files: list[Path]) -> list[dict]:
    """Every history row logged, in order: ``{"_step": s, key: value, ...}``."""
    rows = []
    for path in files:
        for record in records(path):
            if record.WhichOneof("record_type") != "history":
                continue
            row = {}
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            if record.history.HasField("step"):
                row.setdefault("_step", record.history.step.num)
            rows.append(row)
    return rows


def run_ids(files: list[Path]) -> set[str]:
    """The W&B run ids the files belong to."""
    ids = set()
    for path in files:
        for record in records(path):
            if record.WhichOneof("record_type") == "run":
                ids.add(record.run.run_id)
    return ids


def config(files: list[Path]) -> dict:
    """The run config, as the last update left it (top-level keys, decoded)."""
    out = {}
    for path in files:
        for record in records(path):
            kind = record.WhichOneof("record_type")
            items = record.config.update if kind == "config" else (
                record.run.config.update if kind == "run" else [])
            for item in items:
                out[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out
