"""``fc-<act>``: fully connected networks (flatten, ``depth`` hidden layers, linear head)."""

from __future__ import annotations

import math

from torch import nn


def fc(act, input_shape, n_outputs, width, depth, bias) -> nn.Sequential:
    """Flatten -> ``depth`` x (Linear(width) -> act) -> Linear(n_outputs)."""
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width, bias=bias), act()]
        fan_in = width
    layers.append(nn.Linear(fan_in, n_outputs, bias=bias))
    return nn.Sequential(*layers)
