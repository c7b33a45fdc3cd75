"""``eoskit report``: one self-contained ``report.html`` for a run or a sweep directory.

* :mod:`~eoskit.report.pages`: the page of a run (summary, figures, identities checked,
  forcing gap, configuration) and of a sweep (options, ``runs.csv``, figures).
* :mod:`~eoskit.report.flows_section`: what a page shows of an ``eoskit flow`` result.
"""

from eoskit.report.pages import run_html, sweep_html, write_report

__all__ = ["write_report", "run_html", "sweep_html"]
