"""Sharpness in PyTorch Lightning: a callback built on :class:`eoskit.monitor.Monitor`.

``SharpnessCallback(data, every_n_steps=10, neigs=1)`` measures in
``on_train_batch_end`` whenever ``trainer.global_step % every_n_steps == 0``
(once per optimiser step, so gradient accumulation is handled), at the
parameters *after* that optimiser step, and logs ``sharpness``, ``eig_1..k``
and ``threshold`` (when the optimiser has one; with Adam/AdamW/RMSprop also
``precond_sharpness`` and ``precond_eig_1..k``) through ``pl_module.log``
(``on_step=True``). Lightning's loggers record everything logged during a
batch under ``step = trainer.global_step − 1`` (the count of optimiser steps
*before* that batch's step, as for the batch's training loss); the
Monitor's rows use ``trainer.global_step``.

The loss: ``loss_fn(output, target)`` (a mean loss), or by default the
module's ``loss_fn``, ``criterion`` or ``loss`` attribute; ``data`` is the
measurement set (tensors or a DataLoader, see
:func:`eoskit.monitor.measurement_set`). Keyword arguments go to the Monitor
(``out=``, ``loggers=``, ``probe_size=``, ``dtype=``, ...). The Monitor is
built in ``on_train_start`` (``self.monitor``) and closed in ``on_train_end``.

Importing this module needs the ``lightning`` extra; nothing else in eoskit
imports it.
"""

from __future__ import annotations

import torch

from eoskit.monitor.monitor import Monitor, logged_values

try:
    import lightning.pytorch as pl
except ImportError as err:  # one clear line instead of a bare "No module named"
    raise ImportError("eoskit.integrations.lightning needs Lightning: "
                      "pip install 'eoskit[lightning]'") from err

_LOSS_ATTRIBUTES = ("loss_fn", "criterion", "loss")


def module_loss(pl_module):
    """The module's own loss function (an attribute named like one), or a clear error."""
    for name in _LOSS_ATTRIBUTES:
        fn = getattr(pl_module, name, None)
        if callable(fn):
            return fn
    raise ValueError("SharpnessCallback needs loss_fn=: the module has no callable "
                     f"{', '.join(_LOSS_ATTRIBUTES)} attribute")


class SharpnessCallback(pl.Callback):
    """Top Hessian eigenvalues of the training loss every ``every_n_steps`` optimiser steps."""

    def __init__(self, data, every_n_steps: int = 10, neigs: int = 1, loss_fn=None,
                 **monitor_kwargs):
        super().__init__()
        self.data, self.every_n_steps, self.neigs = data, every_n_steps, neigs
        self.loss_fn = loss_fn
        self.monitor_kwargs = monitor_kwargs
        self.monitor: Monitor | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        if type(pl_module).forward in (torch.nn.Module.forward, pl.LightningModule.forward):
            raise ValueError(f"SharpnessCallback measures loss_fn(module(x), y), but "
                             f"{type(pl_module).__name__} defines no forward: add "
                             "def forward(self, x) returning the model's output")
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        self.monitor = Monitor(pl_module, self.loss_fn or module_loss(pl_module), self.data,
                               every=self.every_n_steps, neigs=self.neigs, optimizer=optimizer,
                               **self.monitor_kwargs)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.monitor is None or trainer.global_step == self.monitor.steps:
            return  # no optimiser step in this batch (accumulating)
        row = self.monitor.step(step=trainer.global_step)
        if row is None:
            return
        for name, cell in logged_values(row, self.neigs).items():
            # a float64 tensor: Lightning turns a Python float into float32
            value = torch.tensor(cell, dtype=torch.float64, device=pl_module.device)
            pl_module.log(name, value, on_step=True, on_epoch=False)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.monitor is not None:
            self.monitor.close()

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self.monitor is not None:
            self.monitor.close("interrupted" if isinstance(exception, KeyboardInterrupt)
                               else "failed")

