"""``resnet[-<act>]``: a small CIFAR-style residual network, optionally normalised.

A 3x3 convolutional stem to ``width`` channels, ``depth`` basic blocks
(``act(x + N(conv(act(N(conv(x))))))``, two 3x3 convolutions with an identity
shortcut, He et al. 2016) at the input resolution and ``width`` channels, global
average pooling and a linear head. One stage, no striding: eoskit's images
are small (8x8 digits to 32x32 CIFAR) and the point is the residual and
normalisation structure, not the downsampling schedule.

Normalisation ``N`` (``norm``):
``none`` identity; ``batch`` ``BatchNorm2d`` (training mode: each physical
chunk's own statistics, the model's running buffers never updated by eoskit);
``group`` ``GroupNorm(gcd(C, 8), C)`` (8 groups when C allows);
``layer`` ``GroupNorm(1, C)``: statistics over all channels *and* positions of
each sample, with a per-channel affine -- the convolutional LayerNorm.

The activation defaults to GELU (``resnet``): smooth, so third and fourth
derivatives (the edge-coupling diagnostics, central flows) exist everywhere,
yet close to ReLU in behaviour. ``resnet-relu`` and ``resnet-tanh`` are the
piecewise-linear and saturating alternatives.

Example:
    >>> import torch
    >>> net = resnet(nn.GELU, (1, 8, 8), 10, 4, 1, True, norm="layer")
    >>> tuple(net(torch.zeros(2, 1, 8, 8)).shape)
    (2, 10)
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from eoskit.models.common import ModelError

NORMS = ("none", "batch", "group", "layer")
MAX_GROUPS = 8


def norm_layer(norm: str, channels: int) -> nn.Module:
    """The normalisation module ``norm`` for ``channels`` feature maps."""
    if norm == "none":
        return nn.Identity()
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(math.gcd(channels, MAX_GROUPS), channels)
    if norm == "layer":
        return nn.GroupNorm(1, channels)
    raise ModelError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


class BasicBlock(nn.Module):
    """``act(x + N(conv(act(N(conv(x))))))`` with 3x3 convolutions of ``width`` channels."""

    def __init__(self, act, width: int, norm: str, bias: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=bias)
        self.norm1 = norm_layer(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=bias)
        self.norm2 = norm_layer(norm, width)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, C, H, W)
        h = self.act(self.norm1(self.conv1(x)))
        return self.act(x + self.norm2(self.conv2(h)))


class ResNet(nn.Module):
    """Stem, ``depth`` basic blocks, global average pooling, linear head."""

    def __init__(self, act, in_channels: int, n_outputs: int, width: int, depth: int,
                 norm: str = "none", bias: bool = True):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=bias),
                                  norm_layer(norm, width), act())
        self.blocks = nn.Sequential(*(BasicBlock(act, width, norm, bias) for _ in range(depth)))
        self.head = nn.Linear(width, n_outputs, bias=bias)

    def forward(self, x: Tensor) -> Tensor:  # (N, C_in, H, W) -> (N, n_outputs)
        h = self.blocks(self.stem(x))  # (N, width, H, W)
        return self.head(h.mean(dim=(2, 3)))


def resnet(act, input_shape, n_outputs, width, depth, bias, *, norm="none") -> ResNet:
    """A :class:`ResNet` for ``(C, H, W)`` image inputs."""
    if len(input_shape) != 3:
        raise ModelError(f"resnet models need (C, H, W) inputs, got input_shape {input_shape}")
    if norm not in NORMS:
        raise ModelError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return ResNet(act, input_shape[0], n_outputs, width, depth, norm, bias)


def parameter_count(in_channels, n_outputs, width, depth, norm="none") -> int:
    """Parameters of a :class:`ResNet` with biases (the formula the tests check).

    >>> parameter_count(1, 10, 4, 1), parameter_count(1, 10, 4, 1, "batch")
    (386, 410)
    """
    conv = 9 * width * width + width
    affine = 0 if norm == "none" else 2 * width  # every norm has a per-channel affine
    stem = 9 * in_channels * width + width + affine
    return stem + depth * 2 * (conv + affine) + width * n_outputs + n_outputs
