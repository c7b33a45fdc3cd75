"""CSV tables of a run: one cell format, one live writer, one typed reader."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from eoskit.store.files import atomic_write_bytes, clean_json, named


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
    ``keep_below`` (a resumed run rewrites the rest) and drops a torn last line;
    ``append=True`` continues the file as it is (a resumed table already put
    back to its checkpoint's snapshot). A failed write names the file.
    """

    def __init__(self, path: Path, columns: list[str], keep_below: int | None = None,
                 append: bool = False):
        self.path = Path(path)
        self.columns = list(columns)
        exists = self.path.exists() and self.path.stat().st_size > 0
        if keep_below is not None and exists:
            self._rewrite([r for r in read_csv(self.path) if int(r["step"]) < keep_below])
        new = not exists or (keep_below is None and not append)
        try:
            self._fh = open(self.path, "w" if new else "a", newline="")
        except OSError as err:
            raise named(err, self.path) from None
        self._writer = csv.writer(self._fh)
        if new:
            self._guarded(self._writer.writerow, self.columns)

    def _rewrite(self, rows: list[dict]) -> None:
        # atomically: only the kept rows survive
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        atomic_write_bytes(self.path, buf.getvalue().encode())

    def _guarded(self, write, *args) -> None:
        try:
            if write is not None:
                write(*args)
            self._fh.flush()
        except OSError as err:
            raise named(err, self.path) from None

    def write(self, row: dict) -> None:
        self._guarded(self._writer.writerow, [format_cell(row.get(c)) for c in self.columns])

    def sync(self) -> None:
        self._guarded(None)
        try:
            os.fsync(self._fh.fileno())
        except OSError as err:
            raise named(err, self.path) from None

    def close(self) -> None:
        if not self._fh.closed:
            try:
                self._fh.close()
            except OSError:  # the write that failed has been reported already
                pass


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
    rows = []
    for r in reader:
        if len(r) != n or None in r.values():
            continue
        # every reader sorts and cuts by step: a bad one is named here, with its file
        if r.get("step", "0").lstrip("-").isdigit() or r.get("step") == "":
            rows.append(r)
            continue
        raise ValueError(f"{path}: line {reader.line_num}: step {r['step']!r} is not a "
                         "whole number")
    return rows


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
