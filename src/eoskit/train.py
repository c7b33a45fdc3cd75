"""The training loop: full-batch GD (and momentum, SGD) with sharpness tracking.

Each iteration ``t`` evaluates the loss and gradient at ``x_t`` (one pass
over the data); on a sharpness step the same pass keeps its gradient graph
(:meth:`Objective.at`) so that the eigensolver's Hessian-vector products
reuse it. Row ``t`` of ``metrics.csv`` describes the step from ``x_t`` to
``x_{t+1}``; its effective curvature needs ``L(x_{t+1})``, so the row is
written at iteration ``t+1`` (the last one after a final loss evaluation).

Example:
    >>> from eoskit.config import RunConfig
    >>> cfg = RunConfig(dataset="digits", n_train=64, n_test=0, width=8, steps=3,
    ...                 dtype="float64", lr=0.1, checkpoint_every=0)
    >>> import tempfile; out = tempfile.mkdtemp()
    >>> train(cfg, out, progress=False)["status"]
    'completed'
"""

from __future__ import annotations

import math
import platform
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from eoskit import store
from eoskit.config import RunConfig
from eoskit.diagnostics import ForcingTracker, effective_curvature
from eoskit.eigs import SharpnessTracker
from eoskit.optim import UpdateRule
from eoskit.problem import Problem, build_problem, torch_dtype  # noqa: F401 (re-exported)
from eoskit.store import FINAL_STATUSES
from eoskit.summary import ONSET_FRACTION, summarize, summarize_diagnostics  # noqa: F401

BASE_COLUMNS = [
    "step", "loss", "accuracy", "test_loss", "test_accuracy", "grad_norm", "step_norm",
    "eff_curvature", "eff_curvature_mean", "sharpness", "threshold", "eig_residual", "hvps",
    "wall_time",
]


class Diverged(Exception):
    pass


def metric_columns(cfg: RunConfig) -> list[str]:
    cols = list(BASE_COLUMNS)
    if cfg.neigs > 1:
        cols += [f"eig_{i + 1}" for i in range(cfg.neigs)]
    if cfg.optimizer == "sgd":
        cols += ["full_loss"]
    return cols


# ---------------------------------------------------------------- the run
@dataclass
class RunState:
    step: int
    x: Tensor
    elapsed: float = 0.0
    pending_row: dict | None = None  # row `step-1`, waiting for L(x_step)
    pending_diag: dict | None = None  # diagnostics of step `step-1`, waiting for s_step
    extra: dict = field(default_factory=dict)


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler stopping the job) ends the run like Ctrl-C: status 'interrupted'."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. a Ray worker thread)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def train(cfg: RunConfig | None, out_dir: str | Path, *, resume: bool = False,
          progress: bool = True) -> dict:
    """Run (or resume) a training run into ``out_dir``; returns the summary dict.

    ``resume=True`` reads the configuration from ``out_dir/config.json`` (a
    ``cfg`` given too must equal it), restores the newest good checkpoint and
    continues; a run that already finished (completed or diverged: both are
    final) is left as it is and its summary returned.
    """
    out = Path(out_dir)
    if resume:
        if not (out / "config.json").exists():
            raise ValueError(f"cannot resume: {out} has no config.json")
        stored = RunConfig(**store.read_json(out / "config.json")["config"])
        if cfg is not None and cfg != stored:
            diff = [k for k in RunConfig.model_fields if getattr(cfg, k) != getattr(stored, k)]
            raise ValueError(f"cannot resume: the run in {out} has a different configuration "
                             f"({', '.join(diff)})")
        cfg = stored
        summary_path = out / "summary.json"
        if summary_path.exists():
            summary = store.read_json(summary_path)
            if summary.get("status") in FINAL_STATUSES:
                return summary
    elif cfg is None:
        raise ValueError("a configuration is needed unless resuming")
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    problem = build_problem(cfg)
    return Trainer(problem, out, resume=resume, progress=progress).run()


