"""The Hugging Face callback in a real ``Trainer`` (offline, CPU): logged sharpness = dense."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

transformers = pytest.importorskip("transformers")

from eoskit.integrations.transformers import SharpnessCallback  # noqa: E402
from tests import references as R  # noqa: E402


class Regressor(nn.Module):
    """Any nn.Module returning a dict with 'loss' will do for the Trainer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()

    def forward(self, x, labels):
        return {"loss": F.mse_loss(self.net(x), labels)}


class Samples(torch.utils.data.Dataset):
    def __init__(self, X, Y):
        self.X, self.Y = X, Y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return {"x": self.X[i], "labels": self.Y[i]}


def dense_top(model, batch):
    x, params_of = R.flat_parameters(model)

    def f(x):
        return functional_call(model, params_of(x), (), batch)["loss"]

    H = R.dense_hessian(f, x)
    return float(torch.linalg.eigvalsh((H + H.T) / 2)[-1])


@pytest.mark.parametrize("through_trainer_log", [False, True])
def test_logged_sharpness_is_the_monitors_and_the_dense_hessians(tmp_path, through_trainer_log):
    gen = torch.Generator().manual_seed(1)
    X, Y = torch.randn(16, 3, dtype=torch.float64, generator=gen), torch.randn(
        16, 1, dtype=torch.float64, generator=gen)
    model = Regressor()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=6, per_device_train_batch_size=16,
        learning_rate=0.2, report_to=[], use_cpu=True, save_strategy="no", logging_steps=100,
        disable_tqdm=True, lr_scheduler_type="constant", weight_decay=0.0)
    cb = SharpnessCallback({"x": X, "labels": Y}, every_n_steps=3, tol=1e-9)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Samples(X, Y),
                                   callbacks=[cb], optimizers=(opt, None))
    if through_trainer_log:
        cb.trainer = trainer
    trainer.train()
    rows = cb.monitor.rows
    assert [r["step"] for r in rows] == [3, 6]
    logged = [h for h in trainer.state.log_history if "sharpness" in h]
    assert [h["step"] for h in logged] == [3, 6]
    for h, row in zip(logged, rows, strict=True):
        assert h["sharpness"] == pytest.approx(row["sharpness"], rel=1e-12)
        assert h["eig_1"] == h["sharpness"] and h["threshold"] == pytest.approx(2 / 0.2)
    assert rows[-1]["sharpness"] == pytest.approx(dense_top(model, {"x": X, "labels": Y}),
                                                  rel=1e-6)


def test_the_trainers_own_adamw_gives_the_preconditioned_sharpness(tmp_path):
    gen = torch.Generator().manual_seed(1)
    X, Y = torch.randn(16, 3, dtype=torch.float64, generator=gen), torch.randn(
        16, 1, dtype=torch.float64, generator=gen)
    model = Regressor()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=4, per_device_train_batch_size=16,
        learning_rate=0.01, report_to=[], use_cpu=True, save_strategy="no", logging_steps=100,
        disable_tqdm=True, lr_scheduler_type="constant", optim="adamw_torch")
    cb = SharpnessCallback({"x": X, "labels": Y}, every_n_steps=2, tol=1e-9)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Samples(X, Y),
                                   callbacks=[cb])
    cb.trainer = trainer
    trainer.train()
    logged = [h for h in trainer.state.log_history if "precond_sharpness" in h]
    rows = cb.monitor.rows
    assert [h["step"] for h in logged] == [2, 4]
    beta1 = args.adam_beta1
    for h, row in zip(logged, rows, strict=True):
        assert h["precond_sharpness"] == pytest.approx(row["precond_sharpness"], rel=1e-12)
        assert h["threshold"] == pytest.approx((2 + 2 * beta1) / ((1 - beta1) * 0.01))
        assert h["precond_sharpness"] != pytest.approx(h["sharpness"], rel=1e-3)
