"""A user data set for ``eoskit run --dataset examples/user/data.py:teacher``.

Returns tensors eoskit uses as they are (no preprocessing): floating ``y`` is a
regression target, integer ``y`` would be class ids.
"""

import torch


def teacher(n_train, n_test, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, 6, generator=gen)
    w = torch.randn(6, 2, generator=gen)
    y = torch.sin(x @ w) + 0.1 * torch.randn(n_train + n_test, 2, generator=gen)
    return {"x_train": x[:n_train], "y_train": y[:n_train],
            "x_test": x[n_train:], "y_test": y[n_train:]}
