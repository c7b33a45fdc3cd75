"""What a run records of its user components, and the check that they are unchanged.

``config.json`` holds ``components``: for each of ``model``, ``dataset``,
``loss`` given as an import spec, ``{"spec", "file", "sha256"}``. A run is
rebuilt (``--resume``, :func:`eoskit.load_run`, ``report``, ``bifurcation
--run``) only from the same bytes: a changed file would silently give other
parameters (or none that fit the checkpoint).

>>> from pathlib import Path
>>> rec = {"model": {"spec": "m.py:Net", "file": "/m.py", "sha256": "ab" * 32}}
>>> check_unchanged(rec, rec)
>>> try:
...     check_unchanged(rec, {"model": {**rec["model"], "sha256": "cd" * 32}})
... except ComponentChanged as err:
...     print(str(err)[:47])
model file /m.py changed since the run started
"""

from __future__ import annotations

from eoskit.components.imports import ComponentError, Imported


class ComponentChanged(ComponentError):
    """A user component's file differs from the one the run started with."""


def record_of(imported: Imported) -> dict:
    return {"spec": imported.spec, "file": str(imported.file) if imported.file else None,
            "sha256": imported.sha256}


def spec_record(spec: str) -> dict:
    """The record of an import spec without running it (``importlib.util.find_spec`` for a
    module): for readers such as ``eoskit flow --objective`` that import it their own way."""
    import importlib.util
    from pathlib import Path

    from eoskit.components.imports import file_sha256, is_file_spec

    where = spec.rpartition(":")[0]
    if is_file_spec(where):
        path = Path(where).expanduser().resolve()
    else:
        found = importlib.util.find_spec(where)
        path = Path(found.origin) if found is not None and found.origin else None
    path = path if path is not None and path.is_file() else None
    return {"spec": spec, "file": str(path) if path else None,
            "sha256": file_sha256(path) if path else None}


def check_files(recorded: dict | None) -> None:
    """:func:`check_unchanged` on the recorded files' bytes alone, importing nothing (for
    readers of a run directory, such as ``eoskit report``, that rebuild no model)."""
    from pathlib import Path

    from eoskit.components.imports import file_sha256

    current = {}
    for kind, rec in (recorded or {}).items():
        path = Path(rec["file"]) if rec.get("file") else None
        if path is not None and not path.is_file():
            raise ComponentChanged(f"{kind} file {path} no longer exists (the run started "
                                   "with it); restore it, or start a new run")
        current[kind] = {**rec, "sha256": file_sha256(path) if path else rec.get("sha256")}
    check_unchanged(recorded, current)


def check_unchanged(recorded: dict | None, current: dict) -> None:
    """Raise :class:`ComponentChanged` unless every recorded component has the same digest.

    A run recorded before components were recorded (``recorded`` is None) passes.
    """
    if recorded is None:
        return
    for kind in sorted(set(recorded) | set(current)):
        then, now = recorded.get(kind), current.get(kind)
        if then is None or now is None:
            raise ComponentChanged(f"{kind}: the run started with "
                                   f"{then['spec'] if then else 'a built-in'}, now "
                                   f"{now['spec'] if now else 'a built-in'} is configured")
        if then.get("sha256") != now.get("sha256"):
            raise ComponentChanged(
                f"{kind} file {now.get('file') or then.get('file')} changed since the run started "
                f"(sha256 {str(then.get('sha256'))[:12]}… then, {str(now.get('sha256'))[:12]}… "
                "now); restore it, or start a new run")
