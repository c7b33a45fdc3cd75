"""Ctrl-C and a scheduler's SIGTERM end a command the same way: one line, exit 130.

Both raise :class:`Interrupted`, a *subclass* of ``KeyboardInterrupt``. CPython (3.8 and
newer) remembers a plain ``KeyboardInterrupt`` that unwinds through an embedded
``PyRun_String`` call, which Cython modules make while they import (pandas and scikit-learn
do), and then ends the process by SIGINT whatever ``sys.exit`` asked for: a signal that
landed during such an import turned ``eoskit``'s documented 130 into a death by SIGINT.
CPython's check is on the exact type, so a subclass is not remembered; every
``except KeyboardInterrupt`` still catches it.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, as eoskit's signal handler raises it."""


def raise_interrupted(signum, frame) -> None:
    """The signal handler: raise :class:`Interrupted` naming the signal."""
    raise Interrupted(signal.Signals(signum).name)


def install_cli_handlers() -> None:
    """For the ``eoskit`` command: SIGTERM, and SIGINT unless it is ignored (a job started
    with ``nohup`` or ``&`` inherits SIGINT ignored, and keeps it so), raise Interrupted."""
    signal.signal(signal.SIGTERM, raise_interrupted)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, raise_interrupted)


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a scheduler stopping the job) ends the run like Ctrl-C: status 'interrupted'."""
    try:
        old = signal.signal(signal.SIGTERM, raise_interrupted)
    except ValueError:  # not the main thread (e.g. a Ray worker thread)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
