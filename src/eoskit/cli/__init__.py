"""The ``eoskit`` command line: thin layers over the Python API."""

from __future__ import annotations

import typer

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


def main() -> None:
    _register()
    app()


@app.callback()
def _root() -> None:
    """Edge of Stability toolkit: train, track sharpness, verify the edge-coupling theory."""
