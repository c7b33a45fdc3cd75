"""``FILE.py:NAME`` and ``package.module:NAME``: a user's Python object, and the file it came from.

A file is hashed (SHA-256) and executed from the *same bytes*, so the digest a
run records is the digest of the code that ran: a file edited between the
read and the import cannot slip in unrecorded.

>>> is_spec("mymodel.py:Net"), is_spec("pkg.models:build"), is_spec("fc-tanh")
(True, True, False)
>>> import_target("math:sqrt").target(4.0)
2.0
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path


class ComponentError(ValueError):
    """A user component (model, data set, loss, objective) that cannot be loaded or used.

    Its message is one line, whatever the user's exception said (CLI errors are one line).
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True)
class Imported:
    """What a spec resolved to: the object, the file that defines it and that file's SHA-256."""

    spec: str
    target: object
    file: Path | None  # None for a module without a source file (a C extension, a namespace)
    sha256: str | None


def is_spec(name: object) -> bool:
    """Whether ``name`` names an import target rather than a built-in (built-ins have no ``:``)."""
    return isinstance(name, str) and ":" in name


def split_spec(spec: str, what: str = "component",
               error: type[ValueError] = ComponentError) -> tuple[str, str]:
    """``(where, name)`` of ``FILE.py:NAME`` / ``package.module:NAME``, checked for form."""
    where, _, name = spec.strip().rpartition(":")  # rpartition: a Windows drive has a colon too
    if not where or not name.isidentifier():
        raise error(f"{what} {spec!r}: give FILE.py:NAME or package.module:NAME "
                    f"({name!r} is not a Python name)" if where else
                    f"{what} {spec!r}: give FILE.py:NAME or package.module:NAME")
    return where, name


def is_file_spec(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def absolute_spec(spec: str) -> str:
    """A file spec with its path made absolute (so a run rebuilds from any folder); a
    module spec unchanged.

    >>> absolute_spec("pkg.mod:f")
    'pkg.mod:f'
    """
    where, _, name = spec.strip().rpartition(":")
    if where and is_file_spec(where):
        return f"{Path(where).expanduser().resolve()}:{name}"
    return spec.strip()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _exec_file(path: Path, what: str, error: type[ValueError]) -> tuple[types.ModuleType, str]:
    source = path.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    # one module name per file content: dataclasses and pickling look the module up by name
    mod_name = f"_eoskit_user_{digest[:16]}"
    module = types.ModuleType(mod_name)
    module.__file__ = str(path)
    sys.modules[mod_name] = module
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - the user's code
    except (Exception, SystemExit) as err:  # noqa: BLE001 - user code: report, do not trace
        sys.modules.pop(mod_name, None)
        raise error(f"{what}: importing {path} failed: {type(err).__name__}: {err}") from err
    return module, digest


def import_target(spec: str, what: str = "component",
                  error: type[ValueError] = ComponentError) -> Imported:
    """Import ``spec``'s object; ``what`` names it in messages, ``error`` is the class raised."""
    where, name = split_spec(spec, what, error)
    if is_file_spec(where):
        path = Path(where).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{what} file not found: {where}")
        module, digest = _exec_file(path.resolve(), what, error)
        file = path.resolve()
    else:
        # the current folder first, as ``python -m`` has it (the ``eoskit`` script does not)
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(where)
        except (Exception, SystemExit) as err:  # noqa: BLE001 - ImportError, its own failure
            raise error(f"{what}: cannot import module {where!r}: {type(err).__name__}: "
                        f"{err}") from err
        source = getattr(module, "__file__", None)
        file = Path(source) if source and Path(source).is_file() else None
        digest = file_sha256(file) if file is not None else None
    if not hasattr(module, name):
        raise error(f"{what}: {where} has no attribute {name!r}")
    return Imported(spec, getattr(module, name), file, digest)
