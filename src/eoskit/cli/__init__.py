"""The ``eoskit`` command line: thin layers over the Python API."""

from __future__ import annotations

import signal

from eoskit.cli.app import EXIT_INTERRUPTED, app, exit_interrupted  # noqa: F401 (re-exported)


def _register() -> None:
    # each sub-module adds its commands to `app`
    from eoskit.cli import bench, flow, orbits, report, run, sweep  # noqa: F401


def main() -> None:
    """The ``eoskit`` command; Ctrl-C or SIGTERM while it starts up is one line too."""
    try:
        # a scheduler's SIGTERM ends a command like Ctrl-C (a run records 'interrupted')
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        _register()
        app()
    except KeyboardInterrupt:
        exit_interrupted()
