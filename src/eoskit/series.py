"""Which sharpness series a run is about: the raw one, or the preconditioned one.

An adaptive rule's threshold is on the preconditioned sharpness
λ₁(P^{-1/2} H P^{-1/2}) (docs/theory.md §6), so its metrics carry
``precond_sharpness`` (and ``precond_eig_1..k``) beside the raw ``sharpness``, and its
summary's onset and plateau are read off that series.

Example:
    >>> from eoskit.optim import rule_class
    >>> sharpness_series(rule_class("adam")), sharpness_series(rule_class("gd"))
    ('precond_sharpness', 'sharpness')
    >>> precond_columns(rule_class("rmsprop"), 2)
    ['precond_sharpness', 'precond_eig_1', 'precond_eig_2']
    >>> series_rows([{"sharpness": 1.0, "precond_sharpness": 5.0}], "precond_sharpness")
    [{'sharpness': 5.0, 'precond_sharpness': 5.0}]
"""

from __future__ import annotations

from eoskit.eigs import SharpnessTracker, make_tracker

PRECOND = "precond_sharpness"


def sharpness_series(rule_cls) -> str:
    """The metrics column whose values the rule's threshold is about."""
    return PRECOND if rule_cls.preconditioned else "sharpness"


def precond_columns(rule_cls, neigs: int) -> list[str]:
    """The preconditioned series' metrics columns (none for a rule without P)."""
    if not rule_cls.preconditioned:
        return []
    return [PRECOND] + ([f"precond_eig_{i + 1}" for i in range(neigs)] if neigs > 1 else [])


def precond_tracker(cfg, rule) -> SharpnessTracker | None:
    """The preconditioned series' own tracker (its warm start follows P's eigenvectors)."""
    if not rule.preconditioned:
        return None
    return make_tracker(cfg.eig_mode, cfg.neigs, cfg.eig_tol, cfg.eig_restart_every,
                        criterion=cfg.eig_criterion)


def precond_cells(eig, neigs: int) -> dict:
    """A preconditioned :class:`~eoskit.eigs.EigResult` as metrics cells."""
    values = [float(v) for v in eig.eigenvalues]
    cells = {PRECOND: values[0]}
    if neigs > 1:
        cells.update({f"precond_eig_{i + 1}": v for i, v in enumerate(values)})
    return cells


def series_rows(rows: list[dict], series: str) -> list[dict]:
    """Rows whose ``sharpness`` is ``series``, for :func:`eoskit.summary.summarize`."""
    if series == "sharpness":
        return rows
    return [{**r, "sharpness": r.get(series)} for r in rows]


def rows_of_series(rows: list[dict], rule_cls) -> tuple[list[dict], str]:
    """The rows to summarise for the rule (``sharpness`` = its series) and that series' name."""
    series = sharpness_series(rule_cls)
    return series_rows(rows, series), series
