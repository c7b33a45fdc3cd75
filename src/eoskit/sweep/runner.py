"""Running a sweep: one training run per grid point on a process pool, on Ray, or inline.

A run that diverges or raises is recorded in runs.csv and the sweep goes on;
a worker process that dies is retried (a fresh pool, or Ray's task retry) and
its run resumes from its newest good checkpoint.
"""

from __future__ import annotations

import os
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from eoskit import store
from eoskit.sweep.index import SweepIndex, index_fields, indexed_runs, prepare_out
from eoskit.sweep.spec import SweepError, SweepSpec
from eoskit.training.config import RunConfig

BACKENDS = ("local", "ray")
LOCAL_RETRIES = 2  # fresh process pools after a worker process died
RAY_MAX_RETRIES = 3  # Ray re-runs a task whose worker died; the retry resumes from a checkpoint

OnResult = Callable[[dict, dict], None]  # (task, result) as each run ends


# ---------------------------------------------------------------- one run (in a worker)
def run_point(task: dict) -> dict:
    """Train one grid point into its run directory; never raises (errors become 'failed').

    Runs in a worker process. A run directory that already holds this
    configuration is resumed from its newest good checkpoint (a retried Ray
    task, a resumed sweep); a finished one is left as it is.
    """
    run_dir = Path(task["run_dir"])
    started = time.time()
    try:
        if task.get("threads"):
            import torch

            torch.set_num_threads(int(task["threads"]))
        from eoskit.distributed import train_parallel

        run_dir.mkdir(parents=True, exist_ok=True)
        _record_attempt(run_dir)
        (run_dir / "error.txt").unlink(missing_ok=True)
        cfg = RunConfig(**task["config"])
        resume = (run_dir / "config.json").exists()
        # nproc > 1: this worker launches the point's ranks and watches them
        summary = train_parallel(cfg, run_dir, resume=resume, progress=False,
                                 nproc=int(task.get("nproc", 1)))
        return {**index_fields(summary), "seconds": time.time() - started}
    except Exception as err:  # a failing run must not stop the sweep
        message = f"{type(err).__name__}: {err}".strip()
        try:
            store.atomic_write_bytes(run_dir / "error.txt", traceback.format_exc().encode())
        except OSError:
            pass
        return {"status": "failed", "error": message, "seconds": time.time() - started}


def _record_attempt(run_dir: Path) -> None:
    """worker.json: which process runs (ran) this point, and how many attempts so far."""
    path = run_dir / "worker.json"
    attempts = 0
    if path.exists():
        try:
            attempts = int(store.read_json(path).get("attempts", 0))
        except (ValueError, OSError, AttributeError):
            attempts = 0
    store.write_json(path, {"pid": os.getpid(), "host": platform.node(),
                            "attempts": attempts + 1, "started": time.time()})


def _ray_run_point(task: dict) -> dict:
    return run_point(task)


# ---------------------------------------------------------------- the sweep
def run_sweep(spec: SweepSpec, out: str | Path, *, backend: str = "local",
              workers: int | None = None, ray_address: str | None = None,
              resume: bool = False, overwrite: bool = False,
              log: Callable[[str], None] | None = None) -> list[dict]:
    """Run every grid point (skipping finished ones when resuming); returns runs.csv's rows.
    ``overwrite`` replaces a sweep already in ``out`` (:func:`~eoskit.sweep.index.clear_sweep`).

    ``backend``: ``local`` (a spawn process pool of ``workers``), ``ray`` (Ray tasks on
    the cluster at ``ray_address``, else a fresh local instance of ``workers`` CPUs), or
    ``inline`` (one after another in this process: for debugging and tests).
    """
    _check_options(backend, workers, ray_address)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out} exists and is not a directory")
    # one sweep at a time: a second would record the first's running points as failed
    try:
        lock = store.RunLock(out).acquire()
    except store.RunDirError as err:
        raise SweepError(str(err)) from None
    try:
        return _run_locked(spec, out, backend, workers, ray_address, resume, overwrite,
                           log or (lambda msg: None))
    finally:
        lock.release()


