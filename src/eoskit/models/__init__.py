"""Small, seeded networks for Edge-of-Stability experiments.

Initialisation is PyTorch's default, drawn under a private RNG seeded by
``seed``: the same seed gives the same parameters whatever the global RNG
state, and the global state is untouched. No dropout anywhere.

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
``transformer``, ``transformer-causal``
    Pre-LN Transformer on ``(P,)`` token inputs (``width`` = d_model,
    ``depth`` blocks, ``heads`` heads, GELU MLP of ``mlp_ratio * width``),
    bidirectional or causal; per-position logits ``(n, P, n_outputs)``.
    See :mod:`eoskit.models.transformer`.
``resnet`` (GELU), ``resnet-relu``, ``resnet-tanh``
    CIFAR-style ResNet: conv stem, ``depth`` basic blocks of ``width``
    channels, ``norm`` none/batch/group/layer, global average pooling, linear
    head. See :mod:`eoskit.models.resnet`.

fc and cnn models are plain ``nn.Sequential`` stacks with no buffers, so
``torch.func.functional_call`` with swapped-in parameters computes exactly
the same function; ``resnet`` with ``norm="batch"`` has BatchNorm buffers,
which eoskit's objectives never update.

Example
-------
>>> m = build_model("fc-tanh", (1, 28, 28), 10, width=150)
>>> count_parameters(m)
141910

Modules
-------
``registry`` (MODELS, build_model, count_parameters), ``common`` (ModelError,
activations, option checks), ``mlp``, ``cnn``, ``transformer``, ``resnet``.
"""

from __future__ import annotations

from eoskit.models.common import ModelError
from eoskit.models.registry import MODELS, build_model, count_parameters
from eoskit.models.resnet import NORMS

__all__ = [
    # Building
    "build_model",
    "count_parameters",
    # Registry and options
    "MODELS",
    "NORMS",
    # Errors
    "ModelError",
]
