"""The benchmark's problem (:class:`BenchProblem`), its cached GD points and reference λ₁.

The GD trajectory is run in float32 once and the points are cached under the
cache folder (keyed by setting, torch version and thread count), so reruns
skip training; so are the float64 reference eigenvalues.

>>> from eoskit.bench.setting import TINY
>>> prob, x0 = build(TINY, "float64")
>>> prob.n, prob.dim == x0.numel(), prob.dtype
(200, True, torch.float64)
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from eoskit.bench.setting import Setting
from eoskit.data import load_dataset
from eoskit.eigs import lanczos
from eoskit.models import build_model
from eoskit.objective import ModelObjective
from eoskit.store import read_json, write_json
from eoskit.training.run_problem import torch_dtype


@dataclass
class BenchProblem:
    """The setting's objective (eoskit MSE) in one dtype, and its full batch ``X``, ``Y``."""

    setting: Setting
    dtype: torch.dtype
    obj: ModelObjective
    X: Tensor
    Y: Tensor

    @property
    def model(self) -> nn.Module:
        return self.obj.model

    @property
    def n(self) -> int:
        return self.obj.n

    @property
    def dim(self) -> int:
        return self.obj.dim


def build(setting: Setting, dtype: str, *, n_train: int | None = None, width: int | None = None,
          dataset: str | None = None) -> tuple[BenchProblem, Tensor]:
    """The objective (eoskit MSE, the setting's chunking) and the initial parameters."""
    dt = torch_dtype(dtype)
    data = load_dataset(dataset or setting.dataset, n_train=n_train or setting.n_train, n_test=0,
                        seed=setting.seed, loss="mse").to("cpu", dt)
    model = build_model(setting.model, data.input_shape, data.n_outputs,
                        width=width or setting.width, depth=setting.depth, seed=setting.seed)
    model = model.to(dt)  # the peers differentiate the module itself, in the setting's dtype
    obj = ModelObjective(model, "mse", data.x_train, data.y_train,
                         physical_batch=setting.physical_batch, dtype=dt, count_correct=False)
    return BenchProblem(setting, dt, obj, obj.inputs, obj.targets), obj.x0()


def set_params(model: nn.Module, x: Tensor) -> None:
    """Load the flat ``x`` into ``model`` (peers read the module's own parameters)."""
    torch.nn.utils.vector_to_parameters(x.detach().to(next(model.parameters()).dtype),
                                        model.parameters())
    for p in model.parameters():
        p.grad = None


def param_hash(x: Tensor) -> str:
    """A short digest of ``x``'s bytes: a cached reference belongs to exactly this point."""
    return hashlib.sha1(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


class Cache:
    """A JSON-and-tensor cache under one folder, keyed by the setting."""

    def __init__(self, root: str | Path, setting: Setting):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.stem = f"{setting.name}-{setting.key()}"
        self.json_path = self.root / f"{self.stem}.json"
        self.data = read_json(self.json_path) if self.json_path.exists() else {}

    def get(self, key, default=None):
        return self.data.get(key, default)

    def put(self, key, value) -> None:
        self.data[key] = value
        write_json(self.json_path, self.data)

    def tensor_path(self, name: str) -> Path:
        return self.root / f"{self.stem}-{name}.pt"


def gd_points(setting: Setting, cache: Cache, log=print) -> dict[str, Tensor]:
    """Parameters at init, at the streaming window start and at the EoS point (float32 GD)."""
    path = cache.tensor_path("points")
    if path.exists():
        return torch.load(path, weights_only=True)
    prob, x = build(setting, "float32")
    keep = {0: "init", setting.stream_from: "stream", setting.eos_steps: "eos"}
    out = {}
    t0 = time.perf_counter()
    for t in range(max(keep) + 1):
        if t in keep:
            out[keep[t]] = x.clone()
        if t == max(keep):
            break
        _, g = prob.obj.value_and_grad(x)
        x = (x - setting.lr * g).detach()
    log(f"  trained {max(keep)} GD steps at lr={setting.lr} in {time.perf_counter() - t0:.0f}s; "
        f"cached {path}")
    torch.save(out, path)
    return out


def reference_eig(prob64: BenchProblem, x: Tensor, tol: float, cache: Cache | None = None,
                  key: str | None = None) -> float:
    """λ₁ by float64 Lanczos at ``x`` (residual tol), cached by ``key``."""
    if cache is not None and key is not None and cache.get(key) is not None:
        return cache.get(key)
    with prob64.obj.at(x.to(torch.float64)) as point:
        res = lanczos(point.hvp, prob64.dim, 2, tol=tol, max_iter=600, dtype=torch.float64)
    value = float(res.eigenvalues[0])
    if cache is not None and key is not None:
        cache.put(key, value)
    return value
