"""``eoskit bench monitor``: its rows on the tiny setting, and the twin's memory it takes off.

References: a tight Lanczos at the same parameters (the bench's own check, whose values
are asserted here), and the closed-form size of Adam's state.
"""

from __future__ import annotations

import torch

from eoskit.bench.monitor_bench import _state_mb, bench_monitor, markdown, plain_twin
from eoskit.bench.monitor_settings import SETTINGS, build_model, make_optimizer


def test_state_size_is_parameters_gradients_and_both_moments():
    model = build_model(SETTINGS["gpt-tiny"])
    opt = make_optimizer("adamw", model, 1e-3)
    ids = torch.randint(0, model.vocab, (2, 16))
    model(ids).sum().backward()
    opt.step()
    params = list(model.parameters())
    d = sum(p.numel() for p in params)
    # parameters, gradients, exp_avg, exp_avg_sq (float32) and one float32 step per tensor
    assert _state_mb(model, opt) * 2**20 == 4 * d * 4 + 4 * len(params)


def test_the_plain_twin_owns_its_optimiser_state():
    """The twin starts from the monitored loop's state and its steps leave that state alone
    (a twin loaded from ``opt.state_dict()`` alone shares Adam's moments and step)."""
    model = build_model(SETTINGS["gpt-tiny"])
    opt = make_optimizer("adamw", model, 1e-3)
    ids = torch.randint(0, model.vocab, (2, 16))
    model(ids).sum().backward()
    opt.step()
    before = {k: v.clone() for k, v in opt.state[next(model.parameters())].items()}
    twin, twin_opt = plain_twin(model, opt, "adamw", 1e-3)
    mine = {t.untyped_storage().data_ptr() for st in opt.state.values() for t in st.values()}
    theirs = {t.untyped_storage().data_ptr() for st in twin_opt.state.values()
              for t in st.values()}
    assert not mine & theirs
    twin_opt.zero_grad()
    twin(ids).sum().backward()
    twin_opt.step()
    for key, value in opt.state[next(model.parameters())].items():
        assert torch.equal(value, before[key]), key


def test_rows_on_the_tiny_setting_are_within_tol_of_the_reference():
    lines = {"adamw": [], "sgd": []}
    rows = {opt: bench_monitor("gpt-tiny", opt, 5, 17, log=lines[opt].append)
            for opt in ("adamw", "sgd")}
    for opt, row in rows.items():
        assert row["measurements"] == 3 and len(row["hvps_all"]) == 3  # steps 5, 10, 15
        assert row["within_tol"] == 1.0 and row["max_rel_error"] <= 1e-3
        assert len(row["rel_errors"]) == (6 if opt == "adamw" else 3)  # raw (+ preconditioned)
        assert row["time_ratio"] is not None and len(row["peak_above_plain_mb"]) == 2
        # a measurement's cost is printed in the twin's plain steps once the twin steps
        # between the Monitor's calls (the Monitor's own clock would count both loops' steps)
        progress = [line for line in lines[opt] if line.lstrip().startswith("step ")]
        assert len(progress) == 3 and "plain steps)" not in progress[0]
        assert all("plain steps)" in line for line in progress[1:])



def test_preconditioned_only_rows_within_tol_and_capped_ones_say_they_are_not():
    """``raw=False``: only the preconditioned value, within tol of the reference. With a cap
    of 2 warm products (far too few on this fast-moving model) each warm row's estimate
    exceeds tol, as does its true error: a capped value never claims a tol it did not reach."""
    alone = bench_monitor("gpt-tiny", "adamw", 5, 17, raw=False, log=lambda *_: None)
    assert len(alone["rel_errors"]) == 3 and alone["max_rel_error"] <= 1e-3
    assert all(b <= 1e-3 for b in alone["stated_estimates"])
    capped = bench_monitor("gpt-tiny", "adamw", 5, 17, raw=False, max_warm_products=2,
                           log=lambda *_: None)
    assert capped["hvps_all"][1:] == [2, 2] and capped["hvps_all"][0] > 2
    assert all(e > 1e-3 and b > 1e-3 for e, b in
               zip(capped["rel_errors"][1:], capped["stated_estimates"][1:], strict=True))


def test_a_looser_tol_reaches_the_monitor_and_counts_errors_within_it():
    """``tol`` is the Monitor's: every stated estimate within it, fewer products than at
    1e-3 in all, and the row counts its errors against it, not against 1e-3."""
    tight = bench_monitor("gpt-tiny", "adamw", 5, 17, raw=False, log=lambda *_: None)
    loose = bench_monitor("gpt-tiny", "adamw", 5, 17, raw=False, tol=3e-2, log=lambda *_: None)
    assert loose["tol"] == 3e-2 and all(b <= 3e-2 for b in loose["stated_estimates"])
    assert sum(loose["hvps_all"]) < sum(tight["hvps_all"])
    assert max(loose["rel_errors"]) > 1e-3  # so 1e-3 would not count them all within
    assert loose["within_tol"] == sum(e <= 3e-2 for e in loose["rel_errors"]) / 3


def test_the_product_engine_reaches_the_monitor_and_names_the_row():
    default = bench_monitor("gpt-tiny", "adamw", 5, 8, raw=False, references=False,
                            log=lambda *_: None)
    chosen = bench_monitor("gpt-tiny", "adamw", 5, 8, raw=False, references=False,
                           hvp_method="retained", log=lambda *_: None)
    assert (default["hvp_method"], chosen["hvp_method"]) == ("fd", "retained")
    lines = markdown([default, chosen]).splitlines()
    assert "products" not in lines[2] and "retained products" in lines[3]
