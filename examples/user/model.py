"""A user model for ``eoskit run --model examples/user/model.py:ResidualNet``.

eoskit passes the keyword arguments this signature accepts (``input_shape``,
``n_outputs``, ``width``, ``depth``, ``seed``) after ``torch.manual_seed(seed)``.
"""

import math

from torch import nn


class ResidualNet(nn.Module):
    """Flatten, a projection, ``depth`` residual tanh blocks with LayerNorm, a linear head."""

    def __init__(self, input_shape, n_outputs, width=16, depth=2):
        super().__init__()
        self.inp = nn.Linear(math.prod(input_shape), width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.Tanh())
            for _ in range(depth))
        self.out = nn.Linear(width, n_outputs)

    def forward(self, x):
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)
