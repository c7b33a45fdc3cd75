"""The benchmark driver: :func:`run_sharpness_bench`, the environment row, a table, JSON out.

Everything runs inside one ``threadpool_limits`` context (BLAS threads for
SciPy/ARPACK, 1 by default), and ``torch_threads`` (if given) applies to
every method alike.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as sla
import torch

from eoskit.bench.bench_problem import BenchProblem, Cache, build, gd_points, reference_eig
from eoskit.bench.cold import bench_cold
from eoskit.bench.costs import bench_costs
from eoskit.bench.goals import goals
from eoskit.bench.rows import row
from eoskit.bench.scaling import bench_scaling
from eoskit.bench.setting import FULL, SECTIONS, Setting
from eoskit.bench.tracking import STREAM_NAME, bench_tracking, track_methods
from eoskit.eigs import lanczos, subspace_eigs
from eoskit.store import write_json as store_write_json

POINT_SECTIONS = ("costs", "cold", "track", "stream")  # those that need the cached GD points


def warm_up() -> None:
    """First calls (LAPACK/ARPACK loading, autograd's first double backward) outside any timer."""
    A = torch.diag(torch.arange(1.0, 41.0, dtype=torch.float64))
    lanczos(lambda v: A @ v, 40, 1, tol=1e-8)
    subspace_eigs(lambda v: A @ v, 40, 1, tol=1e-8)
    op = sla.LinearOperator((40, 40), matvec=lambda v: A.numpy() @ v, dtype=np.float64)
    sla.eigsh(op, k=1, which="LA")
    w = torch.ones(3, dtype=torch.float32, requires_grad=True)
    (g,) = torch.autograd.grad((w.tanh() ** 2).sum(), w, create_graph=True)
    torch.autograd.grad(g, w, torch.ones(3))


def environment() -> dict:
    """Versions, machine and thread counts, recorded in the ``meta`` row."""
    from threadpoolctl import threadpool_info

    return {
        "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "blas": [(i.get("internal_api"), i.get("num_threads")) for i in threadpool_info()],
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        # what decides how much freed memory the resident set keeps (peak-memory rows)
        "heap": {k: os.environ.get(k) for k in ("EOSKIT_TRIM_HEAP", "MALLOC_MMAP_THRESHOLD_")},
    }


def _log_cold(rows: list[dict], log) -> None:
    for r in rows:
        log(f"  {r['method']:<48} {r['hvps']:>5} HVPs "
            f"{r['seconds']:8.3f} s  rel err {r['rel_error']:.1e}")


def _point_sections(setting: Setting, sections: tuple[str, ...], dtypes: tuple[str, ...],
                    points: dict, prob64: BenchProblem, cache: Cache, peers: bool,
                    log) -> list[dict]:
    """``costs`` (at the EoS point) and ``cold`` (at init and EoS), in each dtype."""
    rows: list[dict] = []
    if not any(s in sections for s in ("costs", "cold")):
        return rows
    for dt in dtypes:
        prob, _ = build(setting, dt)
        for pname in ("init", "eos"):
            x = points[pname].to(prob.dtype)
            label = f"{setting.name} {dt} {pname}"
            if "costs" in sections and pname == "eos":
                log(f"costs: {label}")
                rows += bench_costs(prob, x, label, peers, setting.cost_repeats)
            if "cold" in sections:
                ref = reference_eig(prob64, points[pname], setting.ref_tol, cache,
                                    f"ref:{pname}")
                log(f"cold: {label} (reference λ₁ = {ref:.10g})")
                cold = bench_cold(prob, x, label, ref, peers, setting.repeats)
                _log_cold(cold, log)
                rows += cold
    return rows


def _tracking_sections(setting: Setting, sections: tuple[str, ...], points: dict,
                       prob64: BenchProblem, cache: Cache, log) -> list[dict]:
    """``track`` (from the EoS point) and ``stream`` (through the EoS phase), float32."""
    rows: list[dict] = []
    if "track" in sections:
        prob, _ = build(setting, "float32")
        label = f"{setting.name} float32 eos +{setting.track_steps} steps"
        log(f"track: {label}")
        rows += bench_tracking(prob, prob64, points["eos"], setting.track_steps, label,
                               cache, "eos", track_methods(), "track", log)
    if "stream" in sections:
        prob, _ = build(setting, "float32")
        end = setting.stream_from + setting.stream_steps
        label = f"{setting.name} float32 steps {setting.stream_from}-{end}"
        log(f"stream: {label}")
        methods = {k: v for k, v in track_methods().items() if k.startswith(STREAM_NAME)}
        rows += bench_tracking(prob, prob64, points["stream"], setting.stream_steps,
                               label, cache, "stream", methods, "stream", log)
    return rows


def _all_sections(setting: Setting, sections: tuple[str, ...], peers: bool,
                  cache_dir: str | Path, dtypes: Iterable[str] | None, log) -> list[dict]:
    rows = [row("meta", "environment", setting.name, None, None, None, **environment(),
                bench_setting=dataclasses.asdict(setting))]
    warm_up()
    cache = Cache(cache_dir, setting)
    if any(s in sections for s in POINT_SECTIONS):
        points = gd_points(setting, cache, log)
        prob64, _ = build(setting, "float64")
        rows += _point_sections(setting, sections, tuple(dtypes or setting.dtypes), points,
                                prob64, cache, peers, log)
        rows += _tracking_sections(setting, sections, points, prob64, cache, log)
    if "scaling" in sections:
        log("scaling")
        rows += bench_scaling(setting, peers, log)
    return rows + goals(rows)


def run_sharpness_bench(
    setting: Setting = FULL,
    *,
    sections: Iterable[str] = SECTIONS,
    peers: bool = True,
    cache_dir: str | Path = "runs/bench-cache",
    blas_threads: int = 1,
    torch_threads: int | None = None,
    dtypes: Iterable[str] | None = None,
    progress: bool = True,
) -> list[dict]:
    """Run the benchmark; returns the rows (the goals rows last).

    Example (the tiny setting, a few seconds):
        >>> import tempfile
        >>> from eoskit.bench.setting import TINY
        >>> rows = run_sharpness_bench(TINY, sections=("cold",), peers=False, progress=False,
        ...                            dtypes=("float64",), cache_dir=tempfile.mkdtemp())
        >>> sorted({r["method"] for r in rows if r["section"] == "cold"})[1:]
        ['eoskit-cold', 'scipy-eigsh-LA (eoskit HVP)']
        >>> max(r["rel_error"] for r in rows if r["section"] == "cold") < 1e-5
        True
    """
    from threadpoolctl import threadpool_limits

    sections = tuple(sections)
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ValueError(f"unknown section(s) {bad}; choose from {', '.join(SECTIONS)}")
    log = print if progress else (lambda *a, **k: None)
    old_threads = torch.get_num_threads()
    if torch_threads:
        torch.set_num_threads(torch_threads)
    try:
        with threadpool_limits(limits=blas_threads, user_api="blas"):
            return _all_sections(setting, sections, peers, cache_dir, dtypes, log)
    finally:
        torch.set_num_threads(old_threads)


def _fmt(v, spec: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return format(v, spec)


def _goal_line(r: dict) -> str:
    met = {True: "MET", False: "not met", None: ""}[r["met"]]
    return (f"  {r['method']:<70} {r['setting']:<32} "
            f"{_fmt(r['ratio'], '.3g'):>8} (target {r['target']}) {met}")


def _row_line(r: dict) -> str:
    extra = ""
    if "per_gradient" in r:
        extra = f" x{_fmt(r['per_gradient'], '.2f')} grad"
    if "per_gd_step" in r:
        extra = f" x{_fmt(r['per_gd_step'], '.2f')} GD step"
    return (f"  {r['setting']:<34} {r['method']:<56} "
            f"{_fmt(r['hvps'], '>6.4g')} HVPs {_fmt(r['seconds'], '9.4f')} s "
            f"err {_fmt(r['rel_error'], '.1e')}{extra}")


def table(rows: list[dict]) -> str:
    """A plain-text table of the rows, one block per section."""
    lines = []
    for sec in (*SECTIONS, "goal"):
        rs = [r for r in rows if r["section"] == sec]
        if rs:
            lines.append(f"== {sec}")
            lines += [_goal_line(r) if sec == "goal" else _row_line(r) for r in rs]
    return "\n".join(lines)


def write_json(rows: list[dict], path: str | Path) -> None:
    """The rows as a JSON list (numpy scalars plain, NaN null), written atomically.

    ``eoskit.store.write_json`` with the benchmark's argument order, creating the folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    store_write_json(path, rows)
