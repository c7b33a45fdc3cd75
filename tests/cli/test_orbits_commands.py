"""CLI tests for ``eoskit orbits`` and ``eoskit bifurcation``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import eoskit.cli.orbits  # noqa: F401  (registers the commands)
from eoskit.cli import app

runner = CliRunner()

ORBIT_KEYS = {"kind", "x", "y", "half_amplitude", "residual", "floquet", "stable", "orbit_checks"}
DIRECTION_KEYS = {"eigenvalue", "eta_c", "Q", "side", "degenerate", "supports_orbit",
                  "predicted_half_amplitude"}


def invoke(*args):
    return runner.invoke(app, list(args))


def test_orbits_json_predicted_start():
    r = invoke("orbits", "--objective", "theory-example", "--lr", "1.01", "--predict", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert ORBIT_KEYS <= set(out)
    assert out["kind"] == "period_two" and out["stable"] is True
    assert out["half_amplitude"] ** 2 == pytest.approx(0.0031436, abs=5e-8)
    assert out["residual"] < 1e-10 and len(out["x"]) == 2 and len(out["y"]) == 2
    assert out["orbit_checks"]["averaged_hessian"] < 1e-10
    assert out["orbit_checks"]["kappa_sum"] < 1e-10
    assert all({"re", "im", "abs"} <= set(m) for m in out["floquet"])
    assert max(m["abs"] for m in out["floquet"]) < 1


def test_orbits_json_gd_start_and_point_start():
    r = invoke("orbits", "--objective", "theory-example", "--lr", "1.03", "--x0", "0.01,0",
               "--gd-steps", "3000", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["kind"] == "period_two"
    assert out["half_amplitude"] ** 2 == pytest.approx(0.009136, abs=2e-6)
    r = invoke("orbits", "--objective", "theory-example", "--lr", "1.03", "--x0", "0.01,0",
               "--json")
    out = json.loads(r.stdout)
    assert out["kind"] == "fixed_point" and out["stable"] is False
    assert out["orbit_checks"]["averaged_hessian"] is None
    r = invoke("orbits", "--objective", "theory-example", "--lr", "1.03", "--x0", "0.01,0",
               "--deflate", "--json")
    assert json.loads(r.stdout)["kind"] == "period_two"


def _field(text: str, label: str) -> str:
    """The value printed after ``label`` on its line of the human output."""
    line = next(ln for ln in text.splitlines() if ln.strip().startswith(label))
    return line.strip()[len(label):].split()[0].rstrip(",")


@pytest.mark.parametrize("args,kind,stable", [
    # supercritical: a stable orbit above η_c
    (["--objective", "supercritical-1d", "--lr", "1.02", "--predict"], "period_two", True),
    # subcritical: the orbit below η_c is unstable
    (["--objective", "subcritical-1d", "--lr", "0.99", "--predict"], "period_two", False),
    # the fixed point past η_c is unstable
    (["--objective", "theory-example", "--lr", "1.03", "--x0", "0.01,0"], "fixed_point", False),
])
def test_orbits_human_output_says_what_the_json_says(args, kind, stable):
    human, js = invoke("orbits", *args), invoke("orbits", *args, "--json")
    assert human.exit_code == 0 and js.exit_code == 0, human.output + js.output
    out = json.loads(js.stdout)
    assert out["kind"] == kind and out["stable"] is stable
    assert _field(human.stdout, "kind") == kind
    assert _field(human.stdout, "stable") == str(stable)
    # the half-amplitude a = |x − y|/2 itself (not a²), to the 10 digits printed
    x, y = np.array(out["x"]), np.array(out["y"])
    a = float(np.linalg.norm(x - y)) / 2
    assert float(_field(human.stdout, "half-amplitude")) == pytest.approx(a, rel=1e-9, abs=1e-12)
    assert out["half_amplitude"] == pytest.approx(a, rel=1e-12)


def test_bifurcation_human_output_amplitude():
    args = ["--objective", "theory-example", "--x-star", "0,0", "--lr", "1.01"]
    human, js = invoke("bifurcation", *args), invoke("bifurcation", *args, "--json")
    d0 = json.loads(js.stdout)["directions"][0]
    line = next(ln for ln in human.stdout.splitlines() if ln.strip().startswith("[0]"))
    a = float(line.split("a = ")[1].split()[0])
    # a = √((2/η − λ)/(2Q)) with λ = 2, Q = −3.13 (docs/theory.md worked check)
    assert a == pytest.approx(((2 / 1.01 - 2) / (2 * -3.13)) ** 0.5, rel=1e-5)
    assert a == pytest.approx(d0["predicted_half_amplitude"], rel=1e-5)
    assert "supports orbit at lr=1.01: True" in line


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny digits run whose final parameters are far from its initial ones."""
    from eoskit.training.config import RunConfig
    from eoskit.training.loop import train

    out = tmp_path_factory.mktemp("run") / "run"
    train(RunConfig(dataset="digits", n_train=24, n_test=0, width=3, depth=1, steps=20, lr=0.5,
                    dtype="float64", checkpoint_every=0, sharpness_every=0), out,
          progress=False)
    return out


