"""The typer application every ``eoskit`` command registers on."""

from __future__ import annotations

import typer

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