def _run_locked(spec: SweepSpec, out: Path, backend: str, workers: int | None,
                ray_address: str | None, resume: bool, overwrite: bool,
                log: Callable[[str], None]) -> list[dict]:
    check_components(spec)
    prepare_out(spec, out, resume, overwrite)
    index = SweepIndex(spec, out)
    todo = _pending_points(index, resume)
    index.write()
    if len(todo) < len(spec.points):
        log(f"resuming: {len(spec.points) - len(todo)} of {len(spec.points)} runs already "
            "finished, skipped")
    # a point over nproc processes takes nproc cores: fewer runs at once by default
    widest = max((p.nproc for p in todo), default=1)
    n_workers = min(workers or max(1, (os.cpu_count() or 1) // widest), max(len(todo), 1))
    threads = 1 if n_workers > 1 or widest > 1 else 0  # 0: leave torch's default
    tasks = [{"name": p.name, "config": p.config.model_dump(mode="json"),
              "run_dir": str(index.run_dir(p)), "threads": threads, "nproc": p.nproc}
             for p in todo]
    if tasks:
        log(f"{len(tasks)} runs on the {backend} backend"
            f"{f' ({n_workers} workers)' if backend == 'local' or not ray_address else ''}")
        on_result = _recorder(index, len(tasks), log)
        if backend == "inline":
            for t in tasks:
                on_result(t, run_point({**t, "threads": 0 if t["nproc"] == 1 else 1}))
        elif backend == "local":
            _run_local(tasks, n_workers, on_result)
        else:
            _run_ray(tasks, n_workers, ray_address, on_result)
    try:
        from eoskit.plots.sweep_figures import plot_sweep

        plot_sweep(out, indexed_runs(out))
    except Exception as err:  # figures must never lose the index
        log(f"warning: sweep figures failed: {type(err).__name__}: {err}")
    return index.index_rows()


# options that change how a run steps and measures, not the problem it builds
_STEPPING = ("lr", "steps", "beta", "stop_loss", "optimizer", "batch_size", "checkpoint_every",
             "sharpness_every", "eval_every", "diagnose_every", "keep_checkpoints")


def check_components(spec: SweepSpec) -> None:
    """Build every distinct problem of the grid that uses a user component (its two-sample
    check included) before any run starts: one that fails is bad input (SweepError),
    not a failed run beside finished ones."""
    from eoskit.components import is_spec
    from eoskit.training.run_problem import build_problem

    seen = set()
    for p in spec.points:
        cfg = p.config
        if not any(is_spec(v) for v in (cfg.model, cfg.dataset, cfg.loss)):
            continue
        key = store.dumps_json({k: v for k, v in cfg.model_dump(mode="json").items()
                                if k not in _STEPPING})
        if key in seen:
            continue
        seen.add(key)
        try:
            build_problem(cfg)
        except ValueError as err:
            raise SweepError(f"grid point {p.name}: {err}") from None


def _check_options(backend: str, workers: int | None, ray_address: str | None) -> None:
    if backend not in (*BACKENDS, "inline"):
        raise SweepError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}")
    if ray_address and backend != "ray":
        raise SweepError("--ray-address needs --backend ray")


def _pending_points(index: SweepIndex, resume: bool) -> list:
    """The grid points still to run; a resumed sweep's finished ones go into the index."""
    todo = []
    for p in index.spec.points:
        summary = store.finished_summary(index.run_dir(p)) if resume else None
        if summary is not None:
            index.rows[p.name] = index_fields(summary)
        else:
            todo.append(p)
    return todo


def _recorder(index: SweepIndex, n_tasks: int, log: Callable[[str], None]) -> OnResult:
    """Record each finished run in runs.csv (rewritten at once) and log one line."""
    done = 0

    def on_result(task: dict, res: dict) -> None:
        nonlocal done
        index.rows[task["name"]] = res
        index.write()
        done += 1
        extra = res.get("error") or _describe(res)
        log(f"[{done}/{n_tasks}] {task['name']}: {res.get('status')}"
            f"{' — ' + extra if extra else ''}")

    return on_result


def _describe(res: dict) -> str:
    onset, med = res.get("eos_onset_step"), res.get("plateau_median_over_threshold")
    if res.get("status") != "completed":
        return ""
    if onset is None:
        return "no EoS onset"
    return f"onset step {onset}, plateau/threshold {med:.3f}" if med is not None else ""


# ---------------------------------------------------------------- backends
def _init_worker() -> None:
    # a sweep worker computes; Ctrl-C is the driver's to handle (it stops the pool)
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_local(tasks: list[dict], workers: int, on_result: OnResult) -> None:
    remaining = list(tasks)
    for _attempt in range(1 + LOCAL_RETRIES):
        broken = _run_pool(remaining, workers, on_result)
        if not broken:
            return
        remaining = sorted(broken, key=tasks.index)
    for task in remaining:
        on_result(task, {"status": "failed",
                         "error": f"worker process died ({LOCAL_RETRIES} retries)"})


def _run_pool(tasks: list[dict], workers: int, on_result: OnResult) -> list[dict]:
    """One spawn process pool over ``tasks``; returns those whose worker died."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    broken = []
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)),
                             mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker) as pool:
        futures = {pool.submit(run_point, t): t for t in tasks}
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                res = fut.result()
            except BrokenProcessPool:
                broken.append(task)  # a worker died: retry in a fresh pool (it resumes)
                continue
            except Exception as err:
                res = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
            on_result(task, res)
    return broken


def _run_ray(tasks: list[dict], workers: int, address: str | None, on_result: OnResult) -> None:
    try:
        import ray
    except ImportError as err:
        raise SweepError("--backend ray needs ray: pip install 'eoskit[ray]'") from err
    started = not ray.is_initialized()
    if started:
        _ray_init(ray, workers, address)
    try:
        remote = ray.remote(num_cpus=1, max_retries=RAY_MAX_RETRIES,
                            retry_exceptions=False)(_ray_run_point)
        # a point over nproc processes reserves nproc CPUs of the cluster
        pending = {remote.options(num_cpus=t.get("nproc", 1)).remote(t): t for t in tasks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    res = ray.get(ref)
                except Exception as err:  # the worker died more than max_retries times
                    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                    res = {"status": "failed", "error": f"{type(err).__name__}: {first}"}
                on_result(task, res)
    finally:
        if started:
            ray.shutdown()


def _ray_init(ray, workers: int, address: str | None) -> None:
    if address:
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise SweepError(f"cannot connect to the Ray cluster at {address}: {err}") from err
    else:
        # address="local": always a fresh instance, never someone else's cluster
        ray.init(address="local", num_cpus=workers, include_dashboard=False,
                 logging_level="ERROR", log_to_driver=False)

