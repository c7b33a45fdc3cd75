"""The training loop: a run of any update rule, with sharpness tracking, into a run directory.

Each iteration ``t`` evaluates the loss and gradient at ``x_t`` (one pass
over the data); on a sharpness step the same pass keeps its gradient graph
(:meth:`Objective.at`) so that the eigensolver's Hessian-vector products
reuse it. Row ``t`` of ``metrics.csv`` describes the step from ``x_t`` to
``x_{t+1}``; its effective curvature needs ``L(x_{t+1})``, so the row is
written at iteration ``t+1`` (the last one after a final loss evaluation).

The loop never tests an optimiser's name: the update rule
(:mod:`eoskit.optim`) takes every step (and predicts the next one the
diagnostics need), says whether it samples a batch, whether the
edge-coupling diagnostics apply, and how its effective curvature is read
off the loss change. The run's problem is :mod:`~eoskit.training.run_problem`'s,
checkpoints :mod:`~eoskit.training.run_state`'s, the progress bar
:mod:`~eoskit.training.progress`'s, summaries and figures
:mod:`~eoskit.training.results`'s; rows and columns are the metrics contract's
(:mod:`eoskit.metrics`).

Example:
    >>> from eoskit.training.config import RunConfig
    >>> cfg = RunConfig(dataset="digits", n_train=64, n_test=0, width=8, steps=3,
    ...                 dtype="float64", lr=0.1, checkpoint_every=0)
    >>> import tempfile; out = tempfile.mkdtemp()
    >>> train(cfg, out, progress=False)["status"]
    'completed'
"""

from __future__ import annotations

import math
import platform
import time
from contextlib import nullcontext
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from eoskit import store
from eoskit._heap import release_free_heap
from eoskit._version import __version__
from eoskit.diagnostics import ForcingTracker, diagnosable, diagnose_rule_step, diagnostic_columns
from eoskit.eigs import EigResult, make_tracker, preconditioned_matvec
from eoskit.interrupts import sigterm_as_interrupt
from eoskit.loggers.run_logging import LoggedTable, open_run_loggers
from eoskit.metrics.columns import run_columns
from eoskit.metrics.metric_rows import first_row
from eoskit.objective import Objective
from eoskit.optim import rule_for
from eoskit.training.config import RunConfig
from eoskit.training.progress import progress_bar
from eoskit.training.results import plot_results, run_summary
from eoskit.training.run_problem import Problem, build_problem
from eoskit.training.run_state import (
    RunState,
    open_tables,
    recorded_components,
    restore_run_state,
    save_run_state,
    stored_config,
    tensor_bytes,
)
from eoskit.training.spectrum_log import SpectrumLog


def train(cfg: RunConfig | None, out_dir: str | Path, *, resume: bool = False,
          progress: bool = True, overwrite: bool = False, parallel=None,
          log: dict | None = None) -> dict:
    """Run (or resume) a training run into ``out_dir``; returns the summary dict.

    ``resume=True`` reads the configuration from ``out_dir/config.json`` (a ``cfg`` given
    too must equal it; user component files must be unchanged), restores the newest good
    checkpoint and continues; a run that already finished (completed or diverged: both are
    final) is left as it is and its summary returned. A new run refuses a directory that
    holds one (:class:`eoskit.store.RunDirError`) unless ``overwrite`` (the old files go
    first). The directory is locked while the run lasts; an I/O failure (``OSError``,
    re-raised) leaves status ``failed``. ``parallel``: a :class:`~eoskit.distributed.RankGroup`.
    ``log``: ``{"loggers": ["tensorboard", "mlflow"], "mlflow_uri": None}`` (not part of
    the run's config; a resume goes on with the stored choice, see
    :mod:`eoskit.loggers.run_logging`).
    """
    out = Path(out_dir)
    if resume and overwrite:
        raise ValueError("resume continues the run in the directory; overwrite replaces it")
    if resume:
        cfg = stored_config(out, cfg)
        if (finished := store.finished_summary(out)) is not None:
            return finished  # read-only: no lock taken, nothing touched
    elif cfg is None:
        raise ValueError("a configuration is needed unless resuming")
    main = parallel is None or parallel.is_main
    with store.RunLock(out) if main else nullcontext():
        if main and resume and (finished := store.finished_summary(out)) is not None:
            return finished  # another process finished it meanwhile
        if main and not resume:
            store.claim(out, "run", overwrite)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        problem = build_problem(cfg, recorded_components(out) if resume else None)
        if parallel is not None:
            problem = parallel.wrap(problem)
        try:
            return Trainer(problem, out, resume=resume, progress=progress,
                           parallel=parallel, log=log).run()
        except OSError as err:
            if main:
                store.mark_failed(out, err)
            raise


