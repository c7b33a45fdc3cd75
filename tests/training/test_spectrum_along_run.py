"""The spectrum along a run (``--spectrum-every``, ``Monitor(spectrum_every=...)``).

``spectrum.csv`` at a measured step against the spectrum functions and dense
float64 references at the parameters stored for that step (the checkpoint
of the same step holds ``x_t``); resume equality; the figures and the report.
"""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.func import functional_call

from eoskit import store
from eoskit.monitor.monitor import Monitor
from eoskit.report.pages import write_report
from eoskit.spectrum import spectral_density
from eoskit.spectrum.along_run import layout_blocks
from eoskit.training.config import RunConfig
from eoskit.training.loop import train
from eoskit.training.run_problem import build_problem
from tests.references import dense_hessian, mse_mean

TOL = 1e-8
RUN = dict(dataset="digits", n_train=40, n_test=0, width=5, depth=1, dtype="float64", lr=0.3,
           steps=6, eval_every=0, spectrum_every=2, spectrum_probes=2, spectrum_steps=7,
           eig_tol=1e-10, physical_batch=15, checkpoint_every=2, keep_checkpoints=10)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A run's directory and its configuration."""
    out = tmp_path_factory.mktemp("spectrum") / "run"
    cfg = RunConfig(**RUN)
    assert train(cfg, out, progress=False)["status"] == "completed"
    return out, cfg


def _x_at(out, step):
    return torch.load(out / "checkpoints" / f"ckpt-{step:09d}.pt", weights_only=False)["x"]


def _dense_parts(cfg, x):
    """Dense H, G (dense Jacobian of the outputs, the loss Hessian in the outputs), blocks."""
    obj = build_problem(cfg).train
    X, Y = obj.inputs, obj.targets
    layout = obj.layout

    def outputs(p):
        return functional_call(obj.model, layout.unflatten(p), (X,))

    H = dense_hessian(lambda p: mse_mean(outputs(p), Y), x)
    J = torch.autograd.functional.jacobian(outputs, x).reshape(-1, x.numel())
    z = outputs(x).detach()
    L = dense_hessian(lambda zf: mse_mean(zf.view_as(z), Y), z.reshape(-1))
    return obj, H, J.T @ L @ J


def test_spectrum_rows_equal_the_functions_and_dense_references(measured):
    out, cfg = measured
    rows = store.read_rows(out / "spectrum.csv")
    assert [r["step"] for r in rows] == [0, 2, 4]
    row = rows[1]
    x = _x_at(out, 2)
    obj, H, G = _dense_parts(cfg, x)
    # the density: the same quadrature as spectral_density's with the step's probes
    with obj.at(x) as point:
        sd = spectral_density(point.hvp, obj.dim, 2, 7, seed=cfg.seed + 2)
    nodes = [r for r in store.read_rows(out / "spectrum_nodes.csv") if r["step"] == 2]
    assert np.allclose([r["node"] for r in nodes], sd.nodes.reshape(-1), rtol=0, atol=1e-10)
    assert np.allclose([r["weight"] for r in nodes], sd.weights.reshape(-1), atol=1e-12)
    assert row["trace"] == pytest.approx(sd.trace, rel=1e-10)
    assert row["mass_above_threshold"] == pytest.approx(sd.count_above(2 / cfg.lr), abs=1e-9)
    # the eigenvalues against dense float64 references
    Hs, Gs = (H + H.T) / 2, (G + G.T) / 2
    assert row["lambda_min"] == pytest.approx(float(torch.linalg.eigvalsh(Hs)[0]), abs=TOL)
    assert row["gn_top"] == pytest.approx(float(torch.linalg.eigvalsh(Gs)[-1]), abs=TOL)
    assert row["remainder_top"] == pytest.approx(float(torch.linalg.eigvalsh(Hs - Gs)[-1]),
                                                 abs=TOL)
    blocks = layout_blocks(obj)
    assert [f"block_{n}" for n in blocks] == [k for k in row if k.startswith("block_")]
    for name, idx in blocks.items():
        top = float(torch.linalg.eigvalsh(Hs[idx][:, idx])[-1])
        assert row[f"block_{name}"] == pytest.approx(top, abs=TOL), name
    assert row["products_density"] == 14 and row["products_gauss_newton"] > 0


