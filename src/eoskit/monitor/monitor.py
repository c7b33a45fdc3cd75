"""Sharpness of *your* model in *your* training loop.

:class:`Monitor` measures the top Hessian eigenvalues of ``loss_fn`` over a
fixed measurement set every ``every`` optimiser steps, warm-started from the
previous measurement (:class:`eoskit.eigs.SharpnessTracker`), at the model's
current parameters, and reports them beside the optimiser's stability
threshold (docs/theory.md §1).

It never changes the model: parameters are read into a flat vector and the
module is evaluated with ``torch.func.functional_call`` on that vector and
cloned buffers (:class:`~eoskit.objective.ModelObjective`); its
dtype, device, training mode and ``.grad`` fields are left alone, and the
global torch RNG (CPU, and CUDA when initialised) is forked around every
measurement, so dropout or any other draw inside the forward pass does not
shift the training loop's random stream. The model is evaluated in its
current mode: in training mode dropout masks are drawn once per measurement
(the Hessian of that fixed-mask loss is measured).

Effective curvature (docs/theory.md §3): for the step ``s = x_{t+1} − x_t``
right after a measurement at ``x_t``, ``κ_t = 2(L(x_{t+1}) − L(x_t) − g_tᵀs)/|s|²``
with ``L``, ``g`` the measurement set's loss and gradient (the update rules'
second-order reading, :func:`eoskit.optim.second_order_curvature`). This is the exact
mean curvature of ``L`` along ``s`` for *any* optimiser (one extra forward
pass at ``x_{t+1}``); its comparison with ``2/η`` is the GD/SGD edge-coupling
reading. It is filled into row ``t`` at the next call, and the row reaches
``metrics.csv`` and the loggers then (or at :meth:`Monitor.close`).

With a torch Adam, AdamW or RMSprop optimiser (no amsgrad, momentum or
centring), each measurement also tracks the *preconditioned* sharpness
``precond_sharpness`` (and ``precond_eig_1..k``) = λ(P^{-1/2} H P^{-1/2}) with
``P = diag(√v̂ + ε)`` read off the optimiser's state as torch computes it
(Adam's bias correction from its ``step``; RMSprop's ``square_avg`` without),
i.e. the P of the step the optimiser last took (the next step's P also holds
the next gradient, which does not exist yet). ``threshold`` is then the
preconditioned one (``(2+2β₁)/((1−β₁)η)``, RMSprop ``2/η``), and the run
directory's summary reads onset and plateau off ``precond_sharpness``. Before
the optimiser's first step there is no P: those cells are empty.

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    >>> X, Y = torch.randn(32, 4), torch.randn(32, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.05)
    >>> mon = Monitor(model, torch.nn.functional.mse_loss, (X, Y), every=5, optimizer=opt)
    >>> for _ in range(10):
    ...     opt.zero_grad(); torch.nn.functional.mse_loss(model(X), Y).backward(); opt.step()
    ...     row = mon.step()
    >>> row["step"], round(row["threshold"], 6), row["sharpness"] > 0
    (10, 40.0, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from eoskit.distributed.user_loop import across_ranks, is_main_rank
from eoskit.metrics.columns import monitor_columns
from eoskit.metrics.metric_rows import monitor_precond_cells, monitor_row, step_cells
from eoskit.monitor.cost import COST_COLUMNS, CostClock
from eoskit.monitor.data import measurement_set
from eoskit.monitor.monitor_dir import MonitorRunDir
from eoskit.monitor.monitor_spectrum import MonitorSpectrum
from eoskit.monitor.optimizers import (
    optimizer_beta,
    optimizer_kind,
    optimizer_lr,
    optimizer_threshold,
)
from eoskit.monitor.sharpness_meter import SharpnessMeter, default_engine
from eoskit.monitor.step_curvature import StepCurvature
from eoskit.objective.model import Loss, ModelObjective


def logged_values(row: dict, k: int) -> dict[str, float]:
    """What the callbacks log of a row: ``sharpness``, ``eig_1..k``, ``threshold`` and, for an
    adaptive optimiser, ``precond_sharpness`` and ``precond_eig_1..k`` (the cells it has)."""
    names = ["sharpness", *[f"eig_{i + 1}" for i in range(k)], "threshold",
             "precond_sharpness", *[f"precond_eig_{i + 1}" for i in range(k)]]
    return {n: row[n] for n in names if row.get(n) is not None}


def _rng_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []


class Monitor:
    """Sharpness, threshold and effective curvature of a user's model along its training.

    ``data``: the measurement set (see :func:`~eoskit.monitor.data.measurement_set`).
    ``loss_fn(output, target)``: a *mean* loss. ``every``: measure when the step
    count is a multiple of it. ``optimizer``: read for the threshold (and its
    learning rate) at every measurement. ``out``: a run directory. ``loggers``:
    ``"tensorboard"``, ``"mlflow"`` (both need ``out``) or sink objects (see
    :mod:`eoskit.loggers`). ``dtype``: of the measurement (default
    the model's; ``torch.float64`` for a float32 model gives a float64 Hessian).
    ``physical_batch``: memory, as in :class:`ModelObjective`. ``hvp_method``: the
    product engine (:data:`~eoskit.objective.HVP_METHODS`); by default :func:`default_engine`
    of the measurement's dtype: ``"fd"`` (central differences of gradients, no graph kept)
    for float32 and half-precision models, ``"retained"`` (double backward) for float64.
    ``tol``/``criterion``: the eigensolver's stopping rule; the default
    ``"eigenvalue"`` bounds each reported eigenvalue's relative error by ``tol``
    (``"residual"`` asks ``‖Hv − λv‖ ≤ tol·|λ|``, stricter and ~1.5x the products;
    ``"change"``, ``"shared"`` and ``"lean"`` only, also ends a warm measurement once an
    expansion moved no top value by more than ``tol`` relative, as power iteration in
    PyHessian stops: see :mod:`~eoskit.eigs.warm_stopping`).
    ``restart_every``: a cold probe every that many measurements (0: never).
    ``curvature=False`` skips the extra forward pass that ``eff_curvature`` costs.
    ``mode``: the tracker: ``"shared"`` (:class:`~eoskit.eigs.SharedTracker`: raw and
    preconditioned sharpness from one set of products), ``"lean"``
    (:class:`~eoskit.eigs.LeanTracker`: the two one after the other, rows and no images,
    4.5 float32 vectors' worth for k = 1, at the price of more products), ``"auto"``
    (default: shared while its smallest basis fits 256 MB, about 3.7M float32 parameters,
    else lean), or one of :data:`eoskit.eigs.TRACKERS` per quantity. ``max_vectors``: the
    tracker's bound on d-long work vectors (default: lean's ``default_lean_vectors``;
    shared's ``shared_budget.budget_for``, as many as fit 256 MB between 5 and 14 rows,
    both in :mod:`eoskit.eigs`). ``image_dtype``
    (``"shared"`` only): keep the basis's Hessian-vector products in this dtype instead of
    the work dtype; ``torch.bfloat16`` makes each half a float32 vector (the budget then
    holds more rows) and leaves the values exact for the subspace, but floors residual
    norms at bfloat16 rounding (~2^-9 of the image), so a solve whose test needs less can
    stall: on gpt-small under SGD a cold solve at tol 1e-3 ran to its 80-product limit
    with bfloat16 images, where float32 images converged in 36 (commit 00cbf2c).
    ``raw_sharpness=False`` (an adaptive optimiser only): measure the preconditioned
    sharpness alone, the quantity its threshold is on; the raw cells stay empty and a
    measurement needs fewer products. ``max_warm_products`` (shared and lean; lean splits it
    between its two searches, so needs 2 for both quantities): stop a
    warm measurement after that many products and report what it reached; each row's
    ``eig_error_estimate`` and ``precond_eig_error_estimate`` state the solver's estimate of
    its value's relative error, ``min(‖r‖, ‖r‖²/gap)/|θ|`` (at most ``tol`` when the solve
    converged, larger when the cap stopped it). It would be a bound for exact products and a
    known gap; ``fd`` products add their own error (~1e-5 relative on the issue-22 GPT-2) and
    a warm solve's gap rests on a carried estimate of λ_{k+1}, so where the top eigenvectors
    turn fast, or the top pair closes after the last cold solve (a capped search's own λ₂
    is a loose lower bound), the true error can exceed it (``benchmarks/results/monitor.md``).
    ``step_curvature``: also record κ along *every* optimiser step in
    :attr:`step_rows` (:mod:`~eoskit.monitor.step_curvature`; one forward pass
    per step on the batch given to :meth:`step`, else a gradient on the measurement set).

    Each row also says what the measurement cost (:mod:`~eoskit.monitor.cost`):
    ``measure_seconds``, ``measure_steps`` (in the loop's own median step time)
    and ``overhead`` (the Monitor's running share of the wall time).
    ``spectrum_every``: the whole spectrum every that many steps into ``spectrum.csv``
    and ``spectrum_nodes.csv`` (``spectrum_probes``/``spectrum_steps``: SLQ's; see
    :mod:`~eoskit.monitor.monitor_spectrum`; 0: never).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Loss,
        data,
        every: int = 10,
        neigs: int = 1,
        optimizer: torch.optim.Optimizer | None = None,
        out: str | Path | None = None,
        loggers: Sequence = (),
        probe_size: int | None = None,
        tol: float = 1e-3,
        seed: int = 0,
        *,
        dtype: torch.dtype | None = None,
        physical_batch: int | Sequence[int] | None = None,
        hvp_method: str | None = None,
        restart_every: int = 50,
        criterion: str = "eigenvalue",
        curvature: bool = True,
        mode: str = "auto",
        max_vectors: int | None = None,
        raw_sharpness: bool = True,
        max_warm_products: int | None = None,
        image_dtype: torch.dtype | None = None,
        step_curvature: bool = False,
        spectrum_every: int = 0,
        spectrum_probes: int = 1,
        spectrum_steps: int = 80,
    ):
        if every < 1 or neigs < 1:
            raise ValueError(f"every and neigs must be at least 1, got {every} and {neigs}")
        self.model, self.optimizer, self.every, self.k = model, optimizer, int(every), int(neigs)
        self.curvature = curvature
        inputs, targets = measurement_set(data, probe_size, seed)
        self.objective = ModelObjective(model, loss_fn, inputs, targets, dtype=dtype,
                                        physical_batch=physical_batch,
                                        hvp_method=hvp_method or "retained", count_correct=False)
        if hvp_method is None:
            self.objective.hvp_method = default_engine(self.objective.dtype)
        # under torch.distributed: data is this rank's shard; the sums run over all ranks
        self.objective = across_ranks(self.objective)
        self.meter = SharpnessMeter(self.objective, model, optimizer, self.k, mode=mode, tol=tol,
                                    restart_every=restart_every, criterion=criterion,
                                    max_vectors=max_vectors, raw=raw_sharpness,
                                    max_warm_products=max_warm_products,
                                    image_dtype=image_dtype)
        self.columns = monitor_columns(self.k, self.preconditioned) + COST_COLUMNS
        self.clock = CostClock()
        self.step_curve = StepCurvature(self.objective, model, loss_fn, self._fork) if (
            step_curvature) else None
        self.rows: list[dict] = []  # every measurement so far, completed or pending
        self.hvps_total = 0
        self.steps = 0  # optimiser steps counted (or given) so far
        self._pending: tuple[dict, Tensor, Tensor] | None = None  # (row, x_t, g_t) awaiting κ
        self._written = 0  # rows handed to metrics.csv and the loggers
        self._t0 = time.perf_counter()
        self.closed = False
        if not is_main_rank():  # rank 0 alone writes the run directory and logs
            out, loggers = None, ()
        config, meta = self._config(loss_fn, probe_size, tol, seed, restart_every, criterion)
        self.run_dir = MonitorRunDir(out, config, meta, self.columns) if out is not None else None
        from eoskit.loggers import make_sinks

        self.sinks = make_sinks(loggers, out)
        self.spectrum = MonitorSpectrum(  # spectrum.csv beside metrics.csv (monitor_spectrum.py)
            self.objective, spectrum_every, out, probes=spectrum_probes, steps=spectrum_steps,
            tol=tol, restart_every=restart_every,
            # the spectrum's top pairs are Lanczos's, which has no "change" test
            criterion="eigenvalue" if criterion == "change" else criterion,
            seed=seed) if spectrum_every else None
        for sink in self.sinks:
            sink.log_params({**config, **meta})

    @property
    def preconditioned(self) -> bool:
        """The optimiser is an adaptive one whose ``P`` the Monitor reads."""
        return self.meter.preconditioned

    @staticmethod
    def _fork():
        return torch.random.fork_rng(devices=_rng_devices())

    @property
    def step_rows(self) -> list[dict]:
        """κ along every step (``step_curvature=True``): step, loss, loss_next, step_norm,
        eff_curvature; empty otherwise."""
        return [] if self.step_curve is None else self.step_curve.rows

    def _config(self, loss_fn, probe_size, tol, seed, restart_every, criterion
                ) -> tuple[dict, dict]:
        opt = self.optimizer
        images = getattr(self.meter.tracker, "image_dtype", None)  # "shared" only
        config = {
            "dataset": "user", "model": type(self.model).__name__,
            "loss": getattr(loss_fn, "__name__", type(loss_fn).__name__),
            "optimizer": optimizer_kind(opt), "lr": optimizer_lr(opt),
            "beta": optimizer_beta(opt), "neigs": self.k, "every": self.every,
            "eig_tol": tol, "eig_restart_every": restart_every, "eig_criterion": criterion,
            "probe_size": probe_size,
            "dtype": str(self.objective.dtype).removeprefix("torch."),
            "device": str(self.objective.device), "hvp_method": self.objective.hvp_method,
            "raw_sharpness": self.meter.raw, "eig_mode": self.meter.mode,
            "max_warm_products": getattr(self.meter.tracker, "max_warm_products", None),
            "image_dtype": None if images is None else str(images).removeprefix("torch."),
        }
        meta = {"seed": seed, "threshold": optimizer_threshold(opt), "n_params": self.objective.dim,
                "n_train": self.objective.n}
        return config, meta

    # ---------------------------------------------------------------- the loop's calls
    def step(self, step: int | None = None, *, batch=None, loss=None) -> dict | None:
        """Call after each optimiser step; returns the measurement's row on measured steps.

        ``step``: the optimiser's step count after this step (default: one more
        than the last call's). A row's ``eff_curvature`` is filled in at the
        next call (the same dict object). ``batch`` ``(inputs, targets)`` and
        ``loss`` (the loss the loop computed on it before the update): with
        ``step_curvature``, κ of this step on that batch from one forward pass.
        """
        self.clock.enter()
        try:
            return self._step(step, batch, loss)
        finally:
            self.clock.leave()

    def _step(self, step, batch, loss) -> dict | None:
        self.steps = self.steps + 1 if step is None else int(step)
        if self.step_curve is not None:
            self.step_curve.update(self.steps, batch, loss)
        measure = self.steps % self.every == 0 and not (self.rows and
                                                        self.rows[-1]["step"] == self.steps)
        if self._pending is not None and not measure:
            self._complete_pending()
        if self.spectrum is not None:
            self.spectrum.maybe_measure(self.steps, optimizer_threshold(self.optimizer))
        return self.measure() if measure else None

    def measure(self) -> dict:
        """Measure now, at the current parameters (row ``step`` = the current step count)."""
        started = time.perf_counter()
        live = self.objective.live_parameters()
        x = None if live is not None else self.objective.x0()  # (d,), this call's own copy
        hvps_before = self.objective.hvp_count
        with self._fork(), torch.enable_grad():
            # fd products displace the model's own parameters (or x) in place and give
            # every bit back: no d-long vector holds the point while they run
            with self.objective.at(x, copy=False, live=live or self.objective.parts(x)) as point:
                # the gradient is taken after the products, so it is not held beside the
                # basis while they run (one model-sized vector less at the peak)
                try:
                    eig, peig = self.meter.measure(point.hvp)
                    failure = None
                except Exception as exc:  # re-raised below unless the loss explains it
                    failure = exc
                loss, g, x = float(point.value), point.grad.detach(), point.x.detach()
                if not math.isfinite(loss):  # the eigensolvers fail deep inside, or not at all
                    raise ValueError(f"the loss is {loss} at step {self.steps}: no Hessian "
                                     "to measure (diverged? check the learning rate and "
                                     "data)") from failure
                if failure is not None:
                    raise failure
        if self._pending is not None:
            self._complete_pending(x, loss)
        hvps = self.objective.hvp_count - hvps_before
        self.hvps_total += hvps
        row = monitor_row(self.steps, loss, g, eig, threshold=optimizer_threshold(self.optimizer),
                          lr=optimizer_lr(self.optimizer), hvps=hvps,
                          wall=time.perf_counter() - self._t0, neigs=self.k)
        if self.preconditioned:
            row.update(monitor_precond_cells(peig, self.k))
        row.update(self.clock.cells(time.perf_counter() - started))
        self.rows.append(row)
        if self.curvature:
            self._pending = (row, x, g)
        else:
            self._flush()
        return row

    def preconditioner(self) -> Tensor | None:
        """The optimiser's current ``P`` (d,), as measured
        (:meth:`~eoskit.monitor.sharpness_meter.SharpnessMeter.preconditioner`)."""
        return self.meter.preconditioner()

    def _complete_pending(self, x_next: Tensor | None = None, loss_next: float | None = None):
        """κ of the step after the pending measurement, if this call is exactly one step later."""
        row, x, g = self._pending
        self._pending = None
        if self.steps == row["step"] + 1:
            if x_next is None:
                x_next = self.objective.x0()
                with self._fork():
                    loss_next = float(self.objective.value(x_next))
            row.update(step_cells(row["loss"], loss_next, g, x_next - x))
        self._flush()

    def _flush(self) -> None:
        for row in self.rows[self._written:]:
            if self._pending is not None and row is self._pending[0]:
                break
            if self.run_dir is not None:
                self.run_dir.write(row)
            for sink in self.sinks:
                sink.log_row(row)
            self._written += 1

    # ---------------------------------------------------------------- the end
    def close(self, status: str = "completed") -> dict | None:
        """Write the last row, the final ``summary.json`` and the plots; close the loggers.

        Returns the summary (None without ``out``). Closing twice does nothing.
        """
        if self.closed:
            return None
        self.closed = True
        self._pending = None
        self._flush()
        summary = None
        if self.run_dir is not None:
            extra = {"hvps_total": self.hvps_total,
                     "hvps_per_measurement": self.hvps_total / max(len(self.rows), 1),
                     "wall_time": time.perf_counter() - self._t0}
            summary = self.run_dir.finish(self.rows, status, extra)
            spectrum_plots = self.spectrum.close() if self.spectrum is not None else []
            for path in self._artifacts() + spectrum_plots:
                for sink in self.sinks:
                    sink.log_artifact(path)
        for sink in self.sinks:
            sink.close()
        return summary

    def _artifacts(self) -> list[Path]:
        out = self.run_dir.out
        try:
            from eoskit.plots.run_figures import plot_run

            plots = plot_run(out)
        except Exception:  # figures are a bonus (plot_run knows eoskit's optimisers only)
            plots = []
        return [out / "metrics.csv", out / "summary.json", out / "config.json", *plots]

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("completed" if exc_type is None else
                   "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed")
