"""The ``eoskit`` command line: thin layers over the Python API."""

from __future__ import annotations

from eoskit.cli.app import (  # noqa: F401 (re-exported)
    EXIT_INTERRUPTED,
    app,
    exit_interrupted,
    one_line_warnings,
)
from eoskit.interrupts import install_cli_handlers


def _register() -> None:
    # each sub-module adds its commands to `app`
    from eoskit.cli import bench, flow, orbits, report, run, sweep  # noqa: F401


def main() -> None:
    """The ``eoskit`` command; Ctrl-C or SIGTERM while it starts up is one line too."""
    try:
        install_cli_handlers()  # SIGTERM ends a command like Ctrl-C (a run: 'interrupted')
        one_line_warnings()
        _register()
        app()
    except KeyboardInterrupt:
        exit_interrupted()