def test_chunked_gauss_newton_product_is_the_dense_one(measured):
    out, cfg = measured
    x = _x_at(out, 4)
    obj, _, G = _dense_parts(cfg, x)
    assert len(obj.bounds) == 3  # 40 samples in chunks of 15: the sum over chunks is tested
    v = torch.randn(obj.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(obj.gauss_newton(x)(v), G @ v, rtol=1e-10, atol=1e-12)


def test_resumed_run_writes_the_same_spectrum(measured, tmp_path):
    ref, _ = measured
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    store.write_json(run / "summary.json", {"status": "running", "steps": 0})
    (run / "params_final.pt").unlink()
    for step in (4, 6):  # resume from step 2: the rows of steps 2 and 4 are cut and rewritten
        for p in (run / "checkpoints").glob(f"ckpt-{step:09d}.*"):
            p.unlink()
    assert train(None, run, resume=True, progress=False)["status"] == "completed"
    for name in ("spectrum.csv", "spectrum_nodes.csv"):
        assert store.read_csv(run / name) == store.read_csv(ref / name), name


def test_cli_run_draws_the_figures_and_the_report_embeds_them(tmp_path):
    out = tmp_path / "cli"
    args = ["--dataset", "digits", "--n-train", "30", "--n-test", "0", "--width", "4",
            "--depth", "1", "--steps", "4", "--dtype", "float64", "--spectrum-every", "2",
            "--spectrum-probes", "1", "--spectrum-steps", "5", "--checkpoint-every", "0"]
    r = subprocess.run([sys.executable, "-m", "eoskit", "run", *args, "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(store.read_rows(out / "spectrum.csv")) == 2
    for name in ("spectrum.png", "layers.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = write_report(out).read_text()
    assert "<h2>The whole spectrum</h2>" in page
    assert "alt='spectrum: the Hessian" in page and "alt='layers: each module" in page


def test_monitor_writes_the_spectrum_tables(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(),
                                torch.nn.Linear(5, 2)).double()
    X, Y = torch.randn(20, 4, dtype=torch.float64), torch.randn(20, 2, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.mse_loss
    with Monitor(model, loss, (X, Y), every=2, optimizer=opt, out=tmp_path / "m",
                 spectrum_every=3, spectrum_probes=1, spectrum_steps=6, tol=1e-10,
                 criterion="residual") as mon:
        for _ in range(6):
            opt.zero_grad()
            loss(model(X), Y).backward()
            opt.step()
            mon.step()
    rows = store.read_rows(tmp_path / "m" / "spectrum.csv")
    assert [r["step"] for r in rows] == [3, 6] and rows[0]["threshold"] == pytest.approx(20.0)
    x = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def f(p):
        params = dict(zip(names, (c.view(s) for c, s in zip(
            torch.split(p, [s.numel() for s in shapes]), shapes, strict=True)), strict=True))
        return loss(functional_call(model, params, (X,)), Y)

    H = dense_hessian(f, x)
    assert rows[1]["lambda_min"] == pytest.approx(
        float(torch.linalg.eigvalsh((H + H.T) / 2)[0]), abs=TOL)
    assert (tmp_path / "m" / "plots" / "layers.png").is_file()


class _DictOutput(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, x):
        return {"logits": torch.tanh(self.lin(x))}


def test_a_model_with_dict_outputs_gets_no_gauss_newton_split_and_the_rest():
    from eoskit.objective import ModelObjective
    from eoskit.spectrum.along_run import SpectrumMeter

    torch.manual_seed(0)
    model = _DictOutput().double()
    X, Y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    obj = ModelObjective(model, lambda out, y: torch.nn.functional.mse_loss(out["logits"], y),
                         X, Y, count_correct=False)
    row, _ = SpectrumMeter(1, 4, 1e-10, blocks=layout_blocks(obj)).measure(obj, obj.x0(), 2.0, 0)
    assert row["gn_top"] is None and row["products_gauss_newton"] == 0
    H = dense_hessian(lambda p: torch.nn.functional.mse_loss(
        functional_call(model, obj.layout.unflatten(p), (X,))["logits"], Y), obj.x0())
    assert row["lambda_min"] == pytest.approx(float(torch.linalg.eigvalsh((H + H.T) / 2)[0]),
                                              abs=TOL)


def test_a_run_over_two_processes_writes_the_spectrum_of_one(measured, tmp_path):
    """``--nproc 2``: every rank measures the sum over the shards (the objective's products,
    the Gauss–Newton one included, all-reduced) and rank 0 writes: the tables of the
    one-process run, to rounding (sums reordered) and the trackers' tol; rank 1 writes none."""
    out, _ = measured
    flags = [a for k, v in RUN.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    two = tmp_path / "two"
    proc = subprocess.run([sys.executable, "-m", "eoskit", "run", *flags, "--nproc", "2",
                           "--no-progress", "--out", str(two)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    for name, tol in (("spectrum.csv", 1e-8), ("spectrum_nodes.csv", 1e-9)):
        one_rows, two_rows = store.read_rows(out / name), store.read_rows(two / name)
        assert len(one_rows) == len(two_rows) > 0, name
        for a, b in zip(one_rows, two_rows, strict=True):
            for key, value in a.items():
                if key.startswith("products_"):  # a converged solve may take one more
                    continue
                assert b[key] == pytest.approx(value, rel=tol, abs=tol), (name, a["step"], key)
