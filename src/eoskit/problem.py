"""A run's problem: data, model and objectives built from a :class:`RunConfig`.

Its own module so that the run directory (which rebuilds a stored run's
objective), the training loop and the benchmark all depend on it, and on
nothing above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from eoskit.config import RunConfig
from eoskit.data import Dataset, load_dataset
from eoskit.models import build_model
from eoskit.objective import ModelObjective

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


def build_problem(cfg: RunConfig) -> Problem:
    """Data, model and objectives for a configuration (bad input raises ValueError)."""
    dtype = torch_dtype(cfg.dtype)
    data = load_dataset(
        cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test, classes=cfg.classes,
        seed=cfg.data_seed, data_dir=cfg.data_dir, loss=cfg.loss,
    ).to(cfg.device, dtype)
    if cfg.loss == "ce" and data.task != "classification":
        raise ValueError(f"loss 'ce' needs a classification dataset; {cfg.dataset!r} is regression")
    # heads and norm: RunConfig fields to come; the defaults are build_model's
    model = build_model(cfg.model, data.input_shape, data.n_outputs, width=cfg.width,
                        depth=cfg.depth, seed=cfg.seed, heads=cfg.heads,
                        norm=cfg.norm)
    kw = dict(physical_batch=cfg.physical_batch, dtype=dtype, device=cfg.device,
              hvp_method=cfg.hvp_method)
    train_obj = ModelObjective(model, cfg.loss, data.x_train, data.y_train, **kw)
    if cfg.neigs > train_obj.dim:
        raise ValueError(f"neigs={cfg.neigs} exceeds the number of parameters ({train_obj.dim})")
    test_obj = (ModelObjective(model, cfg.loss, data.x_test, data.y_test, **kw)
                if len(data.x_test) else None)
    return Problem(cfg, data, model, train_obj, test_obj, train_obj.x0())
