"""Objectives that fail in ``eoskit orbits``/``bifurcation``: exit 2, one line naming the
objective and the step, never a traceback (issue 11)."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from typer.testing import CliRunner

import eoskit.cli.orbits  # noqa: F401  (registers the commands)
from eoskit.cli import app
from eoskit.objective import FunctionObjective
from eoskit.objective.failures import ObjectiveError, checked_callable
from eoskit.orbits import find_orbit, gd_iterates
from eoskit.testfns import load_objective

# L = x² + x³ + x⁴/2 near 0 (η_c = 1); each variant goes wrong once |x| leaves the start's
# neighbourhood, i.e. after x0 = 0.01 has been accepted by the loader
BAD = textwrap.dedent('''
    import torch

    def _ok(x):
        return x[0] ** 2 + x[0] ** 3 + x[0] ** 4 / 2

    def raises_later(x):
        if abs(float(x[0])) > 0.0101:
            raise RuntimeError("boom")
        return _ok(x)

    def nan_later(x):
        return _ok(x) * (float("nan") if abs(float(x[0])) > 0.0101 else 1.0)

    def detached_later(x):
        return _ok(x).detach() if abs(float(x[0])) > 0.0101 else _ok(x)

    def wrong_type_later(x):
        return float(_ok(x)) if abs(float(x[0])) > 0.0101 else _ok(x)

    def raises_near_zero(x):
        # fine at x0; fails as --find-minimum converges on the minimum at 0
        if abs(float(x[0])) < 1e-3:
            raise ValueError("too close")
        return _ok(x)

    def raises_far(x):
        # fine on GD's way in; fails once Newton's iterates reach the orbit (|x| ≈ 0.1)
        if abs(float(x[0])) > 0.05:
            raise ValueError("out of range")
        return _ok(x)
''')


@pytest.fixture(scope="module")
def bad_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("objectives") / "bad.py"
    path.write_text(BAD)
    return path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_line_exit_2(r, *needles):
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("eoskit: warning")]
    assert len(lines) == 1 and lines[0].startswith("eoskit: error: objective "), r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("name,what", [
    ("raises_later", "it raised RuntimeError: boom"),
    ("nan_later", "its gradient is not finite"),
    ("detached_later", "detached from x"),
    ("wrong_type_later", "it returned float, not a scalar tensor"),
])
def test_orbits_gd_steps_objective_fails_after_x0(bad_file, name, what):
    r = invoke("orbits", "--objective", f"{bad_file}:{name}", "--x0", "0.01", "--lr", "1.02",
               "--gd-steps", "50")
    # x_0 = 0.01 is fine; x_1 ≈ −0.0104 is where each of them goes wrong
    _one_line_exit_2(r, f"{bad_file}:{name}", "at GD step 1 of 50", what)


@pytest.mark.parametrize("start,step", [
    ([], "at the start"),  # y0 = x0 − η∇L(x0) ≈ −0.0104
    (["--predict", "--x-star", "0"], "at the start pair of the Newton solve"),  # a ≈ 0.08
    (["--predict", "--x-star", "0.02"], "at the reduction at x*"),
])
@pytest.mark.parametrize("name", ["raises_later", "nan_later", "detached_later"])
def test_orbits_other_starts_name_the_step(bad_file, name, start, step):
    r = invoke("orbits", "--objective", f"{bad_file}:{name}", "--x0", "0.01", "--lr", "1.02",
               *start)
    _one_line_exit_2(r, f"{bad_file}:{name}", step)


def test_failure_inside_the_newton_solve_names_the_iteration(bad_file):
    # a pair start at ±0.045, deflated away from x = y: Newton steps out to the orbit at
    # lr = 1.2 (a ≈ 0.2), past |x| = 0.05
    r = invoke("orbits", "--objective", f"{bad_file}:raises_far", "--x0", "0.045",
               "--y0", "-0.045", "--lr", "1.2", "--deflate", "--json")
    line = _one_line_exit_2(r, "Newton iteration", "it raised ValueError: out of range")
    assert "orbit" not in r.stdout and not r.stdout.strip()  # nothing printed as a result
    assert line.count("failed at") == 1


def test_bifurcation_sweep_failure_names_the_learning_rate(bad_file, tmp_path):
    r = invoke("bifurcation", "--objective", f"{bad_file}:raises_far", "--x-star", "0",
               "--sweep", "1.01:1.2:3", "--out", tmp_path / "bif")
    _one_line_exit_2(r, "in the sweep's orbit at lr=")


def test_bifurcation_find_minimum_failure(bad_file):
    r = invoke("bifurcation", "--objective", f"{bad_file}:raises_near_zero", "--x-star",
               "0.01", "--find-minimum")
    _one_line_exit_2(r, f"{bad_file}:raises_near_zero", "at --find-minimum", "too close")
    # a NaN that GD only probes (and backs off from) is no failure
    r = invoke("bifurcation", "--objective", f"{bad_file}:nan_later", "--x-star", "0.01",
               "--find-minimum", "--json")
    assert r.exit_code == 0 and abs(json.loads(r.stdout)["x_star"][0]) < 1e-9, r.output


def test_a_healthy_objective_is_untouched(bad_file):
    # the wrapper changes no number: the same orbit as the built-in supercritical-1d
    args = ["--x0", "0.01", "--lr", "1.02", "--gd-steps", "400", "--json"]
    mine = invoke("orbits", "--objective", f"{bad_file}:_ok", *args)
    builtin = invoke("orbits", "--objective", "supercritical-1d", *args)
    assert mine.exit_code == 0 and builtin.exit_code == 0, mine.output + builtin.output
    a, b = json.loads(mine.stdout), json.loads(builtin.stdout)
    assert a["x"] == b["x"] and a["y"] == b["y"] and a["floquet"] == b["floquet"]


# ---------------------------------------------------------------- the library underneath
def test_checked_callable_and_gd_iterates_raise_objective_error(bad_file):
    problem = load_objective(f"{bad_file}:nan_later", "0.01")
    with pytest.raises(ObjectiveError, match="GD step 1 of 5: its gradient is not finite"):
        gd_iterates(problem.objective, problem.x0, 1.02, 5)
    one = torch.ones((), dtype=torch.float64)
    obj = FunctionObjective(checked_callable(lambda x: one, "const"), 2)  # no graph to x
    with pytest.raises(ObjectiveError, match="objective const failed.*detached"):
        obj.grad(torch.ones(2, dtype=torch.float64))
    # a probe at a NaN point is not an error by itself (a line search may make one) ...
    nan_obj = FunctionObjective(checked_callable(lambda x: x[0] * float("nan"), "nan"), 1)
    assert torch.isnan(nan_obj.value(torch.ones(1, dtype=torch.float64)))
    # ... but a solve that starts there is
    with pytest.raises(ObjectiveError, match="start pair"):
        find_orbit(nan_obj, 1.0, torch.ones(1, dtype=torch.float64),
                   torch.zeros(1, dtype=torch.float64))


def test_diverging_gd_is_not_blamed_on_the_objective():
    obj = FunctionObjective(lambda x: (x ** 2).sum(), 1)  # GD diverges for η > 1
    with pytest.raises(ValueError, match="GD diverged at lr=3 at step") as err:
        gd_iterates(obj, torch.ones(1, dtype=torch.float64), 3.0, 2000)
    assert not isinstance(err.value, ObjectiveError)


# ---------------------------------------------------------------- --run without parameters
def test_bifurcation_run_without_parameters_is_one_line(tmp_path):
    from eoskit.training.config import RunConfig
    from eoskit.training.loop import train

    run = tmp_path / "run"
    train(RunConfig(dataset="digits", n_train=16, n_test=0, width=3, depth=1, steps=2,
                    dtype="float64", checkpoint_every=0), run, progress=False)
    (run / "params_final.pt").unlink()  # a run stopped before its first checkpoint
    for cmd in (["bifurcation", "--run", run], ["orbits", "--run", run, "--lr", "0.1"]):
        r = invoke(*cmd)
        assert r.exit_code == 2, r.output
        assert r.stderr.strip() == (f"eoskit: error: run {run} has no parameters yet (no "
                                    "params_final.pt, no checkpoint): resume it, or give "
                                    "--x0/--x-star")
