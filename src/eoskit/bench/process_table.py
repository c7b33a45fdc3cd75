"""The process-scaling rows (:mod:`eoskit.bench.processes`) as a markdown table.

>>> row = {"setting": "demo", "nproc": 1, "params": 10, "gd": {"seconds": 0.01,
...        "allreduce_bytes": 0, "allreduce_seconds": 0.0}, "tracked": {"seconds": 0.1,
...        "allreduce_bytes": 0, "allreduce_seconds": 0.0, "hvps": 4.0}}
>>> print(markdown([row]).splitlines()[2])
| demo | 10 | 1 | 10.0 | 100.0 | — | 4.0 | 0 B / 0.0 ms | 0 B / 0.0 ms | — | — |
"""

from __future__ import annotations

HEADER = ("| setting | d | N | GD step ms | tracked step ms | tracked, eigensolver on rank 0 "
          "ms | HVPs / tracked step | all-reduce / GD step | all-reduce / tracked step "
          "| speed-up GD / tracked | max rel diff λ, loss |")


def _bytes(n: float) -> str:
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def _comm(sec: dict) -> str:
    return f"{_bytes(sec['allreduce_bytes'])} / {sec['allreduce_seconds'] * 1e3:.1f} ms"


def _line(r: dict) -> str:
    rank0 = r.get("tracked-rank0")
    speed = r.get("speedup")
    diff = ("—" if "max_rel_diff_eigenvalue" not in r else
            f"{r['max_rel_diff_eigenvalue']:.1e}, {r['max_rel_diff_loss']:.1e}")
    cells = [r["setting"], str(r["params"]), str(r["nproc"]), f"{r['gd']['seconds'] * 1e3:.1f}",
             f"{r['tracked']['seconds'] * 1e3:.1f}",
             "—" if rank0 is None else f"{rank0['seconds'] * 1e3:.1f}",
             f"{r['tracked']['hvps']:.1f}", _comm(r["gd"]), _comm(r["tracked"]),
             "—" if speed is None else f"{speed['gd']:.2f}× / {speed['tracked']:.2f}×", diff]
    return "| " + " | ".join(cells) + " |"


def markdown(rows: list[dict]) -> str:
    """A markdown table, one line per (setting, N)."""
    sep = "|" + "---|" * HEADER.count(" | ") + "---|"
    return "\n".join([HEADER, sep, *(_line(r) for r in rows)])
