"""Sharpness in the Hugging Face ``Trainer``: a callback built on :class:`eoskit.monitor.Monitor`.

``SharpnessCallback(data, every_n_steps=10, neigs=1)`` measures in
``on_step_end`` whenever ``state.global_step % every_n_steps == 0``, at the
parameters after that optimiser step. ``data`` is the measurement set in the
model's own batch format: a dict of tensors (``model(**batch)``, the model
computing its loss from ``labels``: by default the measured loss is
``output["loss"]``, assumed a mean over the batch's samples) or
``(inputs, targets)`` with ``loss_fn(output, targets)``.

Logging: with ``trainer=`` given (or ``callback.trainer = trainer`` set later)
the values go through ``trainer.log`` (``state.log_history`` and every
``report_to`` integration, at ``step = state.global_step``); without it they
are appended to ``state.log_history`` as ``{"sharpness": ..., "step": ...}``
(a Trainer callback has no other way to log). Keyword arguments go to the Monitor.

Importing this module needs the ``transformers`` extra; nothing else in eoskit
imports it.
"""

from __future__ import annotations

from eoskit.monitor.monitor import Monitor, logged_values

try:
    from transformers import TrainerCallback
except ImportError as err:  # one clear line instead of a bare "No module named"
    raise ImportError("eoskit.integrations.transformers needs transformers: "
                      "pip install 'eoskit[transformers]'") from err


def output_loss(output, _target=None):
    """The loss a Hugging Face model returns (``output["loss"]`` or ``output.loss``)."""
    return output["loss"] if isinstance(output, dict) else output.loss


class SharpnessCallback(TrainerCallback):
    """Top Hessian eigenvalues of the training loss every ``every_n_steps`` optimiser steps."""

    def __init__(self, data, every_n_steps: int = 10, neigs: int = 1, loss_fn=None,
                 trainer=None, **monitor_kwargs):
        self.data, self.every_n_steps, self.neigs = data, every_n_steps, neigs
        self.loss_fn = loss_fn or output_loss
        self.trainer = trainer
        self.monitor_kwargs = monitor_kwargs
        self.monitor: Monitor | None = None

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.monitor is None:
            self.monitor = Monitor(model, self.loss_fn, self.data, every=self.every_n_steps,
                                   neigs=self.neigs, optimizer=optimizer, **self.monitor_kwargs)
        row = self.monitor.step(step=state.global_step)
        if row is None:
            return control
        logs = logged_values(row, self.neigs)
        if self.trainer is not None:
            self.trainer.log(logs)
        else:
            state.log_history.append({**logs, "step": state.global_step})
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.monitor is not None:
            self.monitor.close()
        return control

