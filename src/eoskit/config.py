"""Run configuration: one validated pydantic model shared by the CLI, sweeps and the API.

Field names are the CLI option names with underscores (``--n-train`` ->
``n_train``), so a TOML ``[run]`` table, a sweep grid and the command line all
speak the same language. Unknown keys are rejected, so a typo is an error,
not a silently ignored setting.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from eoskit.data import DATASETS
from eoskit.models import MODELS

OPTIMIZERS = ("gd", "polyak", "nesterov", "sgd")


class RunConfig(BaseModel):
    """Everything that determines a training run (and so its results)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # data
    dataset: str = "mnist-5k"
    data_dir: str | None = None
    n_train: int = Field(1000, gt=0)
    n_test: int = Field(500, ge=0)
    classes: tuple[int, ...] | None = None
    data_seed: int = Field(0, ge=0)
    # model and loss
    model: str = "fc-tanh"
    width: int = Field(200, gt=0)
    depth: int = Field(2, gt=0)
    loss: Literal["mse", "ce"] = "mse"
    seed: int = Field(0, ge=0)
    # optimiser
    optimizer: Literal["gd", "polyak", "nesterov", "sgd"] = "gd"
    lr: float = Field(0.05, gt=0)
    beta: float = Field(0.0, ge=0, lt=1)
    batch_size: int | None = Field(None, gt=0)
    steps: int = Field(1000, gt=0)
    # numerics
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    physical_batch: int | None = Field(1000, gt=0)
    hvp_method: Literal["retained", "rev-rev", "fwd-rev"] = "retained"
    deterministic: bool = False
    # measurement
    sharpness_every: int = Field(1, ge=0)
    neigs: int = Field(1, gt=0)
    eig_tol: float = Field(1e-3, gt=0, lt=1)
    eig_restart_every: int = Field(50, ge=0)
    eig_mode: Literal["lanczos", "streaming"] = "lanczos"  # streaming: ~1 HVP/step
    eig_criterion: Literal["residual", "eigenvalue"] = "residual"  # what eig_tol bounds
    eval_every: int = Field(10, ge=0)
    diagnose_every: int = Field(0, ge=0)
    diagnose_nodes: int = Field(12, ge=2, le=200)
    # stopping and storage
    stop_loss: float | None = Field(None, ge=0)
    diverge_loss: float = Field(1e8, gt=0)
    checkpoint_every: int = Field(100, ge=0)
    keep_checkpoints: int = Field(3, gt=0)

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}; choose one of {', '.join(DATASETS)}")
        return v

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in MODELS:
            raise ValueError(f"unknown model {v!r}; choose one of {', '.join(MODELS)}")
        return v

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        import torch

        try:
            dev = torch.device(v)
        except RuntimeError as err:
            raise ValueError(f"unknown device {v!r} (use cpu, cuda or cuda:N)") from err
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {v!r} requested but CUDA is not available here")
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"device {v!r} is not supported (use cpu, cuda or cuda:N)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.optimizer == "sgd" and self.batch_size is None:
            raise ValueError("optimizer 'sgd' needs batch_size")
        if self.optimizer != "sgd" and self.batch_size is not None:
            raise ValueError(f"batch_size is only used by optimizer 'sgd', not {self.optimizer!r}")
        if self.batch_size is not None and self.batch_size > self.n_train:
            raise ValueError(f"batch_size {self.batch_size} exceeds n_train {self.n_train}")
        if self.optimizer in ("polyak", "nesterov") and self.beta == 0:
            raise ValueError(f"optimizer {self.optimizer!r} needs beta > 0 (momentum)")
        if self.optimizer in ("gd", "sgd") and self.beta != 0:
            raise ValueError(f"beta is only used by polyak/nesterov, not {self.optimizer!r}")
        if self.diagnose_every and self.optimizer not in ("gd", "sgd"):
            raise ValueError("diagnose_every: the edge-coupling identities are for gd/sgd steps")
        return self

    @property
    def threshold(self) -> float:
        """The optimiser's stability threshold on sharpness."""
        return stability_threshold(self.optimizer, self.lr, self.beta)


def stability_threshold(optimizer: str, lr: float, beta: float = 0.0) -> float:
    """Sharpness above which the optimiser diverges on a quadratic.

    GD/SGD ``2/η``; Polyak heavy ball ``(2+2β)/η``; Nesterov ``(2+2β)/((1+2β)η)``.
    """
    if optimizer in ("gd", "sgd"):
        return 2.0 / lr
    if optimizer == "polyak":
        return (2.0 + 2.0 * beta) / lr
    if optimizer == "nesterov":
        return (2.0 + 2.0 * beta) / ((1.0 + 2.0 * beta) * lr)
    raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")


def load_toml(path: str | Path) -> dict:
    """A TOML file as a dict; a missing or malformed file is a clear ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {path} is not valid TOML: {err}") from err


def run_config_from(file: str | Path | None, overrides: dict) -> RunConfig:
    """File values (its ``[run]`` table, or the top level), then explicit overrides."""
    values: dict = {}
    if file is not None:
        data = load_toml(file)
        values.update(data.get("run", data))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig(**values)
