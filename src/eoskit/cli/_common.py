"""Shared CLI plumbing: one clear message and a fixed exit code for bad input."""

from __future__ import annotations

import functools
import sys

import typer

EXIT_OK, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_FAILED = 0, 2, 3, 1


class UsageError(ValueError):
    """Bad input found by eoskit's own checks (reported without a traceback)."""


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    typer.echo(f"eoskit: error: {message}", err=True)
    raise typer.Exit(code)


def format_validation_error(err) -> str:
    """pydantic's ValidationError as one line per field: 'field: what is wrong'."""
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e.get("loc", ())) or "config"
        parts.append(f"{field}: {e.get('msg')}")
    return "; ".join(parts)


def handle_errors(fn):
    """Turn eoskit's known input errors into exit 2 with one message, never a traceback."""
    from pydantic import ValidationError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except ValidationError as err:
            fail(f"invalid configuration: {format_validation_error(err)}")
        except (UsageError, FileNotFoundError) as err:
            fail(str(err))
        except ValueError as err:
            # data/model/objective errors are ValueErrors raised on bad input
            fail(str(err))
        except KeyboardInterrupt:
            typer.echo("eoskit: interrupted", err=True)
            sys.exit(130)

    return wrapper