class Evaluation(NamedTuple):
    """One pass at ``x_t``: on the step's objective (the batch, for a batch rule)."""

    obj: Objective
    loss: float
    grad: Tensor
    aux: Tensor | None  # the objective's by-product (correct predictions), if any
    eig: EigResult | None
    hvps: int
    sound: bool  # loss, gradient and x finite, loss below --diverge-loss
    precond_eig: EigResult | None = None  # λ(P^{-1/2} H P^{-1/2}), for a rule with P


class Trainer:
    def __init__(self, problem: Problem, out: Path, *, resume: bool, progress: bool,
                 parallel=None, log: dict | None = None):
        self.p = problem
        self.parallel = parallel
        self.main = parallel is None or parallel.is_main  # the one rank that writes files
        self.cfg = cfg = problem.config
        self.out = out
        self.progress = progress
        self.obj = problem.train
        self.rule = rule_for(cfg)
        self.tracker = make_tracker(cfg.eig_mode, cfg.neigs, cfg.eig_tol, cfg.eig_restart_every,
                                    criterion=cfg.eig_criterion)
        # P changes from step to step: its own tracker, warm-started from its own vectors
        self.precond_tracker = make_tracker(
            cfg.eig_mode, cfg.neigs, cfg.eig_tol, cfg.eig_restart_every,
            criterion=cfg.eig_criterion) if self.rule.preconditioned else None
        self.forcing = ForcingTracker(cfg.lr)
        self.batch_gen = torch.Generator().manual_seed(cfg.seed + 7919)
        self.columns = run_columns(type(self.rule), cfg.neigs)
        if self.main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "plots").mkdir(exist_ok=True)
        restored = self._restore() if resume else None
        self.state = restored if restored is not None else RunState(0, problem.x0)
        self.spectrum = SpectrumLog(self.obj, cfg)  # spectrum.csv: nothing at spectrum_every=0
        self.spectrum.restore_from(self.state.extra, cfg.device)
        if restored is not None and self.precond_tracker is not None:
            self.precond_tracker.load_state_dict(restored.extra["precond_tracker"], cfg.device)
        if restored is None and self.main:
            self._write_config()
        tables = {"metrics.csv": self.columns}
        if cfg.diagnose_every:
            tables["diagnostics.csv"] = diagnostic_columns(self.rule)
        tables.update(self.spectrum.columns())
        logs = (open_tables(out, tables, restored) if self.main  # rank 0 alone writes
                else {name: parallel.open_log(out / name, cols) for name, cols in tables.items()})
        self.metrics, self.diag_log = logs["metrics.csv"], logs.get("diagnostics.csv")
        self.spectrum.attach(logs)
        self.loggers = open_run_loggers(out, log, resumed=resume, cfg=cfg) \
            if self.main else None
        if self.loggers is not None:
            self.metrics = LoggedTable(self.metrics, self.loggers)

    # ---- bookkeeping
    def _write_config(self) -> None:
        store.write_json(self.out / "config.json", {
            "config": self.cfg.model_dump(mode="json"),
            "eoskit_version": __version__,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "seed": self.cfg.seed,
            "threshold": self.rule.threshold,
            "n_params": self.obj.dim,
            "n_train": self.obj.n,
            "preprocessing": self.p.dataset.preprocessing,
            "components": self.p.components,
            "metrics_columns": self.columns,
        })
        store.write_json(self.out / "summary.json", {"status": "running", "steps": 0})

    def _parts(self) -> dict:
        return dict(rule=self.rule, tracker=self.tracker, forcing=self.forcing,
                    batch_gen=self.batch_gen)

    def _checkpoint(self) -> None:
        if self.precond_tracker is not None:
            self.state.extra["precond_tracker"] = self.precond_tracker.state_dict()
        if self.parallel is not None:
            self.parallel.check(self.state.x, self.state.step)  # ranks took the same steps
        if not self.main:
            return
        self.spectrum.save_into(self.state.extra)
        logs = [self.metrics] + ([self.diag_log] if self.diag_log is not None else [])
        logs += self.spectrum.logs()
        for log in logs:
            log.sync()
        save_run_state(self.out / "checkpoints", self.state, keep=self.cfg.keep_checkpoints,
                       config=self.cfg.model_dump(mode="json"),
                       tables=[log.path for log in logs], **self._parts())
        if self.loggers is not None:
            self.loggers.flush()  # its rows are durable now

    def _restore(self) -> RunState | None:
        return restore_run_state(self.out / "checkpoints", self.cfg.device,
                                 config=self.cfg.model_dump(mode="json"), **self._parts())

    # ---- the loop
    def run(self) -> dict:
        status = "interrupted"
        try:
            with sigterm_as_interrupt(), \
                    progress_bar(self.cfg.steps, self.state.step, self.progress) as update:
                status = self._loop(update)
        except KeyboardInterrupt:
            status = "interrupted"
        finally:
            self.metrics.close()
            if self.diag_log is not None:
                self.diag_log.close()
            self.spectrum.close()
        if not self.main:
            return {"status": status, "steps": self.state.step}
        if status != "interrupted":
            store.atomic_write_bytes(self.out / "params_final.pt", tensor_bytes(self.state.x))
        summary = self._summary(status)
        store.write_json(self.out / "summary.json", summary)
        if status != "interrupted":
            self._plots()
        if self.loggers is not None:
            self.loggers.finish(status)
        return summary

    def _loop(self, update) -> str:
        """Iterate from ``state.step`` to the end; the run's final status."""
        cfg, s = self.cfg, self.state
        t0 = time.perf_counter() - s.elapsed
        while s.step < cfg.steps:
            t = s.step
            ev = self._evaluate(t, s.x)
            if not ev.sound:
                s.pending_diag = None  # no diagnostics (eigensolvers) towards a blown-up point
            self._finish_pending(ev.loss, ev.grad)
            row = self._row(t, ev, time.perf_counter() - t0)
            if not ev.sound:
                self.metrics.write(row)
                return "diverged"
            self.spectrum.maybe_measure(t, s.x, self.rule.threshold)
            self._take_step(t, ev, row)
            update(s.step, ev.loss, row.get("sharpness"))
            if cfg.stop_loss is not None and ev.loss <= cfg.stop_loss:
                return self._end(with_grad=False)
            s.elapsed = time.perf_counter() - t0
            if cfg.checkpoint_every and s.step % cfg.checkpoint_every == 0:
                self._checkpoint()
        # the last diagnosed step's recurrence needs s_T = −η g(x_T)
        return self._end(with_grad=s.pending_diag is not None)

    def _end(self, with_grad: bool) -> str:
        """Complete the last row with ``L(x_T)``: 'completed', or 'diverged' if x_T blew up."""
        s = self.state
        if with_grad:
            loss, g = self.obj.value_and_grad(s.x)
            loss = float(loss)
        else:
            loss, g = self._final_loss(s.x), None
        if not self._sound(loss, g, s.x):
            s.pending_diag = None
            self._finish_pending(loss, None)
            return "diverged"
        self._finish_pending(loss, g)
        return "completed"

    def _sound(self, loss: float, g: Tensor | None, x: Tensor) -> bool:
        """Finite loss (below --diverge-loss), gradient and parameters: safe to go on measuring."""
        if not math.isfinite(loss) or loss > self.cfg.diverge_loss:
            return False
        return bool(torch.isfinite(x).all()) and (g is None or bool(torch.isfinite(g).all()))

    def _evaluate(self, t: int, x: Tensor) -> Evaluation:
        """Loss and gradient at ``x_t`` (of a fresh batch for a batch rule), sharpness if due."""
        cfg = self.cfg
        measure = cfg.sharpness_every > 0 and t % cfg.sharpness_every == 0
        obj = self.obj
        if self.rule.samples_batch:
            idx = torch.randperm(obj.n, generator=self.batch_gen)[: cfg.batch_size]
            obj = self.obj.subset(idx.to(self.obj.inputs.device))
        eig = precond_eig = None
        hvps_before = self.obj.hvp_count
        if measure:
            release_free_heap(x.device)  # as the Monitor: what the heap kept is not counted twice
            point = self.obj.at(x)
            if obj is self.obj:
                loss, g, aux = point.value, point.grad, point.aux
            else:
                loss, g, aux = obj.value_grad_aux(x)
            sound = self._sound(float(loss), g, x) and (
                obj is self.obj or self._sound(float(point.value), point.grad, x))
            if sound:  # an eigensolver on non-finite HVPs would only raise
                eig = self.tracker.measure(point.hvp, self.obj.dim, x.dtype, x.device)
                p = self.rule.preconditioner(g, x)  # P_t of the step from x_t (d,), or None
                if p is not None:
                    precond_eig = self.precond_tracker.measure(
                        preconditioned_matvec(point.hvp, p), self.obj.dim, x.dtype, x.device)
            point.release()
        else:
            loss, g, aux = obj.value_grad_aux(x)
            sound = self._sound(float(loss), g, x)
        return Evaluation(obj, float(loss), g, aux, eig, self.obj.hvp_count - hvps_before,
                          sound, precond_eig)

    def _take_step(self, t: int, ev: Evaluation, row: dict) -> None:
        """``x_{t+1} = x_t + s_t``; row ``t`` (and its diagnostics) wait for ``L(x_{t+1})``."""
        s, rule = self.state, self.rule
        step_vec = rule.step(ev.grad, s.x)
        row["step_norm"] = float(step_vec.norm())
        row.update(rule.curvature_terms(ev.grad, step_vec))
        if rule.samples_batch:
            self._batch_curvature(row, ev.obj, s.x, step_vec, ev.loss, t)
        s.pending_row = row
        if self._diagnosed(t) and not rule.samples_batch:
            s.pending_diag = {"step": t, "x": s.x, "s": step_vec, "loss": ev.loss}
        s.x = (s.x + step_vec).detach()
        s.step = t + 1
        # a batch step is diagnosed at once; a full-batch one once s_{t+1} is known
        s.extra["diag_keep_below"] = t + 1 if rule.samples_batch else t

    def _diagnosed(self, t: int) -> bool:
        every = self.cfg.diagnose_every
        return bool(every) and diagnosable(self.rule) and t % every == 0

    def _final_loss(self, x: Tensor) -> float:
        return self.obj.loss_and_accuracy(x)[0]

    def _finish_pending(self, loss_next: float, g_next: Tensor | None) -> None:
        """Complete row t-1 (κ needs L(x_t)) and run its diagnostics (they need s_t)."""
        s = self.state
        row = s.pending_row
        if row is None:
            return
        sq = row["step_norm"] ** 2
        if self.rule.samples_batch:
            # κ was read off the batch's own loss change when the step was taken
            self.forcing.update(row["loss"], row.pop("_next_batch_loss"), row["eff_curvature"],
                                sq)
        else:
            kappa = self.rule.effective_curvature(row["loss"], loss_next, sq, row)
            row["eff_curvature"] = kappa
            self.forcing.update(row["loss"], loss_next, kappa, sq)
        row["eff_curvature_mean"] = self.forcing.weighted_mean_kappa
        self.metrics.write(row)
        s.pending_row = None
        if s.pending_diag is not None:
            d = s.pending_diag
            # s_{t+1}, as the rule will take it from x_{t+1} (GD: −ηg_{t+1})
            s_next = None if g_next is None else self.rule.predicted_step(g_next, s.x)
            self._diagnose(self.obj, d["step"], d["x"], d["s"], s_next, d["loss"], loss_next)
            s.pending_diag = None

    def _batch_curvature(self, row, batch_obj, x, step_vec, loss, t) -> None:
        # one extra forward on the same batch: the loss-change formula holds for the batch loss
        next_loss, _ = batch_obj.loss_and_accuracy(x + step_vec)
        sq = float(step_vec @ step_vec)
        row["eff_curvature"] = self.rule.effective_curvature(loss, next_loss, sq, row)
        row["_next_batch_loss"] = next_loss
        if self._diagnosed(t):
            self._diagnose(batch_obj, t, x, step_vec, None, loss, next_loss)

    def _diagnose(self, obj, t, x, s_t, s_next, loss_t, loss_next) -> None:
        warm = None if self.tracker.warm is None else self.tracker.warm[:, 0]
        diag = diagnose_rule_step(obj, self.rule, x, s_t, s_next, self.cfg.lr, loss_t,
                                  loss_next, nodes=self.cfg.diagnose_nodes, sharpness_v0=warm)
        self.diag_log.write({"step": t, **diag})

    def _row(self, t: int, ev: Evaluation, wall: float) -> dict:
        """Row ``t`` as far as ``x_t`` tells (the step's norm and κ come later)."""
        self.state.hvps_total += ev.hvps
        return first_row(t, ev, wall, self.p, self.rule, self.state.x)

    # ---- results
    def _summary(self, status: str) -> dict:
        return run_summary(self.out, self.rule, self.forcing, self.state, status,
                           self.diag_log is not None)

    def _plots(self) -> None:
        plot_results(self.out, self.cfg.lr)
