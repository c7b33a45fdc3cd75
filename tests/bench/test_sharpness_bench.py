"""The sharpness benchmark on its tiny setting: it runs, and every method agrees on λ₁.

No wall-clock assertions: timings on a shared machine say nothing about correctness.
"""

import dataclasses
import json

import numpy as np
import pytest
import torch

from eoskit.bench import TINY, HalfSquaredError, build, run_sharpness_bench, table
from eoskit.eigs import lanczos, make_tracker

# worst acceptable relative error per method family on the tiny problem (reference: float64,
# tol 1e-10); PyHessian's power iteration stops on a change of `tol` between iterates, so its
# error can exceed its tolerance where λ₂/λ₁ is close to 1
AGREE = {"eoskit": 1e-5, "scipy": 1e-5, "cohen": 1e-5, "curvlinops": 1e-5,
         "pyhessian (power, tol=0.001)": 3e-2, "pyhessian": 1e-3,
         "warm": 1e-3, "eoskit-track": 1e-3, "eoskit-stream": 2e-2}


def _limit(method: str) -> float:
    for key in sorted(AGREE, key=len, reverse=True):
        if method.startswith(key):
            return AGREE[key]
    raise KeyError(method)


@pytest.fixture(scope="module")
def tiny_rows(tmp_path_factory):
    cache = tmp_path_factory.mktemp("bench-cache")
    setting = dataclasses.replace(TINY, track_steps=6, stream_steps=10)
    return run_sharpness_bench(setting, sections=("costs", "cold", "track", "stream"),
                               cache_dir=cache, progress=False)


def test_rows_have_the_contract_keys(tiny_rows):
    for r in tiny_rows:
        assert {"method", "setting", "hvps", "seconds", "rel_error"} <= set(r)
    sections = {r["section"] for r in tiny_rows}
    assert {"costs", "cold", "track", "stream", "goal", "meta"} <= sections
    json.dumps(tiny_rows)  # serialisable as is (numpy scalars converted by write_json too)
    assert "cold" in table(tiny_rows)


def test_every_method_agrees_on_the_top_eigenvalue(tiny_rows):
    cold = [r for r in tiny_rows if r["section"] == "cold"]
    assert {r["setting"].split()[-1] for r in cold} == {"init", "eos"}
    assert any(r["method"].startswith("cohen") for r in cold)
    for r in cold:
        assert r["rel_error"] is not None, r
        assert r["rel_error"] <= _limit(r["method"]), r
        assert r["hvps"] >= 1


def test_trackers_follow_the_reference(tiny_rows):
    rows = [r for r in tiny_rows if r["section"] in ("track", "stream") and r["hvps"]]
    assert rows
    for r in rows:
        assert r["rel_error"] <= _limit(r["method"]), r
    stream = [r for r in rows if r["method"].startswith("eoskit-stream")]
    assert stream and all(r["hvps"] < 2.5 for r in stream)


def test_peers_agree_when_installed(tiny_rows):
    pytest.importorskip("curvlinops")
    pytest.importorskip("pyhessian")
    methods = {r["method"] for r in tiny_rows if r["section"] == "cold"}
    assert any(m.startswith("curvlinops") for m in methods)
    assert any(m.startswith("pyhessian") for m in methods)


def test_peer_criterion_is_eoskit_loss():
    prob, x = build(TINY, "float64")
    from torch.func import functional_call

    params = prob.obj.layout.unflatten(x)
    out = functional_call(prob.model, params, (prob.X,))
    crit = HalfSquaredError(prob.n)(out, prob.Y)
    assert float(crit) == pytest.approx(float(prob.obj.value(x)), rel=1e-12)


def test_cli_tiny_writes_json(tmp_path):
    from typer.testing import CliRunner

    from eoskit.cli import _register, app

    _register()
    out = tmp_path / "rows.json"
    res = CliRunner().invoke(app, ["bench", "sharpness", "--tiny", "--sections", "cold",
                                   "--dtypes", "float64", "--no-peers", "--quiet",
                                   "--cache-dir", str(tmp_path / "c"), "--json", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())
    assert any(r["method"] == "eoskit-cold" and r["rel_error"] < 1e-5 for r in rows)
    bad = CliRunner().invoke(app, ["bench", "sharpness", "--tiny", "--sections", "nope"])
    assert bad.exit_code == 2


@pytest.mark.parametrize("mode,tol", [("lanczos", 1e-6), ("streaming", 1e-2)])
def test_tracker_modes_on_a_turning_spectrum(mode, tol):
    # a diagonal operator whose top two eigenvalues cross while the vectors turn
    d = 60
    base = torch.linspace(-1.0, 5.0, d, dtype=torch.float64)
    tr = make_tracker(mode, 1, tol, 0, criterion="eigenvalue")
    errs = []
    for t in range(40):
        lam = base.clone()
        lam[-1], lam[-2] = 10.0 - 0.05 * t, 9.0 + 0.03 * t
        c, s = np.cos(0.05 * t), np.sin(0.05 * t)
        R = torch.eye(d, dtype=torch.float64)
        R[-2:, -2:] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        H = R @ torch.diag(lam) @ R.T
        res = tr.measure(lambda v, H=H: H @ v, d, torch.float64, "cpu")
        errs.append(abs(res.eigenvalues[0] - float(lam.max())) / float(lam.max()))
    assert max(errs) <= (1e-5 if mode == "lanczos" else 1e-2)
    # the streaming state survives a checkpoint round trip
    state = tr.state_dict()
    tr2 = make_tracker(mode, 1, tol, 0, criterion="eigenvalue")
    tr2.load_state_dict(state, "cpu")
    assert tr2.solves == tr.solves and torch.equal(tr2.carried, tr.carried)


def test_cold_lanczos_in_float32_reaches_1e6():
    # float64 basis: float32 products alone must not cap the accuracy near 1e-6
    prob, x = build(TINY, "float32")
    prob64, _ = build(TINY, "float64")
    ref = lanczos(prob64.obj.at(x.double()).hvp, prob64.dim, 1, tol=1e-10).eigenvalues[0]
    res = lanczos(prob.obj.at(x).hvp, prob.dim, 1, tol=1e-6, criterion="eigenvalue",
                  dtype=torch.float32)
    assert abs(res.eigenvalues[0] - ref) / ref <= 2e-6
