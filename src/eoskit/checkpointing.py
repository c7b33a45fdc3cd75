"""A training run's state, and its checkpoints: everything a resume needs to continue exactly.

A checkpoint holds the iterate, the row and diagnostics still waiting for the
next loss, the update rule's momentum, the eigensolver's tracked vectors, the
forcing sums and both random generators, so a resumed run writes the same
rows as an uninterrupted one. Files, checksums and the choice of the newest
good checkpoint are :mod:`eoskit.store`'s.

Example:
    >>> import tempfile, torch
    >>> from eoskit.diagnostics import ForcingTracker
    >>> from eoskit.eigs import SharpnessTracker
    >>> from eoskit.optim import UpdateRule
    >>> parts = lambda: dict(rule=UpdateRule("polyak", 0.1, 0.5), tracker=SharpnessTracker(1, 1e-3),
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
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from eoskit import store
from eoskit.diagnostics import ForcingTracker
from eoskit.eigs import SharpnessTracker
from eoskit.optim import UpdateRule


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


def save_run_state(folder: str | Path, state: RunState, *, rule: UpdateRule,
                   tracker: SharpnessTracker, forcing: ForcingTracker,
                   batch_gen: torch.Generator, keep: int) -> None:
    """Write checkpoint ``state.step`` into ``folder``, keeping the newest ``keep``."""
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
    }
    store.save_checkpoint(Path(folder), state.step, content, keep=keep)


def restore_run_state(folder: str | Path, device: str, *, rule: UpdateRule,
                      tracker: SharpnessTracker, forcing: ForcingTracker,
                      batch_gen: torch.Generator) -> RunState | None:
    """Load the newest good checkpoint into the run's parts (and torch's global generator).

    Returns the run state, or ``None`` when no usable checkpoint exists.
    """
    latest = store.load_latest_checkpoint(Path(folder))
    if latest is None:
        return None
    st, _ = latest
    rule.load_state_dict(_to_device(st["optimizer"], device))
    tracker.load_state_dict(st["tracker"], device)
    for k, v in st["forcing"].items():
        setattr(forcing, k, v)
    batch_gen.set_state(st["batch_gen"])
    torch.set_rng_state(st["torch_rng"])
    return RunState(st["step"], st["x"].to(device), st["elapsed"], st["pending_row"],
                    _to_device(st["pending_diag"], device), st.get("extra", {}),
                    st["hvps_total"])


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
