"""Every shipped example configuration is one the commands accept (the README runs them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eoskit.sweep.spec import load_sweep
from eoskit.training.config import load_toml, run_config_from

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.toml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_configuration_is_valid(path):
    data = load_toml(path)
    if "grid" in data:
        spec = load_sweep(path)  # validates every grid point's configuration
        assert spec is not None
    else:
        cfg = run_config_from(path, {})
        assert cfg.steps >= 1 and cfg.lr > 0
        if path.name.startswith("flow_"):  # eoskit flow follows GD or RMSProp only
            assert cfg.optimizer in ("gd", "rmsprop")


@pytest.mark.parametrize("extra, needle", [
    ("[grid]\nlr = [0.1, 0.2]\n", "is a sweep file (it has a [grid] table)"),
    ("[lgo]\nloggers = []\n", "unknown table or key lgo beside [run]"),
])
@pytest.mark.parametrize("command", ["run", "flow"])
def test_a_runs_file_with_an_unknown_table_exits_2(tmp_path, extra, needle, command):
    """A [grid] given to `eoskit run` (or a typo'd table) used to be ignored silently."""
    from typer.testing import CliRunner

    from eoskit.cli import _register, app

    _register()
    path = tmp_path / "c.toml"
    path.write_text('[run]\ndataset = "teacher"\nsteps = 2\n' + extra)
    r = CliRunner().invoke(app, [command, "--config", str(path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()  # refused before anything is written
