"""Reference flows: gradient flow, the central flow of GD, and ``eoskit flow`` (float64, tiny)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import eoskit.cli.flow  # noqa: F401  (registers the command)
from eoskit import store
from eoskit.cli import app
from eoskit.flows.central import CentralFlow, pair_gradients
from eoskit.flows.complementarity import closed_form, residuals, solve_cvxpy
from eoskit.flows.flow_run import FlowSettings, run_flows
from eoskit.flows.flow_summary import loss_error_by_window
from eoskit.flows.gradient import GradientFlowSettings, integrate
from eoskit.objective import FunctionObjective
from tests import references as R

F64 = torch.float64


def _quadratic(seed=0, d=4, top=3.0):
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, dtype=F64, generator=gen))
    A = Q @ torch.diag(torch.linspace(0.5, top, d, dtype=F64)) @ Q.T
    x0 = torch.randn(d, dtype=F64, generator=gen)
    return FunctionObjective(lambda x: 0.5 * x @ A @ x, d), A, x0


def _exact(A, x0, lr, t):
    return torch.as_tensor(scipy.linalg.expm(-t * lr * A.numpy()) @ x0.numpy())


def _tanh_mlp(n=8, d_in=3, hidden=6, seed=0):
    """A 3-6-1 tanh net on 8 synthetic points (31 parameters): at η = 0.8 GD reaches the
    edge within a few steps and stays there (measured ratio λ/(2/η) ≈ 0.98 to 1.02)."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in, generator=gen, dtype=F64)
    y = torch.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2]
    a, b = d_in * hidden, d_in * hidden + hidden

    def loss(x):
        h = torch.tanh(X @ x[:a].reshape(hidden, d_in).T + x[a:b])
        return 0.5 * ((h @ x[b:b + hidden] + x[-1] - y) ** 2).mean()

    d = b + hidden + 1
    return FunctionObjective(loss, d), torch.randn(d, generator=gen, dtype=F64) * 0.5


# ---------------------------------------------------------------- gradient flow
@pytest.mark.parametrize("method,rtol,tol", [("RK45", 1e-6, 2e-6), ("DOP853", 1e-10, 1e-9)])
def test_gradient_flow_on_a_quadratic_is_the_matrix_exponential(method, rtol, tol):
    obj, A, x0 = _quadratic()
    lr, t = 0.3, 5.0
    x, info = integrate(obj, x0, lr, t, GradientFlowSettings(method, rtol, rtol * 1e-3))
    err = float((x - _exact(A, x0, lr, t)).norm() / x0.norm())
    assert err < tol, err
    assert info["grads"] > 0


# ---------------------------------------------------------------- central flow
def _central(obj, x, lr, substeps, duration, **kw):
    flow = CentralFlow(lr, substeps=substeps, k=2, **kw)
    points = []
    for _ in range(duration):
        x, p = flow.advance(obj, x)
        points += p
    return x, points


def test_central_flow_with_nothing_constrained_is_gradient_flow():
    obj, A, x0 = _quadratic(top=3.0)
    lr, t = 0.1, 3  # 2/η = 20 ≫ λ_max = 3: nothing reaches fraction·2/η
    ends, errors = [], []
    exact = _exact(A, x0, lr, t)
    for k in (8, 16):
        x, points = _central(obj, x0, lr, k, t)
        assert all(p.n_constrained == 0 and p.trace_sigma == 0 for p in points)
        ends.append(x)
        errors.append(float((x - exact).norm() / x0.norm()))
    # explicit Euler: first order in dt = 1/K (measured 6.5e-3, 3.3e-3) ...
    assert errors[1] < 4e-3
    assert errors[0] / errors[1] == pytest.approx(2.0, rel=0.05)
    # ... so its Richardson extrapolation is gradient flow to second order (measured ~1e-5)
    extrapolated = 2 * ends[1] - ends[0]
    assert float((extrapolated - exact).norm() / x0.norm()) < 1e-4


