"""A sweep's grid point may run over several processes (``nproc``): the same rows as one."""

import pytest

from eoskit import store
from eoskit.sweep import SweepError, parse_sweep, run_sweep

RUN = dict(dataset="digits", n_train=40, n_test=0, width=6, depth=1, dtype="float64",
           steps=8, sharpness_every=2, eval_every=0, checkpoint_every=4, lr=0.5,
           physical_batch=10)


def test_a_grid_point_over_two_processes_writes_the_rows_of_one(tmp_path, monkeypatch):
    import sys

    import eoskit.distributed  # noqa: F401  (the package's ``launch`` is the function)

    launch_module = sys.modules["eoskit.distributed.launch"]

    launched = []  # inline: the sweep runs in this process, so the launch can be watched
    real = launch_module.launch
    monkeypatch.setattr(launch_module, "launch",
                        lambda cfg, out, nproc, **kw: launched.append(nproc)
                        or real(cfg, out, nproc, **kw))
    spec = parse_sweep({"run": RUN, "grid": {"nproc": [1, 2]}})
    assert [p.nproc for p in spec.points] == [1, 2]
    rows = run_sweep(spec, tmp_path / "sw", backend="inline")
    assert [r["status"] for r in rows] == ["completed", "completed"], rows
    assert launched == [2]
    one, two = (store.read_rows(tmp_path / "sw" / n / "metrics.csv")
                for n in ("nproc=1", "nproc=2"))
    assert len(one) == len(two) == RUN["steps"]
    for a, b in zip(one, two, strict=True):
        for k in a:
            if k != "wall_time" and isinstance(a[k], float):
                assert abs(a[k] - b[k]) <= 1e-10 * max(abs(a[k]), abs(b[k])), (k, a, b)
    # the index names the grid value
    assert store.read_csv(tmp_path / "sw" / "runs.csv")[1]["nproc"] == "2"


@pytest.mark.parametrize("extra,message", [
    ({"run": {"nproc": 0}}, "nproc must be an integer ≥ 1, got 0"),
    ({"run": {"nproc": 2, "optimizer": "sgd", "batch_size": 8}}, "full-batch rules only"),
    ({"grid": {"nproc": [1, 50]}}, "50 processes cannot share 40 training examples"),
])
def test_bad_nproc_is_a_sweep_error_before_anything_runs(extra, message):
    run = {**RUN, **extra.get("run", {})}
    grid = extra.get("grid", {"seed": [0]})
    with pytest.raises(SweepError, match=message):
        parse_sweep({"run": run, "grid": grid})
