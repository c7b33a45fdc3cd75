"""``transformer`` / ``transformer-causal``: a small pre-LN Transformer on token sequences.

Token embedding + learned positional embedding, ``depth`` pre-LN blocks
(``h + attn(LN(h))``, then ``h + mlp(LN(h))``), a final LayerNorm and a
linear head applied at every position: ``(N, P)`` tokens -> ``(N, P, n_outputs)``
logits, one classification per position. ``transformer`` attends in both
directions (an encoder, needed for ``sorting``: every output depends on the
whole sequence); ``transformer-causal`` masks the future (decoder-only).
Attention is ``F.scaled_dot_product_attention`` and the MLP uses GELU, so the
network is smooth; eoskit's objectives evaluate it under
:func:`eoskit.objective.layers.exact_derivatives` (composite LayerNorm,
math-backend attention), where every derivative order is exact. No dropout.

Inputs may be float: :class:`~eoskit.objective.ModelObjective` casts its
inputs to its float dtype, and token ids (small integers) survive that cast
exactly, so they are rounded back to int64 here.

Example:
    >>> import torch
    >>> torch.manual_seed(0) is not None
    True
    >>> net = Transformer(vocab=5, n_positions=4, n_outputs=5, width=8, depth=1, heads=2)
    >>> tuple(net(torch.randint(0, 5, (3, 4))).shape)
    (3, 4, 5)
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from eoskit.models.common import ModelError, positive_int


class SelfAttention(nn.Module):
    """Multi-head self-attention: one fused q/k/v projection, SDPA, an output projection."""

    def __init__(self, width: int, heads: int, causal: bool, bias: bool):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(width, 3 * width, bias=bias)
        self.out = nn.Linear(width, width, bias=bias)

    def forward(self, h: Tensor) -> Tensor:  # (N, P, D) -> (N, P, D)
        n, p, d = h.shape
        qkv = self.qkv(h).view(n, p, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (N, H, P, D/H)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (N, H, P, D/H)
        return self.out(a.transpose(1, 2).reshape(n, p, d))


class Block(nn.Module):
    """Pre-LN Transformer block: ``h + attn(LN(h))``, then ``h + mlp(LN(h))``."""

    def __init__(self, width: int, heads: int, causal: bool, bias: bool, mlp_ratio: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(width, bias=bias)
        self.attn = SelfAttention(width, heads, causal, bias)
        self.ln2 = nn.LayerNorm(width, bias=bias)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width, bias=bias), nn.GELU(),
                                 nn.Linear(mlp_ratio * width, width, bias=bias))

    def forward(self, h: Tensor) -> Tensor:
        h = h + self.attn(self.ln1(h))
        return h + self.mlp(self.ln2(h))


class Transformer(nn.Module):
    """Embeddings, ``depth`` pre-LN blocks, final LayerNorm, per-position linear head."""

    def __init__(self, vocab: int, n_positions: int, n_outputs: int, width: int, depth: int,
                 heads: int, causal: bool = False, bias: bool = True, mlp_ratio: int = 4):
        super().__init__()
        self.vocab = vocab
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(n_positions, width)
        self.blocks = nn.ModuleList(Block(width, heads, causal, bias, mlp_ratio)
                                    for _ in range(depth))
        self.ln_f = nn.LayerNorm(width, bias=bias)
        self.head = nn.Linear(width, n_outputs, bias=bias)

    def forward(self, x: Tensor) -> Tensor:  # (N, P) token ids -> (N, P, n_outputs)
        tokens = x.round().long() if x.is_floating_point() else x
        h = self.tokens(tokens) + self.positions.weight[: tokens.shape[1]]  # (N, P, D)
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))


def transformer(input_shape, n_outputs, width, depth, bias, *, heads=2, vocab=None,
                mlp_ratio=4, causal=False) -> Transformer:
    """A :class:`Transformer` for ``(P,)`` token inputs; ``vocab`` defaults to ``n_outputs``."""
    if len(input_shape) != 1:
        raise ModelError(f"transformer models need (P,) token inputs, got input_shape "
                         f"{input_shape}")
    heads, mlp_ratio = positive_int("heads", heads), positive_int("mlp_ratio", mlp_ratio)
    vocab = positive_int("vocab", n_outputs if vocab is None else vocab)
    if width % heads:
        raise ModelError(f"width {width} must be divisible by heads {heads}")
    return Transformer(vocab, input_shape[0], n_outputs, width, depth, heads, causal, bias,
                       mlp_ratio)


def parameter_count(vocab, n_positions, n_outputs, width, depth, mlp_ratio=4) -> int:
    """Parameters of a :class:`Transformer` with biases (the formula the tests check).

    >>> parameter_count(5, 4, 5, 8, 1)
    1005
    """
    d, m = width, mlp_ratio * width
    block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * m + m) + (m * d + d)
    return vocab * d + n_positions * d + depth * block + 2 * d + d * n_outputs + n_outputs
