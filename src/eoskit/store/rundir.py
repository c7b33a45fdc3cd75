"""Who owns a run directory: eoskit's files in it, and an advisory lock on it.

A run directory has one owner and one history. :func:`run_files` lists what
eoskit wrote there (so ``run --out`` can refuse to overwrite a run), and
:class:`RunLock` is an ``fcntl.flock`` on ``DIR/.eoskit.lock``: the kernel
drops it when its process dies, so a stale lock never blocks, and a second
process on the same directory learns the holder's PID at once.

Example:
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with RunLock(d):
    ...     run_files(d)
    []
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from eoskit.store.files import read_json, write_json
from eoskit.store.statuses import FINAL_STATUSES

LOCK_NAME = ".eoskit.lock"
# everything eoskit writes at the top of a run directory
RUN_FILES = ("config.json", "summary.json", "metrics.csv", "diagnostics.csv", "params_final.pt",
             "checkpoints", "plots", "report.html", "worker.json", "error.txt",
             "loggers.json", "tensorboard", "mlflow.db", "mlartifacts")  # --log's


# the files whose presence means "a run lives here"
RUN_MARKERS = ("config.json", "summary.json", "metrics.csv", "checkpoints", "params_final.pt")


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (bad input: exit 2)."""


def run_files(folder: Path) -> list[str]:
    """Names of eoskit's files present in ``folder`` (empty if it is new or foreign)."""
    folder = Path(folder)
    return [name for name in RUN_FILES if (folder / name).exists()]


def holds_run(folder: Path) -> list[str]:
    """The run markers present in ``folder``: non-empty means an eoskit run lives there."""
    return [name for name in RUN_MARKERS if (Path(folder) / name).exists()]


def clear_run(folder: Path) -> list[str]:
    """Remove eoskit's files from ``folder`` (checkpoints included); returns what went."""
    removed = run_files(folder)
    for name in removed:
        path = Path(folder) / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed


def finished_summary(folder: Path) -> dict | None:
    """The summary of a run that ended for good (completed or diverged), else None."""
    path = Path(folder) / "summary.json"
    if not path.exists():
        return None
    try:
        summary = read_json(path)
    except (ValueError, OSError):
        return None
    return summary if isinstance(summary, dict) and summary.get("status") in FINAL_STATUSES \
        else None


def claim_run(folder: Path, overwrite: bool) -> None:
    """Make ``folder`` ready for a new run: refuse if it holds one, unless ``overwrite``.

    Call it holding :class:`RunLock`; ``overwrite`` removes the old run's files
    (checkpoints included), so nothing of it can be spliced into the new one.
    """
    folder = Path(folder)
    present = holds_run(folder)
    if present and not overwrite:
        raise RunDirError(f"{folder} already holds an eoskit run ({_describe(folder, present)}); "
                          f"continue it with 'eoskit run --resume {folder}' or replace it "
                          "with --overwrite")
    if overwrite:
        clear_run(folder)


def _describe(folder: Path, present: list[str]) -> str:
    try:
        summary = read_json(folder / "summary.json")
        return f"status {summary['status']}, {summary['steps']} steps"
    except (OSError, ValueError, KeyError, TypeError):
        return ", ".join(present)


def mark_failed(folder: Path, err: OSError) -> None:
    """Set the run's status to ``failed`` (naming ``err``) where the disk still allows.

    Only a run that started (config.json or summary.json present) gets a
    summary; a second failure while writing it is ignored: ``err`` is the news.
    """
    folder = Path(folder)
    path = folder / "summary.json"
    try:
        if not (path.exists() or (folder / "config.json").exists()):
            return
        try:
            summary = read_json(path)
        except (OSError, ValueError):
            summary = {}
        if not isinstance(summary, dict):
            summary = {}
        summary.update(status="failed", error=f"{type(err).__name__}: {err}")
        write_json(path, summary)
    except OSError:
        pass


class RunLock:
    """Exclusive advisory lock on a run directory, held for the life of a run."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirError(f"{self.folder} is in use by another eoskit process "
                              f"(PID {holder}); wait for it or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
