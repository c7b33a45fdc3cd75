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

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from eoskit.components import absolute_spec, is_spec
from eoskit.data import DATASETS, FILE_DATASET_DIRS
from eoskit.eigs import TRACKERS
from eoskit.models import MODELS
from eoskit.objective import HVP_METHODS
from eoskit.optim import (
    HYPERPARAMETERS,
    OPTIMIZERS,
    RULES,
    Hyper,
    rule_class,
    rule_hyperparameters,
    rules_with,
)

__all__ = ["RunConfig", "load_toml", "run_config_from"]


class _ProblemFields(BaseModel):
    """RunConfig's fields up to the optimiser's; its rules' hyper-parameters follow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # data
    dataset: str = Field("mnist-5k", description=f"{', '.join(DATASETS)}, or FILE.py:NAME / "
                         "package.module:NAME returning {x_train, y_train[, x_test, y_test]}.")
    data_dir: str | None = Field(None, description="Folder with IDX files or cifar-10-batches-py.")
    n_train: int = Field(1000, gt=0, description="Training examples.")
    n_test: int = Field(500, ge=0, description="Test examples (0: no test metrics).")
    classes: tuple[int, ...] | None = Field(
        None, description="Comma-separated class subset, e.g. 0,1,2.")
    data_seed: int = Field(0, ge=0, description="Seed of the data subset.")
    # model and loss
    model: str = Field("fc-tanh", description=f"{', '.join(MODELS)}, or FILE.py:NAME / "
                       "package.module:NAME returning an nn.Module.")
    width: int = Field(200, gt=0, description="Hidden width (channels for cnn-*).")
    depth: int = Field(2, gt=0, description="Hidden layers (blocks of transformer/resnet).")
    heads: int = Field(2, gt=0, description="Attention heads of the transformer models.")
    norm: Literal["none", "batch", "group", "layer"] = Field(
        "none", description="Normalisation of the resnet models: BatchNorm2d (each chunk's own "
        "statistics), GroupNorm(gcd(width, 8)), or GroupNorm(1) for layer.")
    loss: str = Field("mse", description="mse (½·sum over outputs, mean over samples), ce, or "
                      "FILE.py:NAME / package.module:NAME: a mean loss fn(output, target).")
    seed: int = Field(0, ge=0, description="Seed of the initialisation (and of SGD's batches).")
    # optimiser
    optimizer: Literal[OPTIMIZERS] = Field("gd", description=f"{', '.join(OPTIMIZERS)}.")
    # an infinite η is bad input, not a divergence: no step can be taken with it
    lr: float = Field(0.05, gt=0, allow_inf_nan=False, description="Learning rate η.")
    beta: float = Field(0.0, ge=0, lt=1,
                        description=f"Momentum ({', '.join(rules_with('momentum'))}).")
    batch_size: int | None = Field(
        None, gt=0, description=f"Mini-batch size ({', '.join(rules_with('samples_batch'))}).")


def _hyper_help(name: str, hyper: Hyper) -> str:
    """``meaning (rules: default; ...)``, the rules grouped by their default."""
    by_default: dict = {}
    for rule in RULES.values():
        if name in rule.hyperparameters:
            by_default.setdefault(rule.hyperparameters[name].default, []).append(rule.name)
    parts = [", ".join(names) + ("" if d is None else ": " + f"{d:g}".replace("e-0", "e-"))
             for d, names in by_default.items()]
    return f"{hyper.meaning} ({'; '.join(parts)})."


# the rules' hyper-parameters (None: the optimizer's default, torch's; other rules must
# leave None), one field each, generated from the rule registry
_WithRuleFields = create_model(
    "_WithRuleFields", __base__=_ProblemFields, __module__=__name__,
    **{name: (h.kind | None, Field(None, ge=h.ge, lt=h.lt, description=_hyper_help(name, h)))
       for name, h in HYPERPARAMETERS.items()})


class RunConfig(_WithRuleFields):
    """Everything that determines a training run (and so its results).

    Each field's ``description`` is also its ``eoskit run --<field>`` help.
    """

    steps: int = Field(1000, gt=0, description="Optimiser steps.")
    # numerics
    dtype: Literal["float32", "float64"] = Field("float32", description="float32 or float64.")
    device: str = Field("cpu", description="cpu, cuda, cuda:N.")
    physical_batch: int | None = Field(1000, gt=0,
                                       description="Chunk size for full-batch passes.")
    hvp_method: Literal[HVP_METHODS] = Field(
        "retained", description=", ".join(HVP_METHODS) + " (eoskit.objective.products).")
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms.")
    # measurement
    sharpness_every: int = Field(1, ge=0,
                                 description="Measure sharpness every K steps (0: never).")
    neigs: int = Field(1, gt=0, description="Top-k eigenvalues to track.")
    eig_tol: float = Field(1e-3, gt=0, lt=1,
                           description="Eigen-residual tolerance ‖Hv−λv‖ ≤ tol·|λ|.")
    eig_restart_every: int = Field(
        50, ge=0, description="Random-start probe every K solves; it replaces the tracked "
        "vectors only if it finds a larger value.")
    eig_mode: Literal[tuple(TRACKERS)] = Field(
        "lanczos", description="lanczos (converged to --eig-tol) or streaming "
        "(~1 HVP/step; use --eig-tol 1e-2).")
    eig_criterion: Literal["residual", "eigenvalue"] = Field(
        "residual", description="residual (‖Hv−λv‖ ≤ tol·|λ|) or "
        "eigenvalue (estimated |λ−θ| ≤ tol·|λ|).")
    eval_every: int = Field(10, ge=0, description="Test metrics every K steps.")
    diagnose_every: int = Field(0, ge=0, description="Edge-coupling diagnostics every K steps.")
    diagnose_nodes: int = Field(12, ge=2, le=200,
                                description="Gauss-Legendre nodes for the diagnostics.")
    spectrum_every: int = Field(
        0, ge=0, description="The whole spectrum every K steps into spectrum.csv: SLQ density, "
        "trace, λ_min, Gauss-Newton split, each module's λ₁ (0: never).")
    spectrum_probes: int = Field(1, gt=0, description="SLQ probes per spectrum measurement.")
    spectrum_steps: int = Field(80, gt=0, description="Lanczos steps per SLQ probe.")
    # stopping and storage
    stop_loss: float | None = Field(None, ge=0,
                                    description="Stop once the train loss is below this.")
    diverge_loss: float = Field(1e8, gt=0,
                                description="Stop as diverged once the train loss exceeds this.")
    checkpoint_every: int = Field(100, ge=0, description="Checkpoint every N steps (0: never).")
    keep_checkpoints: int = Field(3, gt=0, description="Newest checkpoints to keep.")

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        return _one_of("dataset", v, DATASETS)

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        return _one_of("model", v, MODELS)

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, v: str) -> str:
        return _one_of("loss", v, ("mse", "ce"))

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

    @model_validator(mode="before")
    @classmethod
    def _rule_defaults(cls, data):
        """Fill the optimizer's unset hyperparameters with its (torch's) defaults."""
        if isinstance(data, dict) and data.get("optimizer", "gd") in RULES:
            hyper = rule_class(data.get("optimizer", "gd")).defaults()
            data = {**{k: v for k, v in hyper.items() if v is not None},
                    **{k: v for k, v in data.items() if not (k in hyper and v is None)}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.norm != "none" and not self.model.startswith("resnet"):
            raise ValueError(f"norm {self.norm!r} is an option of the resnet models, "
                             f"not {self.model!r}")
        if self.model.startswith("transformer") and self.width % self.heads:
            raise ValueError(f"width {self.width} (d_model) must be a multiple of heads "
                             f"{self.heads}")
        name, rule = self.optimizer, rule_class(self.optimizer)
        if rule.samples_batch and self.batch_size is None:
            raise ValueError(f"optimizer {name!r} needs batch_size")
        if not rule.samples_batch and self.batch_size is not None:
            raise ValueError(f"batch_size is only used by optimizer '{_names('samples_batch')}', "
                             f"not {name!r}")
        if self.batch_size is not None and self.batch_size > self.n_train:
            raise ValueError(f"batch_size {self.batch_size} exceeds n_train {self.n_train}")
        if rule.momentum and self.beta == 0:
            raise ValueError(f"optimizer {name!r} needs beta > 0 (momentum)")
        if not rule.momentum and self.beta != 0:
            raise ValueError(f"beta is only used by {_names('momentum')}, not {name!r}")
        unused = [h for h in HYPERPARAMETERS
                  if h not in rule.hyperparameters and getattr(self, h) is not None]
        if unused:
            raise ValueError(f"{', '.join(unused)}: not used by optimizer {name!r}")
        if self.classes is not None and is_spec(self.dataset):
            raise ValueError("classes: a user dataset is used as it is (select classes in it)")
        if self.data_dir is not None and self.dataset not in FILE_DATASET_DIRS:
            raise ValueError(f"data_dir: dataset {self.dataset!r} reads no files (only "
                             f"{', '.join(FILE_DATASET_DIRS)} take a data_dir)")
        if self.diagnose_every and not (rule.edge_coupling or rule.preconditioned):
            raise ValueError("diagnose_every: the edge-coupling identities are for "
                             f"{_names('edge_coupling')} and the adaptive steps")
        return self

    @property
    def threshold(self) -> float:
        """The optimiser's stability threshold on sharpness."""
        return rule_class(self.optimizer).threshold_for(self.lr, self.beta,
                                                        **rule_hyperparameters(self))


