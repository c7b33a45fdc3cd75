"""The Lightning callback in a real Lightning Trainer: logged sharpness = Monitor's = dense."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

pl = pytest.importorskip("lightning.pytorch")

from eoskit.integrations.lightning import SharpnessCallback  # noqa: E402
from tests import references as R  # noqa: E402


class Regressor(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()
        self.loss_fn = F.mse_loss

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss_fn(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.5)


class Recorder(pl.loggers.Logger):
    """Keeps every (step, metrics) Lightning hands its loggers."""

    def __init__(self):
        super().__init__()
        self.records = []

    name, version = "recorder", 0

    def log_metrics(self, metrics, step=None):
        self.records.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def dense_top(module, X, Y):
    x, params_of = R.flat_parameters(module)

    def f(x):
        return F.mse_loss(functional_call(module, params_of(x), (X,)), Y)

    H = R.dense_hessian(f, x)
    return float(torch.linalg.eigvalsh((H + H.T) / 2)[-1])


def test_logged_sharpness_is_the_monitors_and_the_dense_hessians(tmp_path):
    gen = torch.Generator().manual_seed(1)
    X, Y = torch.randn(32, 3, dtype=torch.float64, generator=gen), torch.randn(
        32, 1, dtype=torch.float64, generator=gen)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=32)
    cb = SharpnessCallback((X, Y), every_n_steps=3, neigs=2, tol=1e-9, out=tmp_path / "run")
    recorder = Recorder()
    module = Regressor()
    trainer = pl.Trainer(max_steps=6, callbacks=[cb], logger=recorder, log_every_n_steps=1,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(module, loader)
    rows = cb.monitor.rows
    assert [r["step"] for r in rows] == [3, 6]
    logged = [(s, m) for s, m in recorder.records if "sharpness" in m]
    # Lightning records what is logged in a batch at step global_step − 1
    assert [s for s, _ in logged] == [2, 5]
    for (_, m), row in zip(logged, rows, strict=True):
        assert m["sharpness"] == pytest.approx(row["sharpness"], rel=1e-12)
        assert m["eig_2"] == pytest.approx(row["eig_2"], rel=1e-12)
        assert m["threshold"] == pytest.approx((2 + 2 * 0.5) / 0.2)
    # the last measurement is at the final parameters: compare with the dense Hessian there
    assert rows[-1]["sharpness"] == pytest.approx(dense_top(module, X, Y), rel=1e-6)
    assert (tmp_path / "run" / "summary.json").read_text().count('"completed"') == 1


class AdamRegressor(Regressor):
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01, betas=(0.9, 0.99))


def test_adam_logs_the_preconditioned_sharpness(tmp_path):
    gen = torch.Generator().manual_seed(2)
    X, Y = torch.randn(32, 3, dtype=torch.float64, generator=gen), torch.randn(
        32, 1, dtype=torch.float64, generator=gen)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=32)
    cb = SharpnessCallback((X, Y), every_n_steps=3, tol=1e-10)
    recorder = Recorder()
    module = AdamRegressor()
    trainer = pl.Trainer(max_steps=6, callbacks=[cb], logger=recorder, log_every_n_steps=1,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(module, loader)
    logged = [m for _, m in recorder.records if "precond_sharpness" in m]
    rows = cb.monitor.rows
    assert len(logged) == 2
    for m, row in zip(logged, rows, strict=True):
        assert m["precond_sharpness"] == pytest.approx(row["precond_sharpness"], rel=1e-12)
        assert m["threshold"] == pytest.approx(3.8 / (0.1 * 0.01))
    # P read by hand off the optimiser's state after the last step
    opt = trainer.optimizers[0]
    p = torch.cat([((opt.state[q]["exp_avg_sq"] / (1 - 0.99 ** float(opt.state[q]["step"])))
                    .sqrt() + 1e-8).reshape(-1) for q in module.parameters()])
    x, params_of = R.flat_parameters(module)

    def f(x):
        return F.mse_loss(functional_call(module, params_of(x), (X,)), Y)

    H = R.dense_hessian(f, x)
    r = p.rsqrt()
    want = float(torch.linalg.eigvalsh(r[:, None] * ((H + H.T) / 2) * r[None, :])[-1])
    assert rows[-1]["precond_sharpness"] == pytest.approx(want, rel=1e-8)
