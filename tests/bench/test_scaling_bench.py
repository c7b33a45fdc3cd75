"""``eoskit bench scaling`` (process scaling): what it counts is what a step moves.

The tiny setting over 1 and 2 spawned ranks: the all-reduce bytes of a GD step
are the d + 1 floats of (loss, gradient) and the 8 bytes of the correct-count,
a tracked step adds d floats per HVP; the eigenvalues and losses of 2 ranks
equal those of one process, with the eigensolver replicated and on rank 0.
"""

import pytest

from eoskit.bench.processes import TINY, bench_processes

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def rows():
    return bench_processes([TINY], [1, 2], repeats=1, log=lambda *a: None)


def test_bytes_per_step_are_the_gradient_and_one_vector_per_hvp(rows):
    one, two = rows
    d = one["params"]
    assert one["gd"]["allreduce_bytes"] == 0  # one process: nothing reduced
    assert two["gd"]["allreduce_calls"] == 2  # (loss, gradient) and the correct-count
    assert two["gd"]["allreduce_bytes"] == (d + 1) * 8 + 8
    hvps = two["tracked"]["hvps"]
    assert hvps == one["tracked"]["hvps"] >= 1
    assert two["tracked"]["allreduce_bytes"] == (d + 1) * 8 + 8 + hvps * d * 8
    # on rank 0: v broadcast, H v reduced (2 d floats per product)
    assert two["tracked-rank0"]["allreduce_bytes"] >= (d + 1) * 8 + 2 * hvps * d * 8


def test_two_ranks_give_the_rows_of_one_process(rows):
    _, two = rows
    assert two["max_rel_diff_eigenvalue"] <= 1e-10
    assert two["max_rel_diff_loss"] <= 1e-10
    assert two["max_rel_diff_eigenvalue_rank0"] <= 1e-10
    assert set(two["speedup"]) == {"gd", "tracked"}


@pytest.mark.parametrize("args,message", [
    (["--nproc", "2,1"], "must start with 1"),
    (["--nproc", "1,x"], "comma-separated integers"),
    (["--settings", "huge"], "unknown setting"),
])
def test_bad_options_exit_2(args, message):
    from typer.testing import CliRunner

    from eoskit.cli import _register, app

    _register()
    r = CliRunner().invoke(app, ["bench", "scaling", *args])
    assert r.exit_code == 2 and message in r.output, r.output