def test_bifurcation_run_reduces_at_the_final_parameters(trained_run):
    import torch

    from eoskit.training.run_problem import build_problem
    from eoskit.training.stored_run import load_run

    final = torch.load(trained_run / "params_final.pt")
    initial = build_problem(load_run(trained_run).config).x0
    assert float((final - initial).norm()) > 1e-2 * float(initial.norm())
    r = invoke("bifurcation", "--run", str(trained_run), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["x_star_source"] == "run final parameters"
    assert np.array_equal(np.array(out["x_star"]), final.numpy())


def test_bifurcation_json_theory_example():
    r = invoke("bifurcation", "--objective", "theory-example", "--x-star", "0,0", "--lr", "1.01",
               "--neigs", "2", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["x_star"] == [0.0, 0.0]
    assert len(out["directions"]) == 2
    d0, d1 = out["directions"]
    assert DIRECTION_KEYS <= set(d0)
    assert d0["eigenvalue"] == pytest.approx(2.0) and d0["eta_c"] == pytest.approx(1.0)
    assert d0["Q"] == pytest.approx(-3.13) and d0["side"] == "supercritical"
    assert d0["degenerate"] is False and d0["supports_orbit"] is True
    assert d0["predicted_half_amplitude"] ** 2 == pytest.approx(0.0031633, abs=5e-8)
    assert d1["eigenvalue"] == pytest.approx(0.5) and d1["supports_orbit"] is False
    assert d1["predicted_half_amplitude"] is None


def test_bifurcation_without_lr_and_find_minimum():
    r = invoke("bifurcation", "--objective", "double-well", "--x-star", "1.2", "--find-minimum",
               "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["x_star"][0] == pytest.approx(1.0, abs=1e-9)
    d0 = out["directions"][0]
    assert d0["Q"] == pytest.approx(-4.0, abs=1e-6) and d0["supports_orbit"] is None


def test_bifurcation_sweep_writes_png_and_csv(tmp_path):
    out_dir = tmp_path / "bif"
    r = invoke("bifurcation", "--objective", "theory-example", "--sweep", "0.99c:1.04c:6",
               "--out", str(out_dir), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out_dir / "bifurcation.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((out_dir / "bifurcation.csv").open()))
    assert len(rows) == 6
    assert {row["kind"] for row in rows} == {"none", "period_two"}
    assert out["sweep"]["exponent"] == pytest.approx(0.5, abs=0.05)
    assert json.loads((out_dir / "bifurcation.json").read_text())["directions"][0]["Q"] == (
        pytest.approx(-3.13))


def test_user_objective_file(tmp_path):
    src = tmp_path / "myloss.py"
    src.write_text("def loss(x):\n    return x[0] ** 2 + x[0] ** 3 + x[0] ** 4 / 2\n")
    r = invoke("bifurcation", "--objective", f"{src}:loss", "--x-star", "0", "--lr", "1.02",
               "--json")
    assert r.exit_code == 0, r.output
    d0 = json.loads(r.stdout)["directions"][0]
    assert d0["Q"] == pytest.approx(-3.5) and d0["supports_orbit"] is True


@pytest.mark.parametrize("args,needle", [
    (["orbits", "--objective", "theory-example", "--lr", "0"], "--lr must be positive"),
    (["orbits", "--objective", "theory-example", "--lr", "-0.5"], "--lr must be positive"),
    (["orbits", "--objective", "theory-example"], "--lr is required"),
    (["orbits", "--objective", "theory-example", "--lr", "1", "--x0", "1,abc"], "cannot parse"),
    (["orbits", "--objective", "theory-example", "--lr", "1", "--x0", "1,2,3"], "length 3"),
    (["orbits", "--objective", "no-such", "--lr", "1"], "unknown objective"),
    (["orbits", "--objective", "/nonexistent/f.py:f", "--lr", "1"], "not found"),
    (["orbits", "--objective", "theory-example", "--lr", "1", "--x0", "/nonexistent/x.npy"],
     "no such file"),
    (["orbits", "--objective", "theory-example", "--lr", "1.01", "--predict", "--gd-steps", "5"],
     "choose one start"),
    (["orbits", "--objective", "theory-example", "--lr", "0.9", "--predict"],
     "supports no orbit"),
    (["bifurcation", "--objective", "theory-example", "--sweep", "1:2", "--out", "x"],
     "LO:HI:N"),
    (["bifurcation", "--objective", "theory-example", "--sweep", "1:a:3", "--out", "x"],
     "cannot parse"),
    (["bifurcation", "--objective", "theory-example", "--sweep", "2:1:3", "--out", "x"],
     "LO < HI"),
    (["bifurcation", "--objective", "theory-example", "--sweep", "1:2:3"], "needs --out"),
    (["bifurcation", "--objective", "theory-example", "--neigs", "5"], "--neigs"),
    (["bifurcation", "--objective", "linear-net"], "no known fixed point"),
    (["bifurcation", "--objective", "theory-example", "--x-star", "0"], "length 1"),
    (["bifurcation", "--objective", "theory-example", "--lr", "-1"], "--lr must be positive"),
    (["orbits", "--lr", "1"], "exactly one of"),
])
def test_bad_input_exit_2_one_message(args, needle):
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    assert needle in r.stderr
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert r.stderr.strip().count("\n") == 0  # one line
    assert r.stderr.startswith("eoskit: error:")


def test_run_dir_guarded(tmp_path):
    r = invoke("orbits", "--run", str(tmp_path), "--lr", "1")
    try:
        import eoskit.store  # noqa: F401
    except ImportError:
        assert r.exit_code == 2 and "eoskit.store" in r.stderr
    else:  # the store exists: an empty folder is still bad input
        assert r.exit_code == 2
    r = invoke("orbits", "--run", str(tmp_path / "missing"), "--lr", "1")
    assert r.exit_code == 2
