"""Who owns a run directory: its kind, eoskit's files in it, and an advisory lock on it.

A run directory has one owner and one history, whichever command writes it.
Four *kinds* of directory share this contract: ``run`` (``eoskit run``),
``flows`` (``eoskit flow``), ``monitor`` (an :class:`eoskit.Monitor` with
``out=``) and ``sweep`` (``eoskit sweep``). :func:`claim` makes a directory
one kind's, recording the kind in ``DIR/.eoskit-owner.json``; a directory of
another kind is refused (exit 2, naming what is there), even with
``overwrite``, which removes only what *that* kind writes.
:func:`check_owner` is a resume's guard. :class:`RunLock` is an
``fcntl.flock`` on ``DIR/.eoskit.lock``: the kernel drops it when its process
dies, so a stale lock never blocks, and a second process on the same
directory learns the holder's PID at once.

Example:
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with RunLock(d):
    ...     claim(d, "flows", overwrite=False)
    >>> owner_of(d)
    'flows'
    >>> try:
    ...     claim(d, "run", overwrite=True)
    ... except RunDirError as err:
    ...     print(str(err).split(" holds ")[1])
    an eoskit flows run (.eoskit-owner.json), not a run; choose another directory
"""

from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from eoskit.store.files import read_json, write_json
from eoskit.store.statuses import FINAL_STATUSES

LOCK_NAME = ".eoskit.lock"
OWNER_NAME = ".eoskit-owner.json"
_LOGGERS = ("loggers.json", "tensorboard", "mlflow.db", "mlartifacts")  # --log's files


@dataclass(frozen=True)
class DirKind:
    """One kind of run directory: what it writes, and what marks it as present."""

    name: str
    files: tuple[str, ...]  # everything this kind writes at the top of its directory
    markers: tuple[str, ...]  # files whose presence means "one of these lives here"
    resume: str  # the command that continues one


KINDS = {k.name: k for k in (
    DirKind("run", ("config.json", "summary.json", "metrics.csv", "diagnostics.csv",
                    "params_final.pt", "checkpoints", "plots", "report.html", "worker.json",
                    "error.txt", "spectrum.csv", "spectrum_nodes.csv", *_LOGGERS),
            ("config.json", "summary.json", "metrics.csv", "checkpoints", "params_final.pt"),
            "eoskit run --resume"),
    DirKind("flows", ("flow_config.json", "flows.csv", "gd_steps.csv", "summary.json",
                      "checkpoints", "plots"),
            ("flow_config.json", "flows.csv", "gd_steps.csv"), "eoskit flow --resume"),
    DirKind("monitor", ("config.json", "summary.json", "metrics.csv", "plots", "spectrum.csv",
                        "spectrum_nodes.csv", *_LOGGERS),
            ("config.json", "summary.json", "metrics.csv"), "a new Monitor with another out="),
    DirKind("sweep", ("sweep.json", "sweep.toml", "runs.csv", "plots"),
            ("sweep.json", "runs.csv"), "eoskit sweep --resume"),
)}

LABELS = {"run": "run", "flows": "flows run", "monitor": "Monitor run", "sweep": "sweep"}


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (bad input: exit 2)."""


def run_files(folder: Path, kind: str = "run") -> list[str]:
    """Names of the files ``kind`` writes that are present in ``folder``."""
    folder = Path(folder)
    return [name for name in KINDS[kind].files if (folder / name).exists()]


def owner_of(folder: Path) -> str | None:
    """The kind of eoskit directory ``folder`` is (None: new, empty or foreign).

    The owner record says; a directory from before records is told by its files.
    """
    folder = Path(folder)
    record = folder / OWNER_NAME
    if record.exists():
        try:
            kind = read_json(record).get("kind")
        except (OSError, ValueError, AttributeError):
            kind = None
        if kind in KINDS:
            return kind
    if (folder / "sweep.json").exists():
        return "sweep"
    if any((folder / m).exists() for m in KINDS["flows"].markers):
        return "flows"
    if (folder / "config.json").exists() and _source(folder) == "monitor":
        return "monitor"
    return "run" if any((folder / m).exists() for m in KINDS["run"].markers) else None


def _source(folder: Path) -> str | None:
    try:
        return read_json(folder / "config.json").get("source")
    except (OSError, ValueError, AttributeError):
        return None


def present(folder: Path) -> list[str]:
    """What eoskit wrote in ``folder``, whatever its kind (for messages)."""
    names = {n for kind in KINDS.values() for n in kind.files} | {OWNER_NAME}
    return sorted(n for n in names if (Path(folder) / n).exists())


def clear_run(folder: Path, kind: str = "run") -> list[str]:
    """Remove ``kind``'s files from ``folder`` (checkpoints included); returns what went."""
    removed = run_files(folder, kind)
    for name in removed:
        path = Path(folder) / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed


def discard(folder: Path, kind: str) -> bool:
    """Remove ``kind``'s files from ``folder``, then its owner record and lock file, and the
    folder itself if nothing else is left in it (files eoskit did not write stay); True when
    the folder went. For a run inside a directory that is being replaced (a sweep's points)."""
    folder = Path(folder)
    clear_run(folder, kind)
    for name in (OWNER_NAME, LOCK_NAME):
        (folder / name).unlink(missing_ok=True)
    if any(folder.iterdir()):
        return False
    folder.rmdir()
    return True


def check_owner(folder: Path, kind: str) -> None:
    """Refuse (:class:`RunDirError`) a ``folder`` that holds another kind's directory."""
    found = owner_of(folder)
    if found is not None and found != kind:
        then = ("a Monitor's directory is not continued" if found == "monitor" else
                f"continue it with '{KINDS[found].resume} {folder}'")
        raise RunDirError(f"{folder} holds an eoskit {LABELS[found]} ({_describe(folder)}), "
                          f"not a {LABELS[kind]}: {then}, or choose another directory")


def claim(folder: Path, kind: str, overwrite: bool) -> None:
    """Make ``folder`` ready for a new ``kind`` directory: refuse if it holds one, unless
    ``overwrite``; refuse another kind's in any case.

    Call it holding :class:`RunLock`; ``overwrite`` removes the old files
    (checkpoints included), so nothing of them can be spliced into the new one.
    """
    folder = Path(folder)
    check_owner(folder, kind)
    if any((folder / m).exists() for m in KINDS[kind].markers):
        if not overwrite:
            what = f"{folder} already holds an eoskit {LABELS[kind]} ({_describe(folder)})"
            raise RunDirError(f"{what}; continue it with '{KINDS[kind].resume} {folder}' or "
                              "replace it with --overwrite" if kind != "monitor" else
                              f"{what}; choose a new directory")
        clear_run(folder, kind)
    record_owner(folder, kind)


def record_owner(folder: Path, kind: str) -> None:
    """Write ``folder``'s owner record: it is a ``kind`` directory from now on."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_json(Path(folder) / OWNER_NAME, {"kind": kind})


def _describe(folder: Path) -> str:
    try:
        summary = read_json(folder / "summary.json")
        return f"status {summary['status']}, {summary['steps']} steps"
    except (OSError, ValueError, KeyError, TypeError):
        return ", ".join(present(folder)) or "empty"


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
