"""Frozen parameters (issue 25, case 9): the Monitor's sharpness on a tanh net whose first
layer is frozen, against the dense Hessian over the trainable parameters, and over all of
them (what it reported before the fix).

Run: ``PYTHONPATH=src:. python benchmarks/frozen_params_check.py``
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from eoskit import Monitor
from tests.objective.test_frozen_parameters import _data, _model, _reference
from tests.references import dense_hessian, eigh_top


def all_params_loss(model, X, Y):
    """The loss as a function of every parameter, frozen ones included."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]

    def g(z):
        params = {n: c.view(s) for n, c, s in zip(names, torch.split(z, sizes), shapes,
                                                  strict=True)}
        return F.mse_loss(functional_call(model, params, (X,)), Y)

    return g, torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def main() -> None:
    torch.set_num_threads(1)
    model, (X, Y) = _model(), _data()
    f, x = _reference(model, X, Y)
    top = eigh_top(dense_hessian(f, x), 1)[0].item()
    g, z = all_params_loss(model, X, Y)
    full = eigh_top(dense_hessian(g, z), 1)[0].item()
    row = Monitor(model, F.mse_loss, (X, Y), every=1, tol=1e-10, dtype=torch.float64).measure()
    rel = abs(row["sharpness"] - top) / top
    print(f"dense, trainable ({x.numel()}): {top:.12g}\nMonitor: {row['sharpness']:.12g} "
          f"(rel. error {rel:.2e})\ndense, all ({z.numel()}): {full:.12g}")


if __name__ == "__main__":
    main()
