"""The ``eoskit`` command line: thin layers over the Python API."""

from __future__ import annotations

import signal
import sys
from typing import NoReturn

from eoskit.cli.app import app

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C


def _register() -> None:
    # each sub-module adds its commands to `app`
    from eoskit.cli import bench, flow, orbits, report, run, sweep  # noqa: F401


def exit_interrupted(message: str = "interrupted") -> NoReturn:
    """The one way a command ends on Ctrl-C or SIGTERM: one line, exit 130."""
    print(f"eoskit: {message}", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)


def main() -> None:
    """The ``eoskit`` command; Ctrl-C or SIGTERM while it starts up is one line too."""
    try:
        # a scheduler's SIGTERM ends a command like Ctrl-C (a run records 'interrupted')
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        _register()
        app()
    except KeyboardInterrupt:
        exit_interrupted()