def test_closed_form_X_agrees_with_cvxpy_on_one_constrained_eigenvalue():
    # λ₁ = 3 + x₂ along e₁ (one constrained direction at η = 0.8, 2/η = 2.5)
    obj = FunctionObjective(lambda x: 0.5 * (3 + x[1]) * x[0] ** 2 + 0.5 * x[1] ** 2, 2)
    x = torch.tensor([0.0, 0.2], dtype=F64)
    lr, dt = 0.8, 0.25
    lam = float(torch.linalg.eigvalsh(obj.hessian(x))[-1])
    u = torch.tensor([[1.0], [0.0]], dtype=F64)
    J = pair_gradients(obj, x, u)  # (1, 2): ∇(uᵀHu) = ∇λ₁ = (0, 1)
    assert J[0].tolist() == pytest.approx([0.0, 1.0])
    g = obj.grad(x)
    alpha = np.array([[2 / lr - lam + dt * lr * float(J[0] @ g)]])
    gram = np.array([[dt * lr / 2 * float(J[0] @ J[0])]])
    X_closed = closed_form(alpha[0, 0], gram[0, 0])
    X_cvx = solve_cvxpy(alpha, gram)
    assert X_closed > 0
    assert X_cvx[0, 0] == pytest.approx(X_closed, rel=1e-7)
    r = residuals(alpha, gram, np.array([[X_closed]]))
    assert abs(r["gap"]) < 1e-12 and r["z_min_eig"] > -1e-12


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), log_b=st.floats(-6, 14), log_a=st.floats(-4, 4))
@example(seed=221, log_b=4.46875, log_a=1.0)  # the solver's own accuracy there: 3.1e-5
def test_cvxpy_X_solves_the_complementarity_problem_at_any_scale(seed, log_b, log_a):
    """KKT conditions relative to the problem's own scales (alpha ~ 10^a, B ~ 10^b, so
    X ~ 10^(a−b)). At the start of RMSProp's edge B/alpha is ~1e10 and X was five orders
    of magnitude too large before the solver saw X at order one."""
    rng = np.random.default_rng(seed)
    m = 2
    J = rng.normal(size=(m * m, 5))
    J[1] = J[2]  # B acts on symmetric X: the (0,1) and (1,0) rows are one pair gradient
    gram = 10.0 ** log_b * (J @ J.T)
    A = rng.normal(size=(m, m))
    alpha = 10.0 ** log_a * (A + A.T) / 2
    assume(np.linalg.eigvalsh(alpha).min() < 0)  # otherwise X = 0 without a solve
    X = solve_cvxpy(alpha, gram)
    a, x_scale = np.abs(alpha).max(), 10.0 ** (log_a - log_b)
    r = residuals(alpha, gram, X)
    assert r["x_min_eig"] > -1e-7 * x_scale
    assert r["z_min_eig"] > -1e-6 * a
    assert abs(r["gap"]) < 1e-6 * a * x_scale * np.abs(J).max() ** -2
    # and X scales as alpha/B: the same problem at B·c has X/c (the bug this guards was five
    # orders of magnitude; the two solves see the same normalised program up to rounding,
    # and on an ill-conditioned one, the @example above, their X differ by 3.1e-5 of it)
    X2 = solve_cvxpy(alpha, 1e3 * gram)
    assert np.abs(X2 * 1e3 - X).max() < 1e-4 * np.abs(X).max() + 1e-12 * x_scale