class Trainer:
    def __init__(self, problem: Problem, out: Path, *, resume: bool, progress: bool):
        self.p = problem
        self.cfg = cfg = problem.config
        self.out = out
        self.progress = progress
        self.obj = problem.train
        self.rule = UpdateRule(cfg.optimizer, cfg.lr, cfg.beta)
        self.tracker = SharpnessTracker(cfg.neigs, cfg.eig_tol, cfg.eig_restart_every,
                                        mode=cfg.eig_mode, criterion=cfg.eig_criterion)
        self.forcing = ForcingTracker(cfg.lr)
        self.batch_gen = torch.Generator().manual_seed(cfg.seed + 7919)
        self.columns = metric_columns(cfg)
        self.state = RunState(0, problem.x0)
        self.hvps_total = 0
        self.diag_columns = None
        out.mkdir(parents=True, exist_ok=True)
        (out / "plots").mkdir(exist_ok=True)
        restored = self._restore() if resume else False
        if not restored:
            self._write_config()
        keep = self.state.step - 1 if restored else None
        if restored and self.state.pending_row is None:
            keep = self.state.step
        self.metrics = store.CsvLog(out / "metrics.csv", self.columns, keep_below=keep)
        self.diag_log = None
        if cfg.diagnose_every:
            from eoskit.diagnostics import DIAGNOSTIC_COLUMNS

            self.diag_columns = list(DIAGNOSTIC_COLUMNS)
            dkeep = self.state.extra.get("diag_keep_below") if restored else None
            self.diag_log = store.CsvLog(out / "diagnostics.csv", self.diag_columns,
                                         keep_below=dkeep if restored else None)

    # ---- bookkeeping
    def _write_config(self) -> None:
        import eoskit

        store.write_json(self.out / "config.json", {
            "config": self.cfg.model_dump(mode="json"),
            "eoskit_version": eoskit.__version__,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "seed": self.cfg.seed,
            "threshold": self.rule.threshold,
            "n_params": self.obj.dim,
            "n_train": self.obj.n,
            "preprocessing": self.p.dataset.preprocessing,
            "metrics_columns": self.columns,
        })
        store.write_json(self.out / "summary.json", {"status": "running", "steps": 0})

    def _checkpoint(self) -> None:
        s = self.state
        state = {
            "step": s.step, "x": s.x.detach().cpu(), "elapsed": s.elapsed,
            "pending_row": s.pending_row,
            "pending_diag": _to_cpu(s.pending_diag),
            "optimizer": _to_cpu(self.rule.state_dict()),
            "tracker": self.tracker.state_dict(),
            "forcing": self.forcing.state(),
            "batch_gen": self.batch_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "hvps_total": self.hvps_total,
            "extra": dict(s.extra),
        }
        self.metrics.sync()
        if self.diag_log is not None:
            self.diag_log.sync()
        store.save_checkpoint(self.out / "checkpoints", s.step, state,
                              keep=self.cfg.keep_checkpoints)

    def _restore(self) -> bool:
        latest = store.load_latest_checkpoint(self.out / "checkpoints")
        if latest is None:
            return False
        st, _ = latest
        dev = self.cfg.device
        self.state = RunState(st["step"], st["x"].to(dev), st["elapsed"], st["pending_row"],
                              _to_device(st["pending_diag"], dev), st.get("extra", {}))
        self.rule.load_state_dict(_to_device(st["optimizer"], dev))
        self.tracker.load_state_dict(st["tracker"], dev)
        for k, v in st["forcing"].items():
            setattr(self.forcing, k, v)
        self.batch_gen.set_state(st["batch_gen"])
        torch.set_rng_state(st["torch_rng"])
        self.hvps_total = st["hvps_total"]
        return True

    # ---- one evaluation at x_t
    def _evaluate(self, t: int, x: Tensor):
        cfg = self.cfg
        measure = cfg.sharpness_every > 0 and t % cfg.sharpness_every == 0
        obj = self.obj
        if cfg.optimizer == "sgd":
            idx = torch.randperm(obj.n, generator=self.batch_gen)[: cfg.batch_size]
            obj = self.obj.subset(idx.to(self.obj.inputs.device))
        eig = None
        hvps_before = self.obj.hvp_count
        if measure:
            point = self.obj.at(x)
            if obj is self.obj:
                loss, g, aux = point.value, point.grad, point.aux
            else:
                loss, g, aux = obj.value_grad_aux(x)
            eig = self.tracker.measure(point.hvp, self.obj.dim, x.dtype, x.device)
            point.release()
        else:
            loss, g, aux = obj.value_grad_aux(x)
        hvps = self.obj.hvp_count - hvps_before
        return obj, float(loss), g, aux, eig, hvps

    def run(self) -> dict:
        cfg, s = self.cfg, self.state
        status = "completed"
        t0 = time.perf_counter() - s.elapsed
        bar = _progress(cfg.steps, s.step, self.progress)
        try:
            with _sigterm_as_interrupt(), bar as update:
                while True:
                    t = s.step
                    if t < cfg.steps:
                        obj, loss, g, aux, eig, hvps = self._evaluate(t, s.x)
                    elif s.pending_diag is not None:
                        # the last diagnosed step's recurrence needs s_T = −η g(x_T)
                        obj, (loss, g) = self.obj, self.obj.value_and_grad(s.x)
                        loss = float(loss)
                    else:
                        obj, loss, g = self.obj, self._final_loss(s.x), None
                    self._finish_pending(loss, g, t, obj)
                    if t >= cfg.steps:
                        break
                    row = self._row(t, loss, g, aux, eig, hvps, time.perf_counter() - t0)
                    if not math.isfinite(loss) or loss > cfg.diverge_loss:
                        self.metrics.write(row)
                        status = "diverged"
                        break
                    step_vec = self.rule.step(g)
                    row["step_norm"] = float(step_vec.norm())
                    if cfg.optimizer == "sgd":
                        self._sgd_batch_curvature(row, obj, s.x, step_vec, loss, t)
                    s.pending_row = row
                    if cfg.diagnose_every and t % cfg.diagnose_every == 0 and cfg.optimizer == "gd":
                        s.pending_diag = {"step": t, "x": s.x, "s": step_vec, "loss": loss}
                    s.x = (s.x + step_vec).detach()
                    s.step = t + 1
                    s.extra["diag_keep_below"] = t + 1 if cfg.optimizer == "sgd" else t
                    update(s.step, loss, row.get("sharpness"))
                    if cfg.stop_loss is not None and loss <= cfg.stop_loss:
                        # finish the last row and stop
                        self._finish_pending(self._final_loss(s.x), None, s.step, self.obj)
                        break
                    s.elapsed = time.perf_counter() - t0
                    if cfg.checkpoint_every and s.step % cfg.checkpoint_every == 0:
                        self._checkpoint()
        except KeyboardInterrupt:
            status = "interrupted"
        finally:
            self.metrics.close()
            if self.diag_log is not None:
                self.diag_log.close()
        if status != "interrupted":
            store.atomic_write_bytes(self.out / "params_final.pt", _tensor_bytes(s.x))
        summary = self._summary(status)
        store.write_json(self.out / "summary.json", summary)
        if status != "interrupted":
            self._plots()
        return summary

    def _final_loss(self, x: Tensor) -> float:
        return self.obj.loss_and_accuracy(x)[0]

    def _finish_pending(self, loss_next: float, g_next, t: int, obj) -> None:
        """Complete row t-1 (κ needs L(x_t)) and run its diagnostics (they need s_t)."""
        s = self.state
        row = s.pending_row
        if row is None:
            return
        if self.cfg.optimizer == "sgd":
            self.forcing.update(row["loss"], row["_next_batch_loss"], row["eff_curvature"],
                                row["step_norm"] ** 2)
            row.pop("_next_batch_loss", None)
        else:
            kappa = self._curvature(row, loss_next)
            row["eff_curvature"] = kappa
            self.forcing.update(row["loss"], loss_next, kappa, row["step_norm"] ** 2)
        row["eff_curvature_mean"] = self.forcing.weighted_mean_kappa
        self.metrics.write(row)
        s.pending_row = None
        if s.pending_diag is not None:
            d = s.pending_diag
            s_next = None if g_next is None else -self.cfg.lr * g_next
            self._diagnose(self.obj, d["step"], d["x"], d["s"], s_next, d["loss"], loss_next)
            s.pending_diag = None

    def _curvature(self, row: dict, loss_next: float) -> float:
        sq = row["step_norm"] ** 2
        if self.cfg.optimizer in ("gd", "sgd"):
            return effective_curvature(row["loss"], loss_next, sq, self.cfg.lr)
        # momentum: the exact second-order form 2(ΔL − gᵀs)/|s|² (GD's formula needs s = −ηg)
        return 2.0 * (loss_next - row["loss"] - row["_g_dot_s"]) / sq if sq > 0 else math.nan

    def _sgd_batch_curvature(self, row, batch_obj, x, step_vec, loss, t) -> None:
        # one extra forward on the same batch: the loss-change formula holds for the batch loss
        next_loss, _ = batch_obj.loss_and_accuracy(x + step_vec)
        sq = float(step_vec @ step_vec)
        row["eff_curvature"] = effective_curvature(loss, next_loss, sq, self.cfg.lr)
        row["_next_batch_loss"] = next_loss
        if self.cfg.diagnose_every and t % self.cfg.diagnose_every == 0:
            self._diagnose(batch_obj, t, x, step_vec, None, loss, next_loss)

    def _diagnose(self, obj, t, x, s_t, s_next, loss_t, loss_next) -> None:
        from eoskit.diagnostics import diagnose_step

        warm = None if self.tracker.warm is None else self.tracker.warm[:, 0]
        diag = diagnose_step(obj, x, s_t, s_next, self.cfg.lr, loss_t, loss_next,
                             nodes=self.cfg.diagnose_nodes, sharpness_v0=warm)
        self.diag_log.write({"step": t, **diag})

    def _row(self, t, loss, g, aux, eig, hvps, wall) -> dict:
        cfg = self.cfg
        self.hvps_total += hvps
        row = {"step": t, "loss": loss, "grad_norm": float(g.norm()),
               "threshold": self.rule.threshold, "hvps": hvps, "wall_time": wall}
        if aux is not None:
            row["accuracy"] = int(aux) / (cfg.batch_size or self.obj.n)
        if eig is not None:
            row["sharpness"] = float(eig.eigenvalues[0])
            row["eig_residual"] = float(eig.residuals[0] / max(abs(eig.eigenvalues[0]), 1e-300))
            if cfg.neigs > 1:
                for i, ev in enumerate(eig.eigenvalues):
                    row[f"eig_{i + 1}"] = float(ev)
        is_last = t == cfg.steps - 1
        if self.p.test is not None and cfg.eval_every and (t % cfg.eval_every == 0 or is_last):
            row["test_loss"], row["test_accuracy"] = self.p.test.loss_and_accuracy(self.state.x)
        if cfg.optimizer == "sgd" and cfg.eval_every and (t % cfg.eval_every == 0 or is_last):
            row["full_loss"], _ = self.obj.loss_and_accuracy(self.state.x)
        if cfg.optimizer in ("polyak", "nesterov"):
            # gᵀs of the step about to be taken; filled here from the buffer's update rule
            b = g if self.rule.buffer is None else cfg.beta * self.rule.buffer + g
            s_vec = -cfg.lr * b if cfg.optimizer == "polyak" else -cfg.lr * (g + cfg.beta * b)
            row["_g_dot_s"] = float(g @ s_vec)
        return row

    # ---- results
    def _summary(self, status: str) -> dict:
        rows = store.read_rows(self.out / "metrics.csv")
        out = summarize(rows, self.rule.threshold, status)
        f = self.forcing
        out.update({
            "eff_curvature_weighted_mean": f.weighted_mean_kappa,
            "eff_curvature_weighted_mean_over_threshold": f.weighted_mean_kappa / (2 / self.cfg.lr),
            "forcing_lhs": f.lhs, "forcing_rhs": f.rhs,
            "forcing_relative_error": _rel(f.lhs, f.rhs),
            "hvps_total": self.hvps_total,
            "wall_time": self.state.elapsed,
        })
        if self.diag_columns is not None and (self.out / "diagnostics.csv").exists():
            diag_rows = store.read_rows(self.out / "diagnostics.csv")
            out["diagnostics"] = summarize_diagnostics(diag_rows)
        return out

    def _plots(self) -> None:
        from eoskit.plots import plot_run

        try:
            plot_run(self.out)
            if (self.out / "diagnostics.csv").exists():
                from eoskit.diagnostics import plot_diagnostics

                plot_diagnostics(self.out / "diagnostics.csv", self.out / "plots", self.cfg.lr)
        except Exception as err:  # a figure must never lose a finished run
            print(f"eoskit: warning: plotting failed: {err}")


def _rel(a: float, b: float) -> float:
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.nan
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _tensor_bytes(x: Tensor) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(x.detach().cpu(), buf)
    return buf.getvalue()


def _to_cpu(obj):
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    return obj


def _to_device(obj, device):
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


@contextmanager
def _progress(total: int, start: int, enabled: bool):
    """A rich progress bar showing step, loss and the latest sharpness."""
    if not enabled:
        yield lambda *a: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    last = {"sharp": None}
    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                  transient=False) as prog:
        task = prog.add_task("train", total=total, completed=start, info="")

        def update(step, loss, sharp):
            if sharp is not None:
                last["sharp"] = sharp
            sh = "—" if last["sharp"] is None else f"{last['sharp']:.4g}"
            prog.update(task, completed=step, info=f"loss {loss:.4g}  sharpness {sh}")

        yield update