def _one_of(kind: str, name: str, registry) -> str:
    """A built-in name, or a user component's spec (a file's path made absolute)."""
    if is_spec(name):
        return absolute_spec(name)
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(registry)}, "
                         "or give FILE.py:NAME or package.module:NAME")
    return name


def _names(fact: str) -> str:
    """The optimisers whose rule has ``fact``, e.g. ``polyak/nesterov`` for momentum."""
    return "/".join(rules_with(fact))


def load_toml(path: str | Path) -> dict:
    """A TOML file as a dict; a missing or malformed file is a clear ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {path} is not valid TOML: {err}") from err


def _check_tables(file: str | Path, data: dict) -> None:
    """A run's file has a [run] table and optionally [log]; anything else would be ignored."""
    if "grid" in data:
        raise ValueError(f"{file} is a sweep file (it has a [grid] table): run it with "
                         "eoskit sweep --config")
    extra = sorted(set(data) - {"run", "log"})
    if extra:
        raise ValueError(f"{file}: unknown table or key {', '.join(extra)} beside [run] "
                         "(a run's file has [run] and optionally [log])")


def run_config_from(file: str | Path | None, overrides: dict) -> RunConfig:
    """File values (its ``[run]`` table, or the top level), then explicit overrides."""
    values: dict = {}
    if file is not None:
        data = load_toml(file)
        if "run" in data:
            _check_tables(file, data)
        values.update(data.get("run", data))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig(**values)