def test_central_flow_holds_the_edge_where_gd_reaches_it():
    obj, x0 = _tanh_mlp()
    lr = 0.8
    _, points = _central(obj, x0, lr, 2, 16, eig_tol=1e-6)
    ratios = np.array([p.eigenvalues[0] * lr / 2 for p in points])
    active = np.array([p.trace_sigma > 0 for p in points])
    assert active[6:].all()  # the edge is reached within three steps and held
    # measured: λ₁η/2 climbs 0.998, 0.9996 on the first active substeps, then stays
    # within 4.4e-5 of 1 (eig_tol 1e-6, K = 2)
    assert np.abs(ratios[10:] - 1).max() < 1e-4
    # without the oscillation term this would be gradient flow, which sharpens past the edge
    x_gf, _ = integrate(obj, x0, lr, 16)
    lam_gf = float(torch.linalg.eigvalsh(obj.hessian(x_gf))[-1])
    assert lam_gf * lr / 2 > 1.1


# ---------------------------------------------------------------- driver and resume
def _settings(**kw):
    base = dict(lr=0.8, steps=8, every=2, substeps=1, neigs=2, window=5, checkpoint_every=4)
    return FlowSettings(**{**base, **kw})


def test_resumed_rows_equal_uninterrupted_ones(tmp_path):
    obj, x0 = _tanh_mlp()
    full = run_flows(obj, x0, _settings(), tmp_path / "full")
    part = run_flows(obj, x0, _settings(), tmp_path / "part", stop_at=4)
    assert part["status"] == "interrupted"
    resumed = run_flows(obj, x0, _settings(), tmp_path / "part", resume=True)
    assert resumed["status"] == "completed"
    a, b = store.read_csv(tmp_path / "full" / "flows.csv"), store.read_csv(
        tmp_path / "part" / "flows.csv")
    assert len(a) == 5 * 3 and a == b
    assert full["flows"] == resumed["flows"]
    # GD's raw per-step table: every step once, also across the resume
    steps_a = store.read_csv(tmp_path / "full" / "gd_steps.csv")
    assert steps_a == store.read_csv(tmp_path / "part" / "gd_steps.csv")
    assert [int(r["step"]) for r in steps_a] == list(range(9))
    assert full["loss_error_by_window"] == resumed["loss_error_by_window"]


def test_a_finished_run_resumes_to_its_summary_and_nothing_changes(tmp_path):
    obj, x0 = _tanh_mlp()
    seen = []
    done = run_flows(obj, x0, _settings(), tmp_path, on_record=seen.append)
    assert [r["step"] for r in seen] == [0, 2, 4, 6, 8] and all(r["flow"] == "gd" for r in seen)
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.rglob("*")
             if p.is_file()}
    again = run_flows(obj, x0, _settings(), tmp_path, resume=True, on_record=seen.append)
    assert again == store.read_json(tmp_path / "summary.json") and again["status"] == "completed"
    assert again["flows"] == done["flows"] and len(seen) == 5  # no step was run again
    assert files == {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.rglob("*")
                     if p.is_file()}


def _plain_gd(loss, x0, lr, steps):
    xs = [x0.clone()]
    for _ in range(steps):
        x = xs[-1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(x), x)
        xs.append((x - lr * g).detach())
    return xs


def test_gd_rows_against_a_plain_loop_and_dense_eigenvectors(tmp_path):
    obj, x0 = _tanh_mlp()
    lr, steps = 0.8, 8
    run_flows(obj, x0, _settings(flows=("gradient",), eig_tol=1e-8), tmp_path)
    xs = _plain_gd(obj.f, x0, lr, steps + 1)
    raw = store.read_csv(tmp_path / "gd_steps.csv")
    for r in raw:
        assert float(r["loss"]) == pytest.approx(float(obj.f(xs[int(r["step"])])),
                                                 rel=1e-12)
    gd = [r for r in store.read_csv(tmp_path / "flows.csv") if r["flow"] == "gd"]
    for r in gd:
        t = int(r["step"])
        H = R.dense_hessian(obj.f, xs[t])
        U = torch.linalg.eigh(H).eigenvectors[:, -2:]  # the top two (neigs = 2)
        c = U.T @ (xs[t + 1] - xs[t])
        assert float(r["trace_half_amplitude_sq"]) == pytest.approx(float(c @ c) / 4,
                                                                    rel=1e-6, abs=1e-14)
        assert float(r["half_amplitude_sq"]) == pytest.approx(float(c[-1] ** 2) / 4,
                                                              rel=1e-6, abs=1e-14)


