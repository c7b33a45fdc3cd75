"""The shape of the package: public names, module sizes, module names, the import graph.

These guard the redesign's promises: every name of the 0.1 ``__all__`` still
imports; no module over 400 lines and no function over 80; no two modules with one
name; every ``eoskit`` import (at module level or inside a function, a lazy
``__getattr__`` included) points down :data:`LAYERS`, so there is no import circle;
the math packages import no matplotlib and read no files.
"""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

import pytest

import eoskit

SRC = Path(eoskit.__file__).parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# bottom → top (docs: README's Package layout). A module imports only its own package
# (its top-level package, or itself for a top-level module) or a lower layer.
LAYERS = [
    ("_heap", "_threads", "_version", "interrupts"),
    ("objective",),  # Objective on a flat parameter vector, losses, exact layers, products
    ("eigs",),  # eigensolvers and trackers
    # beyond the top eigenvalue; the identities of the edge coupling (κ, residuals, localisation)
    ("spectrum", "diagnostics"),
    ("optim",),  # update rules and their registry; a rule reads κ off the identities
    ("metrics",),  # the metrics.csv contract: columns, rows, summaries of rows
    ("orbits",),  # fixed points, orbits, the reduction, continuation
    # inputs, independent of the math; user components build on the built-in data and
    # models, and objectives to analyse (testfns/) load user files through components/
    ("data", "models"),
    ("components",),
    ("testfns",),
    ("store",),  # the run-directory contract, files
    ("loggers", "plots"),  # where rows go besides the run directory: trackers, figures
    # runs that write run directories: the training run and `eoskit flow`
    ("training", "flows"),
    ("distributed",),  # one run over many processes (wraps the training run's objective)
    ("monitor",),  # your own loop (inside torch.distributed too)
    ("integrations",),  # Lightning and Hugging Face callbacks on the Monitor
    ("sweep", "bench"),
    ("report",),
    ("cli",),
]
# packages and modules that compute; plotting and files live elsewhere
MATH = ("eoskit.objective", "eoskit.eigs", "eoskit.diagnostics", "eoskit.orbits",
        "eoskit.optim", "eoskit.metrics", "eoskit.spectrum")

OLD_ALL = [  # eoskit.__all__ of release 0.1.0
    "EigResult", "ForcingTracker", "FunctionObjective", "ModelObjective", "Objective",
    "PointObjective", "RunConfig", "UpdateRule", "effective_curvature", "hessian_eigs",
    "lanczos", "lobpcg", "stability_threshold", "top_eigenpairs", "train", "load_run",
    "DIAGNOSTIC_COLUMNS", "diagnose_step", "edge_coupling", "edge_coupling_grads",
    "localisation_points", "loss_change_residual", "segment_quadrature",
    "step_recurrence_residual", "find_orbit", "find_minimum", "reduce_at_fixed_point",
    "half_amplitude_coefficient", "bifurcation_sweep", "floquet_multipliers", "orbit_checks",
]


@functools.cache
def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "__main__.py":  # runs the CLI when imported
            continue
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """eoskit modules that ``name`` imports anywhere in its source (resolved to modules)."""
    mods = _modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import sub` imports the submodule when sub is one
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods
                       else node.module for a in node.names]
        else:
            continue
        found.update(t for t in targets if t.split(".")[0] == "eoskit" and t in mods)
    found.discard(name)
    return found


def _package(module: str) -> str:
    """The unit a module belongs to: its top-level package, or the top-level module."""
    return module.split(".")[1]


def _layer(module: str) -> int:
    package = _package(module)
    for level, packages in enumerate(LAYERS):
        if package in packages:
            return level
    raise AssertionError(f"{module}: package {package!r} is in no layer of LAYERS")


def _body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function without its docstring."""
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None),
                                                             ast.Constant):
        doc = body[0]
        return fn.end_lineno - fn.lineno + 1 - (doc.end_lineno - doc.lineno + 1)
    return fn.end_lineno - fn.lineno + 1


def test_every_old_public_name_still_imports():
    for name in OLD_ALL:
        assert getattr(eoskit, name) is not None, name
    assert set(OLD_ALL) <= set(eoskit.__all__)


@pytest.mark.parametrize("name", sorted(_modules()))
def test_every_module_imports_alone(name):
    importlib.import_module(name)


def test_module_and_function_sizes():
    too_long = []
    for name, path in _modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _body_lines(node)
                if n > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {n} lines")
    assert not too_long, too_long


def test_module_names_are_unique():
    by_name: dict[str, list[str]] = {}
    for name in _modules():
        if _modules()[name].name != "__init__.py":
            by_name.setdefault(name.rsplit(".", 1)[-1], []).append(name)
    twice = {n: ms for n, ms in by_name.items() if len(ms) > 1}
    assert not twice, twice


def test_imports_point_down_the_layers():
    upward = []
    for name, path in _modules().items():
        if name == "eoskit":  # the root package re-exports from every layer
            continue
        for dep in sorted(_imports(name, path) - {"eoskit"}):
            same = _package(dep) == _package(name)
            if not same and _layer(dep) >= _layer(name):
                upward.append(f"{name} (layer {_layer(name)}) imports {dep} "
                              f"(layer {_layer(dep)})")
    assert not upward, upward


def test_no_import_circle():
    mods = _modules()
    graph = {name: _imports(name, path) for name, path in mods.items()}
    # the root package only re-exports; a module importing it would close a circle
    assert not [m for m, deps in graph.items() if "eoskit" in deps], "modules import bare eoskit"
    graph.pop("eoskit")
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):  # depth-first search; a grey node met again is a circle
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(dep):]
                                                                     + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)


def test_math_modules_neither_plot_nor_read_files():
    bad = []
    for name, path in _modules().items():
        if not name.startswith(MATH):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] == "matplotlib" or n.startswith("eoskit.plots")
                       for n in names):
                    bad.append(f"{name} imports plotting")
            if isinstance(node, ast.Call):
                fn = node.func
                called = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
                if called in ("open", "read_text", "read_bytes", "read_rows", "read_csv"):
                    bad.append(f"{name} calls {called}")
    assert not bad, bad
