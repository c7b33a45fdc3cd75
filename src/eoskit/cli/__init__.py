"""The ``eoskit`` command line: thin layers over the Python API."""

from __future__ import annotations

import signal
import sys
from typing import NoReturn

import typer

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C

app = typer.Typer(
    name="eoskit",
    help="Edge of Stability toolkit: train, track sharpness, verify the edge-coupling theory.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # each sub-module adds its commands to `app`
    from eoskit.cli import bench, orbits, report, run, sweep  # noqa: F401


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


@app.callback()
def _root() -> None:
    """Edge of Stability toolkit: train, track sharpness, verify the edge-coupling theory."""
