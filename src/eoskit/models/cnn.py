"""``cnn-<act>``: plain convolutional networks with average pooling."""

from __future__ import annotations

from torch import nn

from eoskit.models.common import ModelError


def cnn(act, input_shape, n_outputs, width, depth, bias) -> nn.Sequential:
    """``depth`` x (Conv3x3(width) -> act -> AvgPool2d(2)) -> Flatten -> Linear(n_outputs)."""
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
