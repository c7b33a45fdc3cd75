"""Small, seeded networks for Edge-of-Stability experiments.

Every model is a plain ``nn.Sequential`` of Linear/Conv2d layers, smooth or
piecewise-linear activations and average pooling: no BatchNorm, no dropout,
no buffers, so ``torch.func.functional_call`` with swapped-in parameters
computes exactly the same function. Initialisation is PyTorch's default,
drawn under a private RNG seeded by ``seed``: the same seed gives the same
parameters whatever the global RNG state, and the global state is untouched.

Models (``MODELS``)
-------------------
``fc-<act>`` (act = tanh, relu, elu, gelu, softplus)
    Flatten, ``depth`` hidden Linear layers of ``width`` units each followed
    by the activation, then a Linear layer to ``n_outputs``.
``cnn-<act>`` (act = relu, tanh)
    ``depth`` blocks of Conv2d(3x3, padding 1, ``width`` channels) ->
    activation -> AvgPool2d(2), then Flatten -> Linear to ``n_outputs``.
    ``width`` is the channel count. Average (not max) pooling keeps the
    network smooth where the activation is, which matters for Hessians and
    higher derivatives. Each block halves H and W (rounding down), so the
    input needs ``H, W >= 2**depth``.

Example
-------
>>> m = build_model("fc-tanh", (1, 28, 28), 10, width=150)
>>> count_parameters(m)
141910
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["MODELS", "ModelError", "build_model", "count_parameters"]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
}
MODELS: tuple[str, ...] = (
    "fc-tanh",
    "fc-relu",
    "fc-elu",
    "fc-gelu",
    "fc-softplus",
    "cnn-relu",
    "cnn-tanh",
)


class ModelError(ValueError):
    """Unknown model name or invalid model options."""


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    n_outputs: int,
    *,
    width: int = 200,
    depth: int = 2,
    seed: int = 0,
    bias: bool = True,
) -> nn.Module:
    """Build model ``name`` for inputs of shape ``input_shape`` (without batch dim).

    The result maps ``(n, *input_shape)`` float32 tensors to ``(n, n_outputs)``;
    convert with ``.double()`` for float64. ``bias=False`` drops all biases.

    >>> m = build_model("cnn-tanh", (3, 32, 32), 10, width=8, seed=1)
    >>> tuple(m(torch.zeros(5, 3, 32, 32)).shape)
    (5, 10)
    """
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    input_shape = _check_options(input_shape, n_outputs, width, depth)
    kind, act = name.split("-", 1)
    builder = _fc if kind == "fc" else _cnn
    # Default init draws from the global generator; fork it so seeding is private.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(_ACTIVATIONS[act], input_shape, n_outputs, width, depth, bias)


def count_parameters(model: nn.Module) -> int:
    """Total number of scalar parameters in ``model``."""
    return sum(p.numel() for p in model.parameters())


def _check_options(input_shape, n_outputs, width, depth) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise ModelError(f"input_shape must be a tuple of ints, got {input_shape!r}") from None
    if not shape or min(shape) <= 0:
        raise ModelError(f"input_shape must be positive sizes, got {input_shape!r}")
    for label, value in (("n_outputs", n_outputs), ("width", width), ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ModelError(f"{label} must be a positive integer, got {value!r}")
    return shape


def _fc(act, input_shape, n_outputs, width, depth, bias) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width, bias=bias), act()]
        fan_in = width
    layers.append(nn.Linear(fan_in, n_outputs, bias=bias))
    return nn.Sequential(*layers)


def _cnn(act, input_shape, n_outputs, width, depth, bias) -> nn.Sequential:
    if len(input_shape) != 3:
        raise ModelError(f"CNN models need (C, H, W) inputs, got input_shape {input_shape}")
    channels, h, w = input_shape
    if min(h, w) < 2**depth:
        raise ModelError(
            f"input {h}x{w} is too small for depth {depth}: each block halves H and W, "
            f"so they must be at least {2**depth}"
        )
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, width, 3, padding=1, bias=bias), act(), nn.AvgPool2d(2)]
        channels, h, w = width, h // 2, w // 2
    layers += [nn.Flatten(), nn.Linear(channels * h * w, n_outputs, bias=bias)]
    return nn.Sequential(*layers)
