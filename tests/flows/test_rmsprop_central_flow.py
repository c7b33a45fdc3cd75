"""The central flow of RMSProp (eoskit.flows.rmsprop_central) against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import eoskit.cli.flow  # noqa: F401  (registers the command)
from eoskit import store
from eoskit.cli import app
from eoskit.flows.flow_run import FlowSettings, run_flows
from eoskit.flows.gradient import GradientFlowSettings
from eoskit.flows.rmsprop_central import RMSPropCentralFlow, initial_nu, integrate_stable
from eoskit.objective import FunctionObjective
from tests import references as R

F64 = torch.float64


def _euler(obj, w, nu, flow, steps):
    dt = 1.0 / flow.substeps
    for _ in range(steps * flow.substeps):
        p = flow.point(obj, w, nu)
        w, nu = w + dt * p.velocity, nu + dt * p.nu_velocity
    return w, nu, p


def _tanh_net(seed=0, n=6, hidden=4):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=gen, dtype=F64)
    y = torch.sin(X[:, 0]) - X[:, 1]
    a = 2 * hidden

    def loss(x):
        h = torch.tanh(X @ x[:a].reshape(hidden, 2).T)
        return 0.5 * ((h @ x[a:a + hidden] - y) ** 2).mean()

    d = a + hidden
    return FunctionObjective(loss, d), torch.randn(d, generator=gen, dtype=F64) * 0.5, loss


def test_on_a_diagonal_quadratic_the_flow_predicts_rmsprops_two_cycle():
    """½Σa_k x_k²: RMSProp settles into x_k = ±η/2 in every coordinate (torch.optim.RMSprop);
    the central flow holds both preconditioned eigenvalues at 2/η through ν alone (J = 0)
    and its Σ = P^{-1/2}XP^{-1/2} has diagonal (η/2)²."""
    a = torch.tensor([4.0, 1.0], dtype=F64)
    obj = FunctionObjective(lambda x: 0.5 * (a * x * x).sum(), 2)
    lr, rho = 0.5, 0.9
    x = torch.tensor([1.0, 1.0], dtype=F64, requires_grad=True)
    opt = torch.optim.RMSprop([x], lr=lr, alpha=rho)
    for _ in range(300):
        opt.zero_grad()
        (0.5 * (a * x * x).sum()).backward()
        opt.step()
    amplitude = x.detach().abs()
    w0 = torch.tensor([1.0, 1.0], dtype=F64)
    flow = RMSPropCentralFlow(lr, alpha=rho, substeps=4, k=2, eig_tol=1e-10)
    w, nu, p = _euler(obj, w0, initial_nu(obj.grad(w0), rho), flow, 60)
    np.testing.assert_allclose(p.eigenvalues, [2 / lr, 2 / lr], rtol=1e-6)
    P = nu.sqrt() + flow.eps
    sigma_diag = torch.as_tensor(np.diag(p.X)) / P
    np.testing.assert_allclose(sigma_diag.numpy(), (amplitude ** 2).numpy(), rtol=1e-5)
    assert float(w.abs().max()) < 1e-8  # the time average sits at the minimum


def test_with_nothing_constrained_it_is_rmsprops_stable_flow():
    """Far below the edge X = 0, and K Euler substeps converge at first order in 1/K to
    the stable flow (w, ν) integrated independently by solve_ivp."""
    obj, w0, _ = _tanh_net()
    lr, rho, T = 0.02, 0.9, 6
    nu0 = initial_nu(obj.grad(w0), rho)
    w_ref, nu_ref, _ = integrate_stable(obj, w0, nu0, lr, T, rho,
                                        settings=GradientFlowSettings("DOP853", 1e-11, 1e-13))
    errors = []
    for K in (4, 8, 16):
        flow = RMSPropCentralFlow(lr, alpha=rho, substeps=K, k=1, eig_tol=1e-8)
        w, nu, p = _euler(obj, w0, nu0, flow, T)
        assert p.n_constrained == 0 and p.eigenvalues[0] < 0.75 * 2 / lr
        errors.append(float((w - w_ref).norm() + (nu - nu_ref).norm()))
    ratios = [errors[i] / errors[i + 1] for i in range(2)]
    assert all(1.7 < r < 2.3 for r in ratios), (errors, ratios)
    assert errors[-1] < 0.05 * float((w_ref - w0).norm())


def test_flows_run_follows_torch_rmsprop_and_resumes(tmp_path):
    """``run_flows(optimizer='rmsprop')``: the discrete track is torch.optim.RMSprop, and a
    run resumed from a checkpoint writes the rows of the uninterrupted one."""
    obj, w0, fn = _tanh_net()
    s = FlowSettings(lr=0.05, steps=8, every=2, substeps=2, neigs=1, window=3,
                     optimizer="rmsprop", alpha=0.9, checkpoint_every=4, eig_tol=1e-9)
    run_flows(obj, w0, s, tmp_path / "full")
    rows = store.read_rows(tmp_path / "full" / "flows.csv")
    x = w0.clone().requires_grad_(True)
    opt = torch.optim.RMSprop([x], lr=0.05, alpha=0.9)
    losses, xs, ps = [], [w0.clone()], []
    for _ in range(9):
        opt.zero_grad()
        loss = fn(x)
        losses.append(float(loss))
        loss.backward()
        opt.step()
        xs.append(x.detach().clone())
        ps.append(opt.state[x]["square_avg"].sqrt() + opt.defaults["eps"])
    gd = [r for r in rows if r["flow"] == "gd"]
    np.testing.assert_allclose([r["loss"] for r in gd], losses[::2], rtol=1e-12)
    for r in gd:  # GD's oscillation in X's coordinates: c = qᵀP^{1/2}(x_{t+1} − x_t)
        t = r["step"]
        H = R.dense_hessian(fn, xs[t])
        r_inv = ps[t].rsqrt()
        q = torch.linalg.eigh(r_inv[:, None] * H * r_inv[None, :]).eigenvectors[:, -1]
        c = float(q @ (ps[t].sqrt() * (xs[t + 1] - xs[t])))
        assert r["trace_half_amplitude_sq"] == pytest.approx(c * c / 4, rel=1e-5, abs=1e-14)
    assert {r["flow"] for r in rows} == {"gd", "gradient", "central"}
    run_flows(obj, w0, s, tmp_path / "part", stop_at=6)
    run_flows(obj, w0, s, tmp_path / "part", resume=True)
    assert store.read_csv(tmp_path / "part" / "flows.csv") == store.read_csv(
        tmp_path / "full" / "flows.csv")


def test_flow_cli_refuses_rmsprop_options_without_rmsprop(tmp_path):
    r = CliRunner().invoke(app, ["flow", "--objective", "double-well", "--lr", "1",
                                 "--alpha", "0.9", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert "--alpha and --eps are for --optimizer rmsprop" in r.stderr


def test_report_shows_a_flows_result(tmp_path):
    """``eoskit report DIR`` on a flows directory: its four figures and the medians."""
    from eoskit.report import write_report

    out = tmp_path / "f"
    r = CliRunner().invoke(app, ["flow", "--objective", "double-well", "--x0", "1.3", "--lr",
                                 "0.9", "--steps", "8", "--every", "2", "--substeps", "2",
                                 "--neigs", "1", "--window", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    page = write_report(out).read_text()
    assert page.count("<img") == 4  # loss, sharpness, distance, sigma
    summary = store.read_json(out / "summary.json")
    dist = summary["flows"]["gradient"]["final_dist_to_gd"]
    assert "gradient: final distance to GD" in page and f"{dist:.4g}"[:4] in page
