"""The Monitor's preconditioned sharpness under torch's Adam, AdamW and RMSprop.

Reference: P rebuilt by hand from the gradients the loop produced (the
optimisers' moment recursions written out here, torch's bias correction for
Adam/AdamW, none for RMSprop), a dense Hessian by double backward (tests/references.py), and
``eigvalsh(P^{-1/2} H P^{-1/2})``; no eoskit code path is shared.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from eoskit.monitor import Monitor
from tests import references as R


def _dense_h(model, X, Y):
    model = copy.deepcopy(model)
    x, params_of = R.flat_parameters(model)

    def f(x):
        return F.mse_loss(functional_call(model, params_of(x), (X,)), Y)

    H = R.dense_hessian(f, x)
    return (H + H.T) / 2


OPTS = {
    "adam": (lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.9, 0.99), eps=1e-6),
             lambda lr: (2 + 2 * 0.9) / (0.1 * lr)),
    "adamw": (lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.5, 0.9), eps=1e-5,
                                           weight_decay=0.1),
              lambda lr: 3.0 / (0.5 * lr)),
    "rmsprop": (lambda ps: torch.optim.RMSprop(ps, lr=0.001, alpha=0.9, eps=1e-4),
                lambda lr: 2.0 / lr),
}


@pytest.mark.parametrize("raw", [True, False], ids=["with-raw", "precond-only"])
@pytest.mark.parametrize("kind", list(OPTS))
def test_precond_sharpness_equals_dense_eigvalsh(kind, raw):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(20, 3, dtype=torch.float64, generator=gen)
    Y = torch.randn(20, 2, dtype=torch.float64, generator=gen)
    make, threshold = OPTS[kind]
    opt = make(model.parameters())
    grp = opt.param_groups[0]
    mon = Monitor(model, F.mse_loss, (X, Y), every=2, neigs=2, optimizer=opt, tol=1e-12,
                  restart_every=0, raw_sharpness=raw)
    v = None
    rows = []
    for t in range(1, 5):
        opt.zero_grad()
        F.mse_loss(model(X), Y).backward()
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        if kind == "rmsprop":
            v = (1 - grp["alpha"]) * g * g if v is None else grp["alpha"] * v + (
                1 - grp["alpha"]) * g * g
            p_ref = v.sqrt() + grp["eps"]
        else:
            b2 = grp["betas"][1]
            v = (1 - b2) * g * g if v is None else b2 * v + (1 - b2) * g * g
            p_ref = (v / (1 - b2 ** t)).sqrt() + grp["eps"]
        opt.step()
        row = mon.step()
        if row is not None:
            H = _dense_h(model, X, Y)
            r = p_ref.rsqrt()
            want = torch.linalg.eigvalsh(r[:, None] * H * r[None, :]).flip(0)[:2]
            got = torch.tensor([row["precond_eig_1"], row["precond_eig_2"]],
                               dtype=torch.float64)
            assert torch.allclose(got, want, rtol=1e-8, atol=0), (t, got, want)
            assert row["precond_sharpness"] == row["precond_eig_1"]
            assert 0 <= row["precond_eig_error_estimate"] <= 1e-12
            if raw:
                top = torch.linalg.eigvalsh(H)[-1]
                assert row["sharpness"] == pytest.approx(float(top), rel=1e-8)
                assert 0 <= row["eig_error_estimate"] <= 1e-12
            else:
                assert row["sharpness"] is row["eig_1"] is row["eig_error_estimate"] is None
            assert row["threshold"] == pytest.approx(threshold(grp["lr"]), rel=1e-12)
            rows.append(row)
    assert len(rows) == 2
    mon.close()


def test_no_precond_columns_for_sgd_and_empty_cells_before_adams_first_step(tmp_path):
    from eoskit import store

    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    X, Y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 1, dtype=torch.float64)
    sgd = Monitor(model, F.mse_loss, (X, Y), optimizer=torch.optim.SGD(model.parameters(), 0.1))
    assert "precond_sharpness" not in sgd.columns
    with pytest.raises(ValueError, match="adaptive optimiser"):
        Monitor(model, F.mse_loss, (X, Y), raw_sharpness=False,
                optimizer=torch.optim.SGD(model.parameters(), 0.1))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    with Monitor(model, F.mse_loss, (X, Y), every=1, optimizer=opt, out=tmp_path) as mon:
        first = mon.measure()  # no step yet: no P
        opt.zero_grad()
        F.mse_loss(model(X), Y).backward()
        opt.step()
        second = mon.step()
    assert first["precond_sharpness"] is None and second["precond_sharpness"] > 0
    alone = Monitor(model, F.mse_loss, (X, Y), optimizer=torch.optim.Adam(model.parameters()),
                    raw_sharpness=False).measure()  # no P yet: nothing measured, no product
    assert alone["sharpness"] is alone["precond_sharpness"] is None and alone["hvps"] == 0
    assert store.read_json(tmp_path / "summary.json")["sharpness_series"] == "precond_sharpness"
