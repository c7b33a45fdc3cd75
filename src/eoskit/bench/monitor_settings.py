"""The Transformer settings of ``eoskit bench monitor``: a GPT-2-style model on token batches.

``gpt-small``: ``GPT2Config(n_layer=4, n_embd=256, n_head=4, vocab_size=8192,
n_positions=128)`` (d = 5.29M), batches of 8×128 random token ids; ``gpt2``:
GPT-2 small's configuration (124M), batches of 4×128; ``gpt-tiny`` (d ≈ 13k, 4×16 tokens)
to try the bench in seconds. Next-token cross-entropy,
dropout off, float32, seeded. The measurement set is one fixed batch; every
training step draws a fresh one (minibatch noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class MonitorSetting:
    name: str
    config: dict  # GPT2Config keyword arguments
    batch: int
    seq: int
    lr: dict  # optimiser name -> learning rate


SETTINGS = {
    "gpt-small": MonitorSetting("gpt-small", dict(n_layer=4, n_embd=256, n_head=4,
                                                  vocab_size=8192, n_positions=128),
                                8, 128, {"sgd": 0.1, "adamw": 3e-4}),
    "gpt2": MonitorSetting("gpt2", {}, 4, 128, {"sgd": 0.1, "adamw": 3e-4}),
    # seconds on a laptop: to try the bench (and to test it), not to read its ratios
    "gpt-tiny": MonitorSetting("gpt-tiny", dict(n_layer=1, n_embd=32, n_head=2, vocab_size=128,
                                                n_positions=16), 4, 16,
                               {"sgd": 0.1, "adamw": 3e-4}),
}
OPTIMIZERS = ("sgd", "adamw")


class TokenLM(nn.Module):
    """A causal language model returning its logits (B, T, V)."""

    def __init__(self, config: dict):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        special = {} if "vocab_size" not in config else {
            "bos_token_id": config["vocab_size"] - 1, "eos_token_id": config["vocab_size"] - 1}
        cfg = GPT2Config(**config, **special, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        self.lm = GPT2LMHeadModel(cfg)
        self.vocab = cfg.vocab_size

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=ids).logits


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each token's prediction of the next one."""
    v = logits.shape[-1]
    return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1))


def build_model(setting: MonitorSetting, seed: int = 0) -> TokenLM:
    torch.manual_seed(seed)
    return TokenLM(setting.config).eval()  # dropout is off either way; eval skips its calls


def batches(setting: MonitorSetting, vocab: int, seed: int):
    """An endless stream of token batches (B, T), seeded."""
    g = torch.Generator().manual_seed(seed)
    while True:
        yield torch.randint(0, vocab, (setting.batch, setting.seq), generator=g)


def make_optimizer(name: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
