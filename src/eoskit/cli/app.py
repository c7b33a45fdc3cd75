"""The typer application every ``eoskit`` command registers on."""

from __future__ import annotations

import sys
import warnings
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


@app.callback()
def _root() -> None:
    """Edge of Stability toolkit: train, track sharpness, verify the edge-coupling theory."""


def exit_interrupted(message: str = "interrupted") -> NoReturn:
    """The one way a command ends on Ctrl-C or SIGTERM: one line, exit 130."""
    print(f"eoskit: {message}", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    if category.__module__.split(".")[0] == "eoskit":
        return f"eoskit: warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


def one_line_warnings() -> None:
    """eoskit's own warnings (a skipped checkpoint, say) print as ``eoskit: warning: ...``,
    without Python's file name and source line; other libraries' keep Python's format."""
    warnings.formatwarning = _format_warning
