"""When a warm-started solve of the top k may stop: the rules the measuring trackers share
(:class:`~eoskit.eigs.shared_tracker.SharedTracker`,
:class:`~eoskit.eigs.lean_tracker.LeanTracker`).

A cold solve converges λ_{k+1} too (to ``10·tol``) and holds its top k to
``COLD_MARGIN·tol``: its gap comes from its own small space. A warm basis knows nothing of
λ_{k+1}, so its estimate is carried from measurement to measurement (:func:`upper_estimate`,
:func:`carried_next`). ``criterion`` is one of :data:`CRITERIA`: ``"eigenvalue"`` the error
estimate ``min(‖r‖, ‖r‖²/gap)`` ≤ ``tol·|θ|``; ``"residual"`` ``‖r‖ ≤ tol·|θ|``;
``"change"`` also ends a *warm* solve once an expansion moved no top-k value by more than
``tol·|θ|`` (:func:`moved`), as power iteration in PyHessian stops.

Example:
    >>> import numpy as np
    >>> err, ratio, worst = stop_ratios(np.array([4.0, 1.0]), np.array([1e-3, 0.5]), 1, 1e-3,
    ...                                 "eigenvalue", cold=False, upper=1.2)
    >>> bool(ratio <= 1.0), worst
    (True, 0)
"""

from __future__ import annotations

import numpy as np

from eoskit.eigs.krylov import eigenvalue_bounds

CRITERIA = ("eigenvalue", "residual", "change")
# a cold solve's share of tol: on the issue-22 GPT-2 a cold solve held to tol stopped with
# its preconditioned value 1.05e-3 off while its own estimate said 9.9e-4
COLD_MARGIN = 0.5


def stop_ratios(th: np.ndarray, resid: np.ndarray, k: int, tol: float, criterion: str,
                cold: bool, upper: float | None) -> tuple[np.ndarray, float, int]:
    """Error estimates of the top values (k + 1 of them when ``cold``), the largest
    tested/allowed ratio (≤ 1: done; inf when the space holds fewer values than wanted)
    and the index of the worst value tested (one of the top k, or a cold solve's
    (k+1)-th).

    ``th``: descending Ritz values; ``resid``: the residual norms of the first
    ``min(len(th), want + 1)`` of them; ``upper``: the carried λ_{k+1} estimate (warm).
    """
    want = k + 1 if cold else k
    kk = min(want, len(th))
    q = min(len(th), kk + 1, len(resid))
    if upper is None:
        err = eigenvalue_bounds(th[:q], resid[:q])[:kk]
    else:
        err = eigenvalue_bounds(th[:kk], resid[:kk], upper=upper)
    scale = np.maximum(np.abs(th[:kk]), np.finfo(float).tiny)
    top = tol * (COLD_MARGIN if cold else 1.0)
    # λ_{k+1} only sets the warm solves' gap (raised by its own bound): 10·tol is enough
    tols = np.where(np.arange(kk) < k, top, 10 * tol)
    tested = err.copy()
    if criterion == "residual":
        n = min(k, kk)
        tested[:n] = resid[:n]
    ratios = tested / (tols * scale)
    if kk < want:
        ratios = np.append(ratios, np.inf)
    worst = int(np.argmax(ratios[:kk])) if kk else 0
    return err, float(np.max(ratios)) if len(ratios) else np.inf, worst


def moved(values: np.ndarray, before: np.ndarray, k: int) -> float:
    """The largest relative move of the top-k values over the last expansion."""
    if len(values) < k or len(before) < k:
        return np.inf
    return float(np.max(np.abs(values[:k] - before[:k]) /
                        np.maximum(np.abs(values[:k]), np.finfo(float).tiny)))


def upper_estimate(last_next: float | None, last_values: np.ndarray | None, th: np.ndarray,
                   k: int) -> float | None:
    """λ_{k+1} estimate for a warm basis: the carried one moved as far as the top values
    moved, at least this basis's own (k+1)-th Ritz value (by interlacing a lower bound)."""
    if last_next is None or last_values is None:
        return None
    shift = float(np.max(np.abs(th[:k] - last_values[:k])))
    own = float(th[k]) if len(th) > k else -np.inf
    return max(last_next + shift, own)


def carried_next(th: np.ndarray, err: np.ndarray, k: int, cold: bool,
                 last_values: np.ndarray | None, last_next: float | None) -> float | None:
    """The λ_{k+1} estimate to carry after a solve: a cold solve's converged θ_{k+1} raised by
    its error estimate; after a warm one, whose θ_{k+1} is only a lower bound, the carried
    estimate moved as the top values moved (:func:`followed`), at least that θ_{k+1}.
    None if the solve held no (k+1)-th value."""
    if len(th) <= k:
        return last_next
    own = float(th[k])
    if cold or last_next is None:
        return own + float(err[k]) if len(err) > k else own
    if last_values is None:
        return max(own, last_next)
    return max(own, followed(last_next, last_values[:k], th[:k]))


def followed(last_next: float, last_values: np.ndarray, values: np.ndarray) -> float:
    """λ_{k+1}'s estimate moved with the top values (``last_values`` → ``values``): by as
    much as they rose, but as they fall by no more than in proportion.

    A fall carried as an equal absolute one keeps the gap it had, which grows relative to a
    shrinking spectrum: on the issue-22 GPT-2 under AdamW the raw top value fell from 3.25
    to 0.44 over 300 steps, the gap of step 10 was kept while the spectrum shrank sevenfold,
    and the capped measurements' error estimates fell up to 2.4× below their true errors. A
    spectrum that shrinks keeps its ratios; one that rises is taken to keep its gap (the
    larger λ_{k+1} of the two rules)."""
    shift = float(np.max(values - last_values))
    moved_by = last_next + shift
    top, last_top = float(values[0]), float(last_values[0])
    if shift < 0 and last_next > 0 and top > 0 and last_top > 0:
        return max(moved_by, last_next * top / last_top)
    return moved_by
