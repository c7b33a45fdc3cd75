"""``MODELS`` and :func:`build_model`: every built-in network by name, seeded privately."""

from __future__ import annotations

import torch
from torch import nn

from eoskit.models.cnn import cnn
from eoskit.models.common import ACTIVATIONS, ModelError, check_options
from eoskit.models.mlp import fc
from eoskit.models.resnet import resnet
from eoskit.models.transformer import transformer

MODELS: tuple[str, ...] = (
    "fc-tanh",
    "fc-relu",
    "fc-elu",
    "fc-gelu",
    "fc-softplus",
    "cnn-relu",
    "cnn-tanh",
    "transformer",
    "transformer-causal",
    "resnet",
    "resnet-relu",
    "resnet-tanh",
)


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    n_outputs: int,
    *,
    width: int = 200,
    depth: int = 2,
    seed: int = 0,
    bias: bool = True,
    heads: int = 2,
    norm: str = "none",
    vocab: int | None = None,
    mlp_ratio: int = 4,
) -> nn.Module:
    """Build model ``name`` for inputs of shape ``input_shape`` (without batch dim).

    Image and vector models map ``(n, *input_shape)`` float32 tensors to
    ``(n, n_outputs)``; transformers map ``(n, P)`` token ids to
    ``(n, P, n_outputs)``. Convert with ``.double()`` for float64.
    ``bias=False`` drops all biases (and LayerNorm shifts). ``heads``,
    ``vocab`` (default ``n_outputs``) and ``mlp_ratio`` are the transformer's;
    ``norm`` (none, batch, group, layer) the resnet's, and ``none`` elsewhere.

    >>> m = build_model("cnn-tanh", (3, 32, 32), 10, width=8, seed=1)
    >>> tuple(m(torch.zeros(5, 3, 32, 32)).shape)
    (5, 10)
    >>> m = build_model("transformer", (6,), 4, width=8, depth=1, heads=2)
    >>> tuple(m(torch.zeros(5, 6, dtype=torch.long)).shape)
    (5, 6, 4)
    """
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    input_shape = check_options(input_shape, n_outputs, width, depth)
    if norm != "none" and not name.startswith("resnet"):
        raise ModelError(f"norm {norm!r} is a resnet option; {name!r} takes norm='none'")
    kind, _, act = name.partition("-")
    # Default init draws from the global generator; fork it so seeding is private.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "transformer":
            return transformer(input_shape, n_outputs, width, depth, bias, heads=heads,
                               vocab=vocab, mlp_ratio=mlp_ratio, causal=act == "causal")
        if kind == "resnet":
            return resnet(ACTIVATIONS[act or "gelu"], input_shape, n_outputs, width, depth,
                          bias, norm=norm)
        builder = fc if kind == "fc" else cnn
        return builder(ACTIVATIONS[act], input_shape, n_outputs, width, depth, bias)


def count_parameters(model: nn.Module) -> int:
    """Total number of scalar parameters in ``model``."""
    return sum(p.numel() for p in model.parameters())
