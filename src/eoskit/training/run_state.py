"""A training run's state, and its checkpoints: everything a resume needs to continue exactly.

A checkpoint holds the iterate, the row and diagnostics still waiting for the
next loss, the update rule's momentum, the eigensolver's tracked vectors, the
forcing sums and both random generators, so a resumed run writes the same
rows as an uninterrupted one; and a *record* of the files beside it (the
configuration's digest, snapshots of the tables: :mod:`eoskit.store.history`),
checked before anything is restored. Files, checksums and the choice of the
newest good checkpoint are :mod:`eoskit.store`'s.

Example:
    >>> import tempfile, torch
    >>> from eoskit.diagnostics import ForcingTracker
    >>> from eoskit.eigs import LanczosTracker
    >>> from eoskit.optim import make_rule
    >>> parts = lambda: dict(rule=make_rule("polyak", 0.1, 0.5), tracker=LanczosTracker(1, 1e-3),
    ...                      forcing=ForcingTracker(0.1), batch_gen=torch.Generator())
    >>> saved, folder = parts(), tempfile.mkdtemp()
    >>> _ = saved["rule"].step(torch.ones(2))
    >>> save_run_state(folder, RunState(3, torch.zeros(2), hvps_total=7), keep=2, **saved)
    >>> back = parts()
    >>> state = restore_run_state(folder, "cpu", **back)
    >>> state.step, state.hvps_total, back["rule"].buffer.tolist()
    (3, 7, [1.0, 1.0])
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from eoskit import store
from eoskit.diagnostics import ForcingTracker
from eoskit.eigs import SharpnessTracker
from eoskit.optim import UpdateRule
from eoskit.training.config import RunConfig


@dataclass
class RunState:
    """Where the loop stands: iterate ``x_step`` and what still waits for ``L(x_step)``."""

    step: int
    x: Tensor
    elapsed: float = 0.0
    pending_row: dict | None = None  # row `step-1`, waiting for L(x_step)
    pending_diag: dict | None = None  # diagnostics of step `step-1`, waiting for s_step
    extra: dict = field(default_factory=dict)
    hvps_total: int = 0
    record: dict | None = None  # what the checkpoint says of config.json and the tables


def save_run_state(folder: str | Path, state: RunState, *, rule: UpdateRule,
                   tracker: SharpnessTracker, forcing: ForcingTracker,
                   batch_gen: torch.Generator, keep: int, config: dict | None = None,
                   tables: Sequence[Path] = ()) -> None:
    """Write checkpoint ``state.step`` into ``folder``, keeping the newest ``keep``.

    With ``config`` (the resolved configuration, as JSON) the checkpoint records
    what it covers: that configuration and a snapshot of each table in ``tables``.
    """
    record = None if config is None else store.table_record(config, tables)
    content = {
        "step": state.step, "x": state.x.detach().cpu(), "elapsed": state.elapsed,
        "pending_row": state.pending_row,
        "pending_diag": _to_cpu(state.pending_diag),
        "optimizer": _to_cpu(rule.state_dict()),
        "tracker": tracker.state_dict(),
        "forcing": forcing.state(),
        "batch_gen": batch_gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "hvps_total": state.hvps_total,
        "extra": dict(state.extra),
        "record": record,
    }
    store.save_checkpoint(Path(folder), state.step, content, keep=keep)


def restore_run_state(folder: str | Path, device: str, *, rule: UpdateRule,
                      tracker: SharpnessTracker, forcing: ForcingTracker,
                      batch_gen: torch.Generator, config: dict | None = None,
                      ) -> RunState | None:
    """Load the newest good checkpoint into the run's parts (and torch's global generator).

    With ``config`` given, a checkpoint that recorded another configuration is
    refused (:class:`eoskit.store.RunDirError`, listing the changed keys) before
    anything is restored. Returns the run state, or ``None`` when no usable
    checkpoint exists.
    """
    latest = store.load_latest_checkpoint(Path(folder))
    if latest is None:
        return None
    st, _ = latest
    record = st.get("record")  # None in checkpoints from before records
    if config is not None and record is not None:
        store.check_config(Path(folder).parent, st["step"], record["config"], config)
    rule.load_state_dict(_to_device(st["optimizer"], device))
    tracker.load_state_dict(st["tracker"], device)
    for k, v in st["forcing"].items():
        setattr(forcing, k, v)
    batch_gen.set_state(st["batch_gen"])
    torch.set_rng_state(st["torch_rng"])
    return RunState(st["step"], st["x"].to(device), st["elapsed"], st["pending_row"],
                    _to_device(st["pending_diag"], device), st.get("extra", {}),
                    st["hvps_total"], st.get("record"))


def stored_config(out: Path, cfg: RunConfig | None) -> RunConfig:
    """The configuration of the run in ``out``; a given ``cfg`` must be the same."""
    store.check_owner(out, "run")
    if not (out / "config.json").exists():
        raise ValueError(f"cannot resume: {out} has no config.json")
    stored = RunConfig(**store.read_json(out / "config.json")["config"])
    if cfg is not None and cfg != stored:
        diff = [k for k in RunConfig.model_fields if getattr(cfg, k) != getattr(stored, k)]
        raise ValueError(f"cannot resume: the run in {out} has a different configuration "
                         f"({', '.join(diff)})")
    return stored


def recorded_components(out: Path) -> dict | None:
    """The user components the run in ``out`` recorded (None for a run from before records)."""
    return store.read_json(out / "config.json").get("components")


def open_tables(out: Path, tables: dict[str, list[str]],
                restored: RunState | None) -> dict[str, store.CsvLog]:
    """The run's live tables (name -> columns) as of ``restored`` (None: a new run).

    A checkpoint with snapshots makes each table what it covers: rows written
    after it and a torn line are cut, lost or edited rows put back (a note on
    stderr says what was repaired). An older checkpoint keeps the rows before
    its step.
    """
    snaps = None if restored is None or restored.record is None else restored.record["tables"]
    logs = {}
    for name, columns in tables.items():
        path = Path(out) / name
        if snaps is not None and name in snaps:
            for note in store.repair_tables(out, restored.record, (name,)):
                print(f"eoskit: resume: {note}", file=sys.stderr)
            logs[name] = store.CsvLog(path, columns, append=True)
        else:
            logs[name] = store.CsvLog(path, columns, keep_below=_keep_below(name, restored))
    return logs


def _keep_below(name: str, restored: RunState | None) -> int | None:
    if restored is None:
        return None
    if name == "diagnostics.csv":
        return restored.extra.get("diag_keep_below")
    # row step-1 waits in the checkpoint for L(x_step) when pending
    return restored.step if restored.pending_row is None else restored.step - 1


def tensor_bytes(x: Tensor) -> bytes:
    """``torch.save`` of ``x`` on the CPU, as bytes (for an atomic write)."""
    buf = io.BytesIO()
    torch.save(x.detach().cpu(), buf)
    return buf.getvalue()


def _to_cpu(obj):
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    return obj


def _to_device(obj, device):
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj
