"""A run's problem: data, model and objectives built from a :class:`RunConfig`.

The loop trains on it; the run directory (which rebuilds a stored run's
objective), the distributed ranks (which shard it) and the benchmarks build
it too. Bad input raises ``ValueError`` (a user component's failure
:class:`~eoskit.components.ComponentError`) before any training work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from eoskit.components import (
    ComponentError,
    check_unchanged,
    is_spec,
    record_of,
    user_dataset,
    user_loss,
    user_model,
)
from eoskit.data import Dataset, load_dataset
from eoskit.models import build_model
from eoskit.objective import ModelObjective
from eoskit.training.config import RunConfig

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def torch_dtype(name: str) -> torch.dtype:
    """``"float32"``/``"float64"`` as a torch dtype (a clear error otherwise)."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {name!r}") from None


@dataclass
class Problem:
    """Everything a run needs built from its configuration."""

    config: RunConfig
    dataset: Dataset
    model: torch.nn.Module
    train: ModelObjective
    test: ModelObjective | None
    x0: Tensor
    # user components (config.json's "components"): kind -> {"spec", "file", "sha256"}
    components: dict = field(default_factory=dict)


def _dataset(cfg: RunConfig, components: dict) -> Dataset:
    if is_spec(cfg.dataset):
        data, imported = user_dataset(cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test,
                                      seed=cfg.data_seed, loss=cfg.loss)
        components["dataset"] = record_of(imported)
        return data
    # a user loss sees class ids (the torch convention), as with "ce"
    return load_dataset(
        cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test, classes=cfg.classes,
        seed=cfg.data_seed, data_dir=cfg.data_dir, loss="ce" if is_spec(cfg.loss) else cfg.loss,
    )


def _model(cfg: RunConfig, data: Dataset, components: dict) -> torch.nn.Module:
    if is_spec(cfg.model):
        model, imported = user_model(cfg.model, data.input_shape, data.n_outputs,
                                     width=cfg.width, depth=cfg.depth, seed=cfg.seed)
        components["model"] = record_of(imported)
        return model
    vocab = None
    if is_spec(cfg.dataset) and not data.x_train.is_floating_point():  # user token ids
        vocab = max(data.n_outputs, 1 + int(data.x_train.max()))
    return build_model(cfg.model, data.input_shape, data.n_outputs, width=cfg.width,
                       depth=cfg.depth, seed=cfg.seed, heads=cfg.heads, norm=cfg.norm,
                       vocab=vocab)


def _probe(obj: ModelObjective, cfg: RunConfig) -> None:
    """A user component fails here, on two samples, with one message, not mid-run."""
    try:
        x0, probe = obj.x0(), obj.subset(torch.arange(min(2, obj.n)))
        loss, _ = probe.loss_and_accuracy(x0)
        with probe.at(x0) as point:  # e.g. a loss without forward AD under hvp_method fwd-rev
            point.hvp(torch.ones_like(x0))
    except Exception as err:  # noqa: BLE001 - user code: report, do not trace
        raise ComponentError(f"model {cfg.model} with loss {cfg.loss} failed on two training "
                             f"samples: {type(err).__name__}: {err}") from err
    if not math.isfinite(loss):
        raise ComponentError(f"model {cfg.model} with loss {cfg.loss}: the loss at the "
                             f"initial parameters is {loss}")


def build_problem(cfg: RunConfig, recorded: dict | None = None) -> Problem:
    """Data, model and objectives for a configuration (bad input raises ValueError).

    ``recorded``: the ``components`` of the run being rebuilt; a user component
    whose file changed since then raises :class:`eoskit.components.ComponentChanged`.
    """
    dtype = torch_dtype(cfg.dtype)
    components: dict = {}
    data = _dataset(cfg, components).to(cfg.device, dtype)
    if cfg.loss == "ce" and data.task != "classification":
        raise ValueError(f"loss 'ce' needs a classification dataset; {cfg.dataset!r} is regression")
    # built here, so ours to convert: the objective then casts nothing per evaluation
    model = _model(cfg, data, components).to(device=cfg.device, dtype=dtype)
    loss = cfg.loss
    if is_spec(cfg.loss):
        loss, imported = user_loss(cfg.loss)
        components["loss"] = record_of(imported)
    check_unchanged(recorded, components)  # before any work that the old files would change
    kw = dict(physical_batch=cfg.physical_batch, dtype=dtype, device=cfg.device,
              hvp_method=cfg.hvp_method)
    train_obj = ModelObjective(model, loss, data.x_train, data.y_train, **kw)
    if components:
        _probe(train_obj, cfg)
    if cfg.neigs > train_obj.dim:
        raise ValueError(f"neigs={cfg.neigs} exceeds the number of parameters ({train_obj.dim})")
    test_obj = (ModelObjective(model, loss, data.x_test, data.y_test, **kw)
                if len(data.x_test) else None)
    return Problem(cfg, data, model, train_obj, test_obj, train_obj.x0(), components)
