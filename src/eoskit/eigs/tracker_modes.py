"""The tracker modes: one registry of the tracker classes, each named by its ``mode``.

Example:
    >>> tuple(TRACKERS)
    ('lanczos', 'streaming')
    >>> type(make_tracker("streaming", 1, 1e-2)).__name__
    'StreamingTracker'
"""

from __future__ import annotations

from eoskit.eigs.streaming import StreamingTracker
from eoskit.eigs.tracker import LanczosTracker, SharpnessTracker

TRACKERS: dict[str, type[SharpnessTracker]] = {
    cls.mode: cls for cls in (LanczosTracker, StreamingTracker)
}


def make_tracker(mode: str, k: int, tol: float, restart_every: int = 50,
                 **options) -> SharpnessTracker:
    """A tracker of the given mode (a key of :data:`TRACKERS`); ``options`` are its fields.

    ``max_vectors`` bounds the d-long vectors it holds at once, solves included
    (default :func:`~eoskit.eigs.tracker.default_max_vectors`: 13k + 28).
    """
    if mode not in TRACKERS:
        raise ValueError(f"mode must be one of {tuple(TRACKERS)}, got {mode!r}")
    return TRACKERS[mode](k, tol, restart_every, **options)
