"""The Monitor inside a user's own torch.distributed loop (2 gloo ranks, spawned).

Each rank passes its own shard (of unequal sizes: 13 and 17 samples) and
trains by full-batch GD with a sample-weighted all-reduce of the gradient;
the Monitor's rows on rank 0 equal those of one process's Monitor on the
whole data along the same GD (≤ 1e-10, float64), its spectrum rows too (≤ 1e-8: the
trackers' tol), and only rank 0 writes.
"""

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp

from eoskit import Monitor
from eoskit.distributed.group import RankDivergence, param_checksum

pytestmark = pytest.mark.timeout(120)

N, SPLIT, STEPS, LR = 30, 13, 8, 0.2
COLUMNS = ("loss", "grad_norm", "sharpness", "eig_1", "eig_2", "eff_curvature", "step_norm",
           "threshold")
MSE = torch.nn.functional.mse_loss


def _problem():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N, 5, generator=g, dtype=torch.float64)
    Y = torch.randn(N, 2, generator=g, dtype=torch.float64)
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(),
                                torch.nn.Linear(7, 2)).double()
    return model, X, Y


def _monitor(model, data, opt, out):
    return Monitor(model, MSE, data, every=2, neigs=2, optimizer=opt, out=out, tol=1e-8,
                   criterion="residual", physical_batch=5, spectrum_every=4, spectrum_steps=6)


def _train(model, X, Y, mon, reduce=None):
    """Full-batch GD on the mean over all samples; ``reduce`` sums a rank's share."""
    opt = mon.optimizer
    for _ in range(STEPS):
        opt.zero_grad()
        (MSE(model(X), Y) * (len(X) / N)).backward()  # this rank's share of the global mean
        if reduce is not None:
            for p in model.parameters():
                reduce(p.grad)
        opt.step()
        mon.step()
    mon.close()
    # the spectrum's product counts are left out: a converged solve may take one more
    spectrum = [{k: v for k, v in r.items() if not k.startswith("products_")}
                for r in mon.spectrum.rows]
    return [{k: r[k] for k in COLUMNS} | {"step": r["step"]} for r in mon.rows], spectrum


def _rank(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model, X, Y = _problem()
    lo, hi = (0, SPLIT) if rank == 0 else (SPLIT, N)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    mon = _monitor(model, (X[lo:hi], Y[lo:hi]), opt, Path(root) / f"out{rank}")
    rows = _train(model, X[lo:hi], Y[lo:hi], mon, reduce=dist.all_reduce)
    dist.barrier()
    dist.destroy_process_group()
    if rank == 0:
        (Path(root) / "rows.json").write_text(json.dumps(rows))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_monitor_over_two_ranks_equals_one_process_on_the_whole_data(tmp_path):
    tmp.spawn(_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    got, got_spectrum = json.loads((tmp_path / "rows.json").read_text())
    model, X, Y = _problem()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    want, want_spectrum = _train(model, X, Y, _monitor(model, (X, Y), opt, tmp_path / "one"))
    assert len(got) == len(want) == STEPS // 2
    for a, b in zip(got, want, strict=True):
        for k in COLUMNS:
            u, v = a[k], b[k]
            assert (u is None and v is None) or abs(u - v) <= 1e-10 * max(abs(u), abs(v)), \
                (a["step"], k, u, v)
    # the spectrum (density, λ_min, blocks, the Gauss–Newton split) of the summed shards
    assert [r["step"] for r in got_spectrum] == [r["step"] for r in want_spectrum] == [4, 8]
    for a, b in zip(got_spectrum, want_spectrum, strict=True):
        for k, v in b.items():
            assert a[k] == pytest.approx(v, rel=1e-8, abs=1e-10), (a["step"], k)
    assert (tmp_path / "out0" / "spectrum.csv").exists()
    assert (tmp_path / "out0" / "metrics.csv").exists()
    assert not (tmp_path / "out1").exists()  # rank 1 writes nothing
    assert json.loads((tmp_path / "out0" / "config.json").read_text())["n_train"] == N


def test_a_checksum_is_of_the_bits_whether_flat_or_in_parts():
    a, b = torch.randn(3, 4, dtype=torch.float32), torch.randn(5).to(torch.bfloat16)
    flat = torch.cat([a.reshape(-1).view(torch.uint8), b.view(torch.uint8)])
    assert param_checksum([a, b]) == param_checksum(flat)
    c = a.clone()
    c[0, 0] = -c[0, 0]
    assert param_checksum([c, b]) != param_checksum([a, b])
    z = torch.zeros(2)
    assert param_checksum(z) != param_checksum(-z)  # -0.0 is other bits


def _diverged_rank(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model, X, Y = _problem()
    model = model.float()
    if rank == 1:  # one bit off on one rank: the Monitor must refuse to mix the two
        with torch.no_grad():
            w = model[0].weight
            w.view(-1).view(torch.int32)[0] ^= 1
    mon = Monitor(model, MSE, (X.float(), Y.float()), every=1)
    try:
        mon.step()
        outcome = "measured"
    except RankDivergence as err:
        outcome = str(err)
    dist.destroy_process_group()
    (Path(root) / f"rank{rank}.txt").write_text(outcome)


def test_ranks_holding_different_bits_are_refused_before_the_products(tmp_path):
    tmp.spawn(_diverged_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}.txt").read_text().startswith(
            "ranks hold different parameters at step 1")
