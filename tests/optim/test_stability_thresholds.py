"""Each optimiser diverges on a quadratic exactly when its stability threshold says."""

import pytest
import torch

from eoskit.objective import FunctionObjective
from eoskit.optim import make_rule, run_quadratic, stability_threshold

SETTINGS = [("gd", 0.0), ("sgd", 0.0), ("polyak", 0.5), ("polyak", 0.9), ("nesterov", 0.5),
            ("nesterov", 0.9)]


@pytest.mark.parametrize("name,beta", SETTINGS)
@pytest.mark.parametrize("side", [0.98, 1.02])
def test_threshold_on_scalar_quadratic(name, beta, side):
    lr = 0.1
    lam = side * stability_threshold(name, lr, beta)
    traj = run_quadratic(make_rule(name, lr, beta), lam, steps=3000)
    if side < 1:
        assert traj[-1] < 1e-3, traj[-1]
    else:
        assert traj[-1] > 1e3, traj[-1]


@pytest.mark.parametrize("name,beta", SETTINGS)
def test_threshold_on_matrix_quadratic_through_the_objective(name, beta):
    # ½ xᵀAx with A's top eigenvalue just below, then just above the threshold
    lr = 0.05
    thr = stability_threshold(name, lr, beta)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    for side, grows in ((0.99, False), (1.01, True)):
        spectrum = torch.tensor([side * thr, 0.5 * thr, 3.0, 1.0, 0.3, 0.1], dtype=torch.float64)
        A = Q @ torch.diag(spectrum) @ Q.T
        obj = FunctionObjective(lambda x, A=A: 0.5 * x @ A @ x, dim=6)
        rule = make_rule(name, lr, beta)
        x = torch.ones(6, dtype=torch.float64)
        for _ in range(4000):
            x = x + rule.step(obj.grad(x))
        assert (x.norm() > 1e3) == grows, (name, side, float(x.norm()))


def test_thresholds_closed_form():
    assert stability_threshold("gd", 0.1) == pytest.approx(20.0)
    assert stability_threshold("polyak", 0.1, 0.9) == pytest.approx(38.0)
    assert stability_threshold("nesterov", 0.1, 0.9) == pytest.approx(38.0 / 2.8)


def test_bad_rule():
    with pytest.raises(ValueError, match="learning rate must be positive"):
        make_rule("gd", 0.0)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_rule("no-such-optimizer", 0.1)
