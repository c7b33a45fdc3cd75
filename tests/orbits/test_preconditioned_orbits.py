"""Orbits and the reduction with a fixed diagonal preconditioner (eoskit.orbits.preconditioned_gd).

The analytic case: ``L(x) = f(D x)`` with ``D = diag(d)`` and ``P = D²``. Then
``z = P^{1/2} x = D x`` and ``L(P^{-1/2} z) = f(z)``: every preconditioned answer is
the unpreconditioned answer for ``f`` in the scaled variables ``u = D x``
(orbit points ``x = u/d``, the same ``η_c``, ``Q``, amplitudes and multipliers).
The orbit is also checked directly against the preconditioned GD map.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import eoskit.cli.orbits  # noqa: F401  (registers the commands)
from eoskit.cli import app
from eoskit.objective import FunctionObjective
from eoskit.orbits import (
    PreconditionedObjective,
    find_orbit,
    orbit_to_x,
    reduce_at_fixed_point,
    reduction_to_x,
)
from eoskit.testfns import theory_example
from tests import references as R

D64 = torch.float64
SCALE = torch.tensor([0.5, 3.0], dtype=D64)
runner = CliRunner()


def scaled(x):
    return theory_example(SCALE * x)


def _pair():
    plain = FunctionObjective(theory_example, 2)
    pobj = PreconditionedObjective(FunctionObjective(scaled, 2), SCALE ** 2)
    return plain, pobj


def test_preconditioned_objective_is_the_scaled_one():
    _, pobj = _pair()
    z = torch.tensor([0.3, -0.2], dtype=D64)
    x = pobj.to_x(z)
    assert torch.allclose(x, z / SCALE, atol=0, rtol=1e-15)
    # L̃(z) = f(z); ∇L̃ = P^{-1/2}∇L; ∇²L̃ = P^{-1/2} H P^{-1/2} (dense, double backward)
    assert float(pobj.value(z)) == pytest.approx(float(theory_example(z)), abs=1e-15)
    g_x = R.dense_grad(scaled, x)
    assert torch.allclose(pobj.grad(z), g_x / SCALE, atol=1e-14)
    H_x = R.dense_hessian(scaled, x)
    assert torch.allclose(pobj.hessian(z), H_x / SCALE[:, None] / SCALE[None, :], atol=1e-13)


def test_reduction_with_p_is_the_plain_one_in_scaled_variables():
    plain, pobj = _pair()
    ref = reduce_at_fixed_point(plain, torch.zeros(2, dtype=D64), k=2)
    red = reduction_to_x(reduce_at_fixed_point(pobj, torch.zeros(2, dtype=D64), k=2), pobj)
    # η_c = 2/λ₁(P⁻¹H) from a dense eigensolve of P⁻¹H at x* = 0
    H = R.dense_hessian(scaled, torch.zeros(2, dtype=D64))
    lam1 = float(torch.linalg.eigvals(torch.diag(1 / SCALE ** 2) @ H).real.max())
    assert red.directions[0].eta_c == pytest.approx(2 / lam1, rel=1e-12)
    for a, b in zip(red.directions, ref.directions, strict=True):
        assert a.eta_c == pytest.approx(b.eta_c, rel=1e-10)
        assert a.Q == pytest.approx(b.Q, rel=1e-8)
        # the direction in x is an eigenvector of P⁻¹H (= v_f / d up to sign)
        v = a.eigenvector / a.eigenvector.norm()
        w = b.eigenvector / SCALE
        w = w / w.norm()
        assert min(float((v - w).norm()), float((v + w).norm())) < 1e-10
    xa, xb = red.predicted_orbit(1.01)
    ua, ub = ref.predicted_orbit(1.01)
    assert torch.allclose(SCALE * xa, ua, atol=1e-12) and torch.allclose(SCALE * xb, ub, atol=1e-12)


def test_orbit_with_p_is_a_period_two_orbit_of_preconditioned_gd():
    plain, pobj = _pair()
    lr = 1.01
    ref = find_orbit(plain, lr, *reduce_at_fixed_point(plain, torch.zeros(2, dtype=D64))
                     .predicted_orbit(lr))
    red_z = reduce_at_fixed_point(pobj, torch.zeros(2, dtype=D64))
    res = orbit_to_x(find_orbit(pobj, lr, *red_z.predicted_orbit(lr)), pobj)
    assert res.kind == "period_two" and res.converged and res.stable
    assert res.half_amplitude == pytest.approx(ref.half_amplitude, rel=1e-9)
    assert torch.allclose(SCALE * res.x, ref.x, atol=1e-10)
    # y = x − ηP⁻¹∇L(x) and x = y − ηP⁻¹∇L(y), with ∇L by autograd on L itself
    p = SCALE ** 2

    def step(v):
        return v - lr * R.dense_grad(scaled, v) / p

    assert torch.allclose(step(res.x), res.y, atol=1e-10)
    assert torch.allclose(step(res.y), res.x, atol=1e-10)
    assert float(torch.sqrt(((res.x - res.y) ** 2 * p).sum())) / 2 == pytest.approx(
        res.half_amplitude, rel=1e-12)
    assert np.allclose(np.abs(res.floquet), np.abs(ref.floquet), atol=1e-8)


# ---------------------------------------------------------------- the CLI
@pytest.fixture
def files(tmp_path):
    src = tmp_path / "scaled_loss.py"
    src.write_text("import torch\nfrom eoskit.testfns import theory_example\n"
                   "D = torch.tensor([0.5, 3.0], dtype=torch.float64)\n"
                   "def loss(x):\n    return theory_example(D * x)\n")
    p = tmp_path / "p.npy"
    np.save(p, np.array([0.25, 9.0]))
    return src, p


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_bifurcation_and_orbits_with_precond(files):
    src, p = files
    r = invoke("bifurcation", "--objective", f"{src}:loss", "--x-star", "0,0", "--precond", p,
               "--neigs", "2", "--lr", "1.01", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    ref = json.loads(invoke("bifurcation", "--objective", "theory-example", "--neigs", "2",
                            "--lr", "1.01", "--json").stdout)
    for a, b in zip(out["directions"], ref["directions"], strict=True):
        assert a["eta_c"] == pytest.approx(b["eta_c"], rel=1e-10)
        assert a["Q"] == pytest.approx(b["Q"], rel=1e-8)
    assert out["precond"] == str(p)
    r = invoke("orbits", "--objective", f"{src}:loss", "--x-star", "0,0", "--precond", p,
               "--lr", "1.01", "--predict", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    ref = json.loads(invoke("orbits", "--objective", "theory-example", "--lr", "1.01",
                            "--predict", "--json").stdout)
    assert out["half_amplitude"] == pytest.approx(ref["half_amplitude"], rel=1e-9)
    assert np.allclose(np.array(out["x"]) * [0.5, 3.0], ref["x"], atol=1e-10)


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("text", "cannot read"),
    (np.array([1.0, 2.0, 3.0]), "length 3"),
    (np.array([1.0, 0.0]), "positive"),
    (np.array([1.0, -2.0]), "positive"),
    (np.array([1.0, np.nan]), "non-finite"),
    (np.ones((2, 1)), "1-D"),
    (np.array(["a", "b"]), "real numbers"),
])
@pytest.mark.parametrize("command", ["orbits", "bifurcation"])
def test_cli_bad_precond_exits_2_with_one_message(tmp_path, content, message, command):
    path = tmp_path / "p.npy"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        np.save(path, content)
    args = ["--objective", "theory-example", "--precond", path, "--lr", "1.01"]
    if command == "orbits":
        args.append("--predict")
    r = invoke(command, *args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
