"""The ``eoskit`` command line: thin layers over the Python API."""

from __future__ import annotations

from eoskit.cli.app import app


def _register() -> None:
    # each sub-module adds its commands to `app`
    from eoskit.cli import bench, flow, orbits, report, run, sweep  # noqa: F401


def main() -> None:
    _register()
    app()
