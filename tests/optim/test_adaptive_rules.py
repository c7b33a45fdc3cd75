"""Adam, AdamW and RMSprop: eoskit's rules are torch's optimisers, and they resume exactly."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from eoskit import store
from eoskit.optim import (
    make_rule,
    run_quadratic,
    stability_threshold,
    state_preconditioner,
    torch_preconditioner,
)
from eoskit.training.config import RunConfig
from eoskit.training.loop import train

F64 = torch.float64
TORCH = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}
CASES = {  # name: (eoskit hyperparameters, torch keyword arguments)
    "adam": ({}, {}),
    "adam-l2": ({"beta1": 0.5, "beta2": 0.9, "eps": 1e-6, "weight_decay": 0.1},
                {"betas": (0.5, 0.9), "eps": 1e-6, "weight_decay": 0.1}),
    "adamw": ({}, {}),
    "adamw-wd": ({"beta1": 0.0, "weight_decay": 0.3}, {"betas": (0.0, 0.999),
                                                        "weight_decay": 0.3}),
    "rmsprop": ({}, {}),
    "rmsprop-l2": ({"alpha": 0.9, "eps": 1e-5, "weight_decay": 0.05},
                   {"alpha": 0.9, "eps": 1e-5, "weight_decay": 0.05}),
}
LR = 1e-2
SIDE_BY_SIDE: dict[str, float] = {}  # largest parameter difference per case (printed with -s)


def _problem():
    gen = torch.Generator().manual_seed(0)
    X, Y = torch.randn(32, 5, generator=gen, dtype=F64), torch.randn(32, 2, generator=gen,
                                                                     dtype=F64)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2)).to(F64)
    return model, lambda m: ((m(X) - Y) ** 2).mean()


def _grad_at(model, loss_fn, x):
    vector_to_parameters(x, model.parameters())
    model.zero_grad()
    loss_fn(model).backward()
    return parameters_to_vector(p.grad for p in model.parameters())


@pytest.mark.parametrize("case", list(CASES))
def test_rule_steps_are_torchs_to_1e12_after_50_steps(case):
    name = case.split("-")[0]
    ours_hyper, torch_kwargs = CASES[case]
    model, loss_fn = _problem()
    twin, _ = _problem()
    opt = TORCH[name](model.parameters(), lr=LR, **torch_kwargs)
    rule = make_rule(name, LR, **ours_hyper)
    x = parameters_to_vector(twin.parameters()).detach().clone()
    worst = 0.0
    for _ in range(50):
        g = _grad_at(twin, loss_fn, x)
        p_next = rule.preconditioner(g, x)
        x = x + rule.step(g, x)
        opt.zero_grad()
        loss_fn(model).backward()
        opt.step()
        theirs = parameters_to_vector(model.parameters()).detach()
        worst = max(worst, float((x - theirs).abs().max()))
        # the P the rule announced before the step is the one torch's state now holds
        assert torch.allclose(p_next, torch_preconditioner(opt, list(model.parameters())),
                              rtol=1e-13, atol=0)
    SIDE_BY_SIDE[case] = worst
    print(f"{case}: max |x_eoskit − x_torch| over 50 steps = {worst:.1e}")
    assert worst <= 1e-12
    start = parameters_to_vector(_problem()[0].parameters()).detach()
    assert float((x - start).abs().max()) > 1e-3


def test_thresholds_and_hyperparameter_validation():
    assert stability_threshold("adam", 0.01, beta1=0.9) == pytest.approx(3800.0)
    assert stability_threshold("adamw", 0.01, beta1=0.0) == pytest.approx(200.0)
    assert stability_threshold("rmsprop", 0.01) == pytest.approx(200.0)
    cfg = RunConfig(optimizer="adamw", lr=1e-3)
    assert (cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay) == (0.9, 0.999, 1e-8, 0.01)
    assert cfg.threshold == pytest.approx(38 / 1e-3)
    assert RunConfig(optimizer="rmsprop").alpha == 0.99 and RunConfig().beta1 is None
    for bad in ({"beta1": 0.9}, {"optimizer": "rmsprop", "beta2": 0.9},
                {"optimizer": "adam", "alpha": 0.9},
                {"optimizer": "polyak", "beta": 0.5, "freeze_preconditioner_at": 3}):
        with pytest.raises(ValueError, match="not used by optimizer"):
            RunConfig(**bad)
    with pytest.raises(ValueError, match="takes no alpha"):
        make_rule("adam", 0.1, alpha=0.5)


def test_adam_is_preconditioned_heavy_ball_on_a_quadratic():
    # x² curvature: Adam's steps stay bounded by ~η whatever λ is (it normalises g)
    out = run_quadratic(make_rule("adam", 0.01), curvature=1e4, steps=300)
    assert max(out) < 1.05


TINY = dict(dataset="digits", n_train=48, n_test=16, width=6, depth=1, dtype="float64",
            steps=24, checkpoint_every=4, keep_checkpoints=10, sharpness_every=3,
            eval_every=5, lr=0.01, eig_tol=1e-6)


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop"])
def test_resume_from_a_mid_checkpoint_is_row_identical(tmp_path, name):
    cfg = RunConfig(**TINY, optimizer=name, weight_decay=0.05 if name != "adam" else None)
    ref = tmp_path / "ref"
    train(cfg, ref, progress=False)
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    store.write_json(run / "summary.json", {"status": "running", "steps": 0})
    (run / "params_final.pt").unlink()
    for p in (run / "checkpoints").glob("ckpt-*"):
        if int(p.stem.split("-")[1]) > 12:  # resume from step 12
            p.unlink()
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt-*.pt"))[-1] == \
        "ckpt-000000012.pt"
    summary = train(None, run, resume=True, progress=False)
    assert summary["status"] == "completed"
    drop = ("wall_time",)
    ra, rb = ([{k: v for k, v in r.items() if k not in drop} for r in store.read_csv(d)]
              for d in (ref / "metrics.csv", run / "metrics.csv"))
    assert len(ra) == len(rb) == 24
    assert ra == rb
    assert torch.equal(torch.load(ref / "params_final.pt"), torch.load(run / "params_final.pt"))


@pytest.mark.parametrize("kind", ["adam", "rmsprop"])
def test_state_diagonal_slices_are_the_optimisers_denominator(kind):
    # the reference: P written out from torch's documented update, parameter by parameter
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(*s)) for s in [(3, 4), (1,), (5,), (2, 3)]]
    opt = TORCH[kind](params, lr=0.01, **({"betas": (0.9, 0.99)} if kind == "adam" else {}))
    for _ in range(3):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    parts = []
    for p in params:
        st = opt.state[p]
        v = st["exp_avg_sq"] / (1 - 0.99 ** float(st["step"])) if kind == "adam" else (
            st["square_avg"])
        parts.append((v.sqrt() + 1e-8).reshape(-1))
    reference = torch.cat(parts)
    P = state_preconditioner(opt, params).to(dtype=F64)
    assert P.numel() == reference.numel() == 24 and P.shape == (24,)
    for lo, hi in [(0, 24), (0, 12), (11, 13), (12, 13), (13, 20), (5, 22), (23, 24), (7, 7)]:
        got = P[lo:hi]
        assert got.dtype == F64 and got.shape == (hi - lo,)
        assert torch.allclose(got, reference[lo:hi].double(), rtol=1e-6, atol=0)
    assert torch.equal(torch_preconditioner(opt, params), P.full().float())
    with pytest.raises(IndexError, match="contiguously"):
        P[0:24:2]
