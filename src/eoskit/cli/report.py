"""``eoskit report``: one self-contained HTML page for a run or a sweep directory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from eoskit.cli._common import UsageError, handle_errors
from eoskit.cli.app import app


@app.command("report")
@handle_errors
def report_cmd(
    directory: Path = typer.Argument(..., help="A run directory or a sweep directory."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write here instead of "
                                       "DIR/report.html."),
) -> None:
    """Write DIR/report.html: figures embedded, summary, identities, configuration; offline."""
    from eoskit.report import write_report

    if not directory.exists():
        raise UsageError(f"{directory} does not exist")
    path = write_report(directory, out)
    typer.echo(str(path))
