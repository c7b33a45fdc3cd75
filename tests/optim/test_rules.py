"""Each update rule against its closed form; thresholds against the scalar quadratic's iteration."""

import math

import numpy as np
import pytest
import torch

from eoskit.optim import (
    GD,
    OPTIMIZERS,
    RULES,
    SGD,
    Adam,
    AdamW,
    Nesterov,
    Polyak,
    RMSprop,
    make_rule,
    rule_class,
    stability_threshold,
)
from eoskit.training.config import RunConfig

G = [torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([0.5, 3.0], dtype=torch.float64),
     torch.tensor([-4.0, 1.0], dtype=torch.float64)]
LR, BETA = 0.1, 0.6


def _steps(rule):
    return [rule.step(g) for g in G]


def _close(got, want):
    for s, w in zip(got, want, strict=True):
        assert torch.allclose(s, w, rtol=0, atol=1e-15), (s, w)


@pytest.mark.parametrize("name", ["gd", "sgd"])
def test_gradient_steps_are_minus_lr_g(name):
    _close(_steps(make_rule(name, LR)), [-LR * g for g in G])


def test_polyak_steps_sum_the_geometric_history():
    g1, g2, g3 = G
    want = [g1, BETA * g1 + g2, BETA ** 2 * g1 + BETA * g2 + g3]
    _close(_steps(make_rule("polyak", LR, BETA)), [-LR * b for b in want])


def test_nesterov_steps_look_ahead_along_the_buffer():
    g1, g2, g3 = G
    b = [g1, BETA * g1 + g2, BETA ** 2 * g1 + BETA * g2 + g3]
    want = [g + BETA * bt for g, bt in zip(G, b, strict=True)]
    _close(_steps(make_rule("nesterov", LR, BETA)), [-LR * w for w in want])


def _transition(rule, lam):
    """The rule's linear map (x, b) -> (x', b') on ½λx², found by running its own step
    (a rule without momentum keeps b = 0, so its map's radius is |1 − ηλ|)."""
    cols = []
    for x, b in ((1.0, 0.0), (0.0, 1.0)):
        rule.buffer = None if not rule.momentum else torch.tensor([b], dtype=torch.float64)
        xt = torch.tensor([x], dtype=torch.float64)
        x_next = xt + rule.step(lam * xt)
        b_next = 0.0 if rule.buffer is None else float(rule.buffer)
        cols.append([float(x_next), b_next])
    return np.array(cols).T


@pytest.mark.parametrize("name,beta", [("gd", 0.0), ("sgd", 0.0), ("polyak", 0.3),
                                       ("polyak", 0.9), ("nesterov", 0.3), ("nesterov", 0.9)])
def test_threshold_is_where_the_scalar_iteration_loses_stability(name, beta):
    rule = make_rule(name, LR, beta)
    thr = rule.threshold
    assert thr == stability_threshold(name, LR, beta) == rule_class(name).threshold_for(LR, beta)
    radius = [max(abs(np.linalg.eigvals(_transition(rule, f * thr)))) for f in (0.99, 1.0, 1.01)]
    assert radius[0] < 1 and radius[2] > 1, radius
    assert radius[1] == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("name,beta", [("gd", 0.0), ("sgd", 0.0), ("polyak", 0.5),
                                       ("nesterov", 0.5)])
def test_effective_curvature_of_a_quadratic_is_its_curvature(name, beta):
    # on ½λ|x|² every rule's κ_t (its own loss-change formula) is exactly λ
    lam = 3.0
    rule = make_rule(name, LR, beta)
    x = torch.tensor([1.0, -0.5], dtype=torch.float64)
    for _ in range(4):
        g = lam * x
        s = rule.step(g)
        loss, loss_next = 0.5 * lam * float(x @ x), 0.5 * lam * float((x + s) @ (x + s))
        kappa = rule.effective_curvature(loss, loss_next, float(s @ s), rule.curvature_terms(g, s))
        assert kappa == pytest.approx(lam, rel=1e-12)
        x = x + s
    assert math.isnan(rule.effective_curvature(1.0, 1.0, 0.0, {"_g_dot_s": 0.0}))


