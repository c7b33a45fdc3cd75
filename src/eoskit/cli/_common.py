"""Shared CLI plumbing: one clear message and a fixed exit code for each way a command
can fail, and a command's options generated from a pydantic model's fields.

Exit codes: 0 completed, 1 some sweep runs failed, 2 bad input, 3 diverged,
4 I/O failure (disk full, read-only folder), 130 interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import errno
import functools
import inspect
import types
import typing

import typer

from eoskit.cli.app import EXIT_INTERRUPTED, exit_interrupted  # noqa: F401 (one place for both)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_IO = 0, 1, 2, 3, 4


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


def io_failure(err: OSError) -> str:
    """An OSError as one line naming the path and the errno."""
    code = errno.errorcode.get(err.errno, "?") if err.errno is not None else "?"
    where = f"{err.filename}: " if err.filename is not None else ""
    return f"I/O failure: {where}{err.strerror or err} (errno {err.errno}, {code})"


def handle_errors(fn):
    """Known failures as one message and their exit code, never a traceback: bad input 2,
    I/O failure 4, interrupted 130."""
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
        except OSError as err:
            if err.errno == errno.EPIPE:  # stdout closed early (`| head`): typer's to handle
                raise
            fail(io_failure(err), EXIT_IO)
        except KeyboardInterrupt:
            exit_interrupted()

    return wrapper


# ---------------------------------------------------------------- options from a model
def plain_help(text: str | None) -> str | None:
    """Help shown as written: typer's rich markup would read ``[run]`` as a style tag."""
    if text is None:
        return None
    from eoskit.cli.app import app

    if app.rich_markup_mode != "rich":
        return text
    from rich.markup import escape

    return escape(text)


def _without_none(annotation):
    """``X`` of ``X | None``; other annotations unchanged."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _tuple_item(annotation) -> type | None:
    """``X`` of ``tuple[X, ...]`` (or of its optional); None for any other field."""
    annotation = _without_none(annotation)
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is tuple else None


def _option_type(annotation) -> type:
    """The command-line type of a field: a Literal's value type; a tuple is a list of texts
    (the option repeated, each comma-separated: see :func:`option_values`)."""
    annotation = _without_none(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return type(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) is tuple:
        return list[str]
    return annotation


def list_option(values: str | list[str] | tuple | None) -> list[str] | None:
    """A list-valued option's items: ``--log a --log b`` and ``--log a,b`` both give
    ``["a", "b"]`` (repeated and comma-separated alike mean all of them); None if not given."""
    if values is None:
        return None
    values = [values] if isinstance(values, str) else values
    return [item.strip() for v in values for item in str(v).split(",") if item.strip()]


def _shown_default(value) -> str | bool:
    if value is None:
        return False
    return f"{value:g}" if isinstance(value, float) else str(value)


def model_options(model, skip: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """One typer option per field of the pydantic ``model``: ``--field-name``, help from
    the field's description, and the field's default shown but not passed (every
    option defaults to ``None``, so it overrides a config file only when given).
    """
    params = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        cli_type = _option_type(field.annotation)
        option = typer.Option(None, help=plain_help(field.description),
                              show_default=_shown_default(field.default))
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=cli_type | None))
    return params


def with_model_options(model, *, after: str, skip: tuple[str, ...] = ()):
    """Decorator: the command's ``**fields`` become :func:`model_options` (placed after
    the parameter ``after``), so the model is the one source of its options; ``skip``:
    fields the command defines an option of its own for.
    """
    def decorate(fn):
        sig = inspect.signature(fn, eval_str=True)
        # typer passes every option by keyword
        own = [p.replace(kind=p.KEYWORD_ONLY) for p in sig.parameters.values()
               if p.kind is not p.VAR_KEYWORD]
        i = [p.name for p in own].index(after) + 1
        fn.__signature__ = sig.replace(parameters=own[:i] + model_options(model, skip)
                                        + own[i:])
        return fn

    return decorate


def option_values(model, values: dict) -> dict:
    """Option values in the model's types: a tuple option (repeated and/or comma-separated)
    becomes a tuple."""
    out = dict(values)
    for name, given in values.items():
        item = _tuple_item(model.model_fields[name].annotation)
        if given is None or item is None:
            continue
        text = ",".join(list_option(given))
        try:
            out[name] = tuple(item(c) for c in text.split(","))
        except ValueError as err:
            kind = "integers" if item is int else f"{item.__name__} values"
            raise UsageError(f"--{name.replace('_', '-')} must be comma-separated {kind}, "
                             f"got {text!r}") from err
    return out
