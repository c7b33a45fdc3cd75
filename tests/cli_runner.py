"""The ``eoskit`` command in-process, for tests: one invocation helper and the one-line check."""

from __future__ import annotations

from typer.testing import CliRunner


def invoke(*args):
    """``eoskit ARGS`` in this process (paths may be given as ``Path``); typer's result."""
    from eoskit.cli import _register, app

    _register()
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(result) -> str:
    """The only line the command wrote on stderr (a failure is one line, never a traceback)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]