def test_curvature_terms_only_for_momentum():
    # GD's pending row (and so its checkpoint) carries no extra key
    g = G[0]
    assert make_rule("gd", LR).curvature_terms(g, -LR * g) == {}
    terms = make_rule("polyak", LR, BETA).curvature_terms(g, -LR * g)
    assert terms == {"_g_dot_s": pytest.approx(-LR * float(g @ g))}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_predicted_step_is_the_next_step_and_advances_nothing(name):
    # the loop's diagnostics take s_{t+1} from the rule, before the rule takes it
    beta = BETA if rule_class(name).momentum else 0.0
    rule = make_rule(name, LR, beta)
    x = torch.tensor([0.3, -0.2], dtype=torch.float64)
    for g in G:
        before = rule.state_dict()
        predicted = rule.predicted_step(g, x)
        assert rule.state_dict().keys() == before.keys()
        for key, value in rule.state_dict().items():
            assert value is before[key] or value == before[key], key  # nothing advanced
        _close([predicted], [rule.step(g, x)])


def test_registry_is_the_one_list_of_optimisers():
    assert OPTIMIZERS == tuple(RULES) == ("gd", "polyak", "nesterov", "sgd", "adam", "adamw",
                                          "rmsprop")
    assert RunConfig.model_fields["optimizer"].annotation.__args__ == OPTIMIZERS
    assert {n: type(make_rule(n, LR, 0.5)) for n in RULES} == {
        "gd": GD, "polyak": Polyak, "nesterov": Nesterov, "sgd": SGD, "adam": Adam,
        "adamw": AdamW, "rmsprop": RMSprop}
    assert isinstance(make_rule(name="polyak", lr=LR, beta=BETA), Polyak)
    assert type(Polyak(LR, BETA)) is Polyak
    facts = {n: (r.samples_batch, r.momentum, r.edge_coupling) for n, r in RULES.items()}
    assert facts == {"gd": (False, False, True), "sgd": (True, False, True),
                     "polyak": (False, True, False), "nesterov": (False, True, False),
                     "adam": (False, False, False), "adamw": (False, False, False),
                     "rmsprop": (False, False, False)}
    assert {n: r.threshold_formula for n, r in RULES.items()} == {
        "gd": "2/η", "sgd": "2/η", "polyak": "(2+2β)/η", "nesterov": "(2+2β)/((1+2β)η)",
        "adam": "(2+2β₁)/((1−β₁)η)", "adamw": "(2+2β₁)/((1−β₁)η)", "rmsprop": "2/η"}
    with pytest.raises(ValueError,
                       match="unknown optimizer 'no-such-optimizer'; choose one of gd, polyak"):
        stability_threshold("no-such-optimizer", LR)


def test_a_new_rule_is_one_class_and_one_entry(monkeypatch):
    class Halved(GD):
        name = "halved"

        @classmethod
        def threshold_for(cls, lr, beta=0.0):
            return 4.0 / lr

        def step(self, g):
            return -0.5 * self.lr * g

    monkeypatch.setitem(RULES, "halved", Halved)
    rule = make_rule("halved", LR)
    assert isinstance(rule, Halved) and stability_threshold("halved", LR) == rule.threshold
    assert rule.step(torch.tensor([2.0])).tolist() == pytest.approx([-LR])


def test_state_dict_keys_and_resume():
    a = make_rule("nesterov", LR, BETA)
    a.step(G[0])
    state = a.state_dict()
    assert set(state) == {"name", "lr", "beta", "buffer"} and state["name"] == "nesterov"
    b = make_rule("nesterov", LR, BETA)
    b.load_state_dict(state)
    _close([b.step(g) for g in G[1:]], [a.step(g) for g in G[1:]])
    assert make_rule("gd", LR).state_dict() == {"name": "gd", "lr": LR, "beta": 0.0,
                                                 "buffer": None}
    with pytest.raises(ValueError, match="'polyak' given to 'nesterov'"):
        b.load_state_dict(make_rule("polyak", LR, BETA).state_dict())
