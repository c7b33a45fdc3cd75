"""Both sharpness callbacks in their real frameworks, tiny and on CPU; prints what they log.

Lightning ``Trainer`` with SGD (momentum) and with Adam, and the Hugging Face
``Trainer`` with its own AdamW, on a 3-6-1 tanh regression in float64; every
logged value is printed beside the dense Hessian's top eigenvalue at the final
parameters (for the adaptive runs also that of P^{-1/2} H P^{-1/2}).

    PYTHONPATH=src python examples/monitor_callbacks.py
"""

from __future__ import annotations

import tempfile

import torch
from torch import nn
from torch.nn import functional as F

from eoskit.objective import ModelObjective


def data():
    gen = torch.Generator().manual_seed(1)
    return (torch.randn(32, 3, dtype=torch.float64, generator=gen),
            torch.randn(32, 1, dtype=torch.float64, generator=gen))


def dense(net, X, Y, mon):
    obj = ModelObjective(net, F.mse_loss, X, Y)
    H = obj.hessian(obj.x0())
    top = float(torch.linalg.eigvalsh(H)[-1])
    p = mon.preconditioner()
    if p is None:
        return f"dense top {top:.10g}"
    r = p.rsqrt()
    return f"dense top {top:.10g}, dense precond top " \
           f"{float(torch.linalg.eigvalsh(r[:, None] * H * r[None, :])[-1]):.10g}"


def lightning_run(adam: bool) -> None:
    import lightning.pytorch as pl

    from eoskit.integrations.lightning import SharpnessCallback

    class Regressor(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()
            self.loss_fn = F.mse_loss

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return self.loss_fn(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return (torch.optim.Adam(self.parameters(), lr=0.01) if adam
                    else torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.5))

    class Recorder(pl.loggers.Logger):
        name, version = "recorder", 0

        def __init__(self):
            super().__init__()
            self.records = []

        def log_metrics(self, metrics, step=None):
            if "sharpness" in metrics:
                self.records.append((step, dict(metrics)))

        def log_hyperparams(self, *args, **kwargs):
            pass

    X, Y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=32)
    cb = SharpnessCallback((X, Y), every_n_steps=5, tol=1e-10)
    rec, module = Recorder(), Regressor()
    pl.Trainer(max_steps=20, callbacks=[cb], logger=rec, log_every_n_steps=1,
               enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
               accelerator="cpu", devices=1).fit(module, loader)
    print(f"lightning, {'Adam lr=0.01' if adam else 'SGD lr=0.2 momentum=0.5'}:")
    for step, m in rec.records:
        print(f"  logged at step {step}: " + ", ".join(f"{k} {v:.10g}" for k, v in m.items()
                                                     if k != "epoch"))
    print("  " + dense(module, X, Y, cb.monitor))


def hf_run() -> None:
    import transformers

    from eoskit.integrations.transformers import SharpnessCallback

    class Regressor(nn.Module):
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

    X, Y = data()
    model = Regressor()
    with tempfile.TemporaryDirectory() as tmp:
        args = transformers.TrainingArguments(
            output_dir=tmp, max_steps=20, per_device_train_batch_size=32, learning_rate=0.01,
            report_to=[], use_cpu=True, save_strategy="no", logging_steps=100,
            disable_tqdm=True, lr_scheduler_type="constant", optim="adamw_torch")
        cb = SharpnessCallback({"x": X, "labels": Y}, every_n_steps=5, tol=1e-10)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=Samples(X, Y),
                                       callbacks=[cb])
        cb.trainer = trainer
        trainer.train()
    print("hugging face Trainer, its AdamW lr=0.01 (weight decay 0):")
    for h in trainer.state.log_history:
        if "sharpness" in h:
            print("  logged: " + ", ".join(f"{k} {v:.10g}" for k, v in h.items()
                                           if k not in ("epoch",)))
    print("  " + dense(model.net, X, Y, cb.monitor))


if __name__ == "__main__":
    lightning_run(adam=False)
    lightning_run(adam=True)
    hf_run()