def test_loss_error_by_window_is_the_centred_mean_of_the_raw_losses():
    raw = [{"step": t, "loss": 1.0 + 0.1 * t + 0.5 * (-1) ** t} for t in range(30)]
    rows = [{"step": t, "flow": "central", "predicted_loss": 2.0} for t in (10, 20)]
    rows += [{"step": 5, "flow": "central", "predicted_loss": 9.0}]  # before onset: ignored
    got = loss_error_by_window(rows, raw, onset=10, windows=(3, 51))
    losses = np.array([r["loss"] for r in raw])
    want3 = np.median([abs(2.0 - losses[t - 1:t + 2].mean()) / losses[t - 1:t + 2].mean()
                       for t in (10, 20)])
    want51 = np.median([abs(2.0 - losses.mean()) / losses.mean()] * 2)  # cut at both ends
    assert got["central"]["3"] == pytest.approx(want3, rel=1e-12)
    assert got["central"]["51"] == pytest.approx(want51, rel=1e-12)


# ---------------------------------------------------------------- CLI
runner = CliRunner()


def test_flow_cli_end_to_end_on_a_function_objective(tmp_path):
    src = tmp_path / "loss.py"
    src.write_text("def loss(x):\n    return ((x[0] ** 2 - 1) ** 2 / 4 + x[1] ** 2 / 2)\n")
    out = tmp_path / "out"
    r = runner.invoke(app, ["flow", "--objective", f"{src}:loss", "--x0", "1.3,0.5",
                            "--lr", "0.9", "--steps", "12", "--every", "2", "--substeps", "2",
                            "--neigs", "1", "--window", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    for name in ("flows.csv", "summary.json", "flow_config.json", "plots/flows_loss.png",
                 "plots/flows_sharpness.png", "plots/flows_distance.png",
                 "plots/flows_sigma.png", "gd_steps.csv"):
        assert (out / name).is_file(), name
    rows = store.read_rows(out / "flows.csv")
    assert {r["flow"] for r in rows} == {"gd", "gradient", "central"}
    assert [r["step"] for r in rows if r["flow"] == "gd"] == list(range(0, 13, 2))
    summary = store.read_json(out / "summary.json")
    assert summary["status"] == "completed" and set(summary["flows"]) == {"gd", "gradient",
                                                                          "central"}


@pytest.mark.parametrize("args,needle", [
    (["--objective", "double-well", "--lr", "-1"], "lr must be positive"),
    (["--objective", "double-well", "--lr", "1", "--flows", "rmsprop"], "flows must be"),
    (["--objective", "double-well", "--lr", "1", "--steps", "5", "--every", "2"], "multiple"),
    (["--lr", "1"], "exactly one of"),
    (["--objective", "no-such-builtin", "--lr", "1"], "unknown objective"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, needle):
    r = runner.invoke(app, ["flow", *args, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert needle in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_resume_refuses_a_checkpoint_without_gd_steps(tmp_path):
    """A checkpoint of an older eoskit has no raw GD steps: resuming it would leave
    gd_steps.csv starting mid-run and the per-window loss errors misaligned."""
    obj, x0 = _tanh_mlp()
    run_flows(obj, x0, _settings(), tmp_path, stop_at=4)
    state, _ = store.load_latest_checkpoint(tmp_path / "checkpoints")
    del state["gd_steps"]
    store.save_checkpoint(tmp_path / "checkpoints", int(state["step"]), state, keep=3)
    with pytest.raises(ValueError, match="without gd_steps.csv; start the run again"):
        run_flows(obj, x0, _settings(), tmp_path, resume=True)
