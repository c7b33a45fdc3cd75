"""``eoskit flow``'s driver: GD, gradient flow and the central flow from one start.

Time is in units of GD steps (flow time t ↔ t steps of size η). Every
``every`` steps one row per trajectory goes to ``flows.csv`` (columns
``FLOW_COLUMNS``); ``summary.json`` holds the post-onset medians
(:func:`~eoskit.flows.flow_summary.summarize_flows`) and the costs;
``flow_config.json`` the settings;
``checkpoints/`` the state every ``checkpoint_every`` steps, so
``resume=True`` continues a killed run and writes the same rows. Everything
is written through :mod:`eoskit.store`; the rows a summary needs travel in
the checkpoint, so nothing is read back from the CSV.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from eoskit import store
from eoskit.flows.central import DEFAULT_FRACTION, CentralFlow
from eoskit.flows.flow_summary import loss_error_by_window, summarize_flows
from eoskit.flows.gradient import ATOL, RTOL, GradientFlowSettings
from eoskit.flows.rmsprop_central import RMSPROP_ALPHA, RMSPROP_EPS, RMSPropCentralFlow
from eoskit.flows.rmsprop_tracks import RMSPropCentralTrack, StableTrack
from eoskit.flows.tracks import CentralTrack, FlowDiverged, GDTrack, GradientTrack
from eoskit.interrupts import sigterm_as_interrupt
from eoskit.objective import Objective
from eoskit.optim import GD, RULES, RMSprop, rule_class

FLOWS = ("gradient", "central")
FLOW_COLUMNS = ["step", "flow", "loss", "predicted_loss", "grad_norm_sq",
                "predicted_grad_norm_sq", "sharpness", "n_constrained", "trace_sigma",
                "dist_to_gd", "hvps", "d3_calls", "sigma_top", "half_amplitude_sq",
                "trace_half_amplitude_sq"]
GD_STEP_COLUMNS = ["step", "loss", "grad_norm_sq"]  # gd_steps.csv: GD's every step, raw


@dataclass(frozen=True)
class FlowSettings:
    """Everything that determines a flows run besides the objective and its start."""

    lr: float
    steps: int
    every: int = 1
    flows: tuple[str, ...] = FLOWS
    substeps: int = 4
    fraction: float = DEFAULT_FRACTION
    neigs: int = 3
    eig_tol: float = 1e-5
    window: int = 21  # GD's centred moving average: odd number of steps
    method: str = "RK45"
    rtol: float = RTOL
    atol: float = ATOL
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    optimizer: str = "gd"  # gd or rmsprop (its central flow: eoskit.flows.rmsprop_central)
    alpha: float = RMSPROP_ALPHA  # rmsprop: ν's running-average factor (torch's alpha)
    eps: float = RMSPROP_EPS

    def __post_init__(self):
        _check(self.lr > 0 and math.isfinite(self.lr), f"lr must be positive, got {self.lr}")
        _check(self.steps >= 1 and self.every >= 1, "steps and every must be at least 1")
        _check(self.steps % self.every == 0,
               f"steps ({self.steps}) must be a multiple of every ({self.every})")
        _check(bool(self.flows) and set(self.flows) <= set(FLOWS),
               f"flows must be a non-empty subset of {','.join(FLOWS)}, got {self.flows}")
        _check(self.substeps >= 1, f"substeps must be at least 1, got {self.substeps}")
        _check(0 < self.fraction <= 1, f"fraction must be in (0, 1], got {self.fraction}")
        _check(self.neigs >= 1, f"neigs must be at least 1, got {self.neigs}")
        _check(0 < self.eig_tol < 1, f"eig_tol must be in (0, 1), got {self.eig_tol}")
        _check(self.window >= 1 and self.window % 2 == 1,
               f"window must be an odd number of steps, got {self.window}")
        _check(self.checkpoint_every >= 0 and (self.checkpoint_every % self.every == 0),
               "checkpoint_every must be a multiple of every (0: never)")
        _check(self.optimizer in RULES and rule_class(self.optimizer) in FLOW_TRACKS,
               f"flows follow {' or '.join(OPTIMIZERS)}, got optimizer {self.optimizer!r}")
        _check(0 <= self.alpha < 1 and self.eps > 0, "rmsprop needs 0 ≤ alpha < 1, eps > 0")
        GradientFlowSettings(self.method, self.rtol, self.atol)

    @property
    def threshold(self) -> float:
        return 2.0 / self.lr

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FlowSettings:
        return cls(**{**d, "flows": tuple(d["flows"])})


def read_flow_config(folder: Path) -> tuple[FlowSettings, dict]:
    """The settings and source stored in ``folder/flow_config.json`` (for a resume);
    :class:`eoskit.store.RunDirError` naming what is wrong with the file."""
    path = Path(folder) / "flow_config.json"
    if not path.is_file():
        raise store.RunDirError(f"cannot resume: {folder} has no flow_config.json")
    try:
        stored = store.read_json(path)
    except ValueError as err:
        raise store.RunDirError(f"cannot resume: {path} is not valid JSON ({err})") from None
    if not isinstance(stored, dict) or not {"settings", "source"} <= set(stored):
        raise store.RunDirError(f"cannot resume: {path} lacks its 'settings' or 'source'")
    fields = {f.name for f in dataclasses.fields(FlowSettings)}
    settings = stored["settings"]
    unknown = sorted(set(settings) - fields) if isinstance(settings, dict) else ["?"]
    if unknown or not isinstance(stored["source"], dict) or "flows" not in settings:
        raise store.RunDirError(f"cannot resume: {path} has settings eoskit does not know "
                                f"({', '.join(unknown) or 'flows missing'})")
    return FlowSettings.from_dict(settings), stored["source"]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _tracks(obj: Objective, x0: Tensor, s: FlowSettings) -> dict:
    return FLOW_TRACKS[rule_class(s.optimizer)](obj, x0, s)


def _gd_tracks(obj: Objective, x0: Tensor, s: FlowSettings) -> dict:
    tracks = {"gd": GDTrack(obj, x0, s.lr, s.eig_tol, s.window // 2, k=min(s.neigs, obj.dim))}
    if "gradient" in s.flows:
        tracks["gradient"] = GradientTrack(obj, x0, s.lr, s.eig_tol,
                                           GradientFlowSettings(s.method, s.rtol, s.atol))
    if "central" in s.flows:
        flow = CentralFlow(s.lr, s.substeps, s.fraction, min(s.neigs, obj.dim), s.eig_tol)
        tracks["central"] = CentralTrack(obj, x0, flow)
    return tracks


def _rmsprop_tracks(obj: Objective, x0: Tensor, s: FlowSettings) -> dict:
    rule = RMSprop(lr=s.lr, alpha=s.alpha, eps=s.eps)
    tracks = {"gd": GDTrack(obj, x0, s.lr, s.eig_tol, s.window // 2, rule,
                            k=min(s.neigs, obj.dim))}
    if "gradient" in s.flows:
        tracks["gradient"] = StableTrack(obj, x0, s.lr, s.eig_tol, GradientFlowSettings(
            s.method, s.rtol, s.atol), s.alpha, s.eps)
    if "central" in s.flows:
        flow = RMSPropCentralFlow(s.lr, s.substeps, s.fraction, min(s.neigs, obj.dim),
                                  s.eig_tol, alpha=s.alpha, eps=s.eps)
        tracks["central"] = RMSPropCentralTrack(obj, x0, flow)
    return tracks


# the rules whose flows eoskit knows, each with the builder of its tracks
FLOW_TRACKS = {GD: _gd_tracks, RMSprop: _rmsprop_tracks}
OPTIMIZERS = tuple(rule.name for rule in FLOW_TRACKS)


def run_flows(obj: Objective, x0: Tensor, settings: FlowSettings, out: str | Path, *,
              source: dict | None = None, resume: bool = False, overwrite: bool = False,
              stop_at: int | None = None, on_record: Callable[[dict], None] | None = None
              ) -> dict:
    """Run GD and the flows into ``out``; returns the summary.

    ``out`` is a ``flows`` run directory (:mod:`eoskit.store.rundir`): locked
    while the run lasts; a new run refuses a directory that holds one unless
    ``overwrite`` (which removes its files first) and any other kind's in any
    case; ``resume`` refuses a ``flow_config.json`` edited since the
    checkpoint and puts the tables back to what the checkpoint covers.
    ``stop_at`` stops (status ``interrupted``, resumable) once that step's rows
    are written, as a kill would. A resume of a run that already ended for good
    (completed or diverged) returns its summary and touches nothing, as ``eoskit run``
    does. ``on_record(row)`` sees GD's row at every recorded step (a progress bar).
    """
    out = Path(out)
    if resume and overwrite:
        raise ValueError("resume continues the run in the directory; overwrite replaces it")
    config = _config(settings, source)
    if resume and (finished := finished_flows(out, settings, source)) is not None:
        return finished
    with store.RunLock(out):
        if resume and (finished := finished_flows(out, settings, source)) is not None:
            return finished  # another process finished it meanwhile
        if resume:
            store.check_owner(out, "flows")
        else:
            store.claim(out, "flows", overwrite)
        tracks = _tracks(obj, x0.detach().to(obj.dtype), settings)
        run = _FlowRun(out, settings, tracks, config, on_record)
        with sigterm_as_interrupt():
            status = run.loop(run.start(resume, obj.dim), stop_at)
        summary = summarize_flows(run.rows, settings.threshold, status)
        summary["loss_error_by_window"] = loss_error_by_window(run.rows, run.gd_steps,
                                                               summary["eos_onset_step"])
        summary["cost"] = _costs(tracks)
        summary["settings"] = settings.to_dict()
        store.write_json(out / "summary.json", summary)
    return summary


def _config(settings: FlowSettings, source: dict | None) -> dict:
    return store.clean_json({"settings": settings.to_dict(), "source": source or {}})


def finished_flows(out: str | Path, settings: FlowSettings,
                   source: dict | None = None) -> dict | None:
    """The summary of the flows run in ``out`` if it ended for good (completed or
    diverged), else None; it refuses a ``flow_config.json`` edited since the run's last
    checkpoint. A resume asks this first, so a finished run's problem is never built."""
    out = Path(out)
    finished = store.finished_summary(out)
    if finished is not None:
        _check_unedited(out, _config(settings, source))
    return finished


def _check_unedited(out: Path, config: dict) -> None:
    """A finished run's ``flow_config.json`` must still be its newest checkpoint's (a
    resume that changes nothing must not accept an edited record either)."""
    latest = store.load_latest_checkpoint(out / "checkpoints")
    if latest is not None and "record" in latest[0]:
        state = latest[0]
        store.check_config(out, state["step"], state["record"]["config"], config,
                           "flow_config.json")


class _FlowRun:
    """The rows, tables and checkpoints of one flows run."""

    def __init__(self, out: Path, settings: FlowSettings, tracks: dict, config: dict,
                 on_record: Callable[[dict], None] | None = None):
        self.out, self.settings, self.tracks, self.config = out, settings, tracks, config
        self.on_record = on_record
        self.rows: list[dict] = []
        self.gd_steps: list[dict] = []

    def start(self, resume: bool, dim: int) -> int:
        """Restore the newest checkpoint (``resume``) or write a new run's files; the step."""
        out = self.out
        step = self._restore() if resume else None
        if step is not None:
            self.log = store.CsvLog(out / "flows.csv", FLOW_COLUMNS, append=True)
            self.step_log = store.CsvLog(out / "gd_steps.csv", GD_STEP_COLUMNS, append=True)
            return step
        store.write_json(out / "flow_config.json", {
            **self.config, "n_params": dim, "threshold": self.settings.threshold,
            "columns": FLOW_COLUMNS})
        store.write_json(out / "summary.json", {"status": "running"})
        self.log = store.CsvLog(out / "flows.csv", FLOW_COLUMNS)
        self.step_log = store.CsvLog(out / "gd_steps.csv", GD_STEP_COLUMNS)
        return 0

    def loop(self, step: int, stop_at: int | None) -> str:
        """Record and advance every track from ``step`` on; the run's final status."""
        settings, tracks = self.settings, self.tracks
        try:
            while True:
                if settings.checkpoint_every and step % settings.checkpoint_every == 0 and step:
                    self._checkpoint(step)
                if not _finite(tracks["gd"]):  # no eigensolver on a blown-up iterate
                    return "diverged"
                new = _record(step, tracks)
                for r in new:
                    self.log.write(r)
                self.rows.extend(new)
                if self.on_record is not None:
                    self.on_record(new[0])  # GD's row
                for r in tracks["gd"].take_steps():
                    self.step_log.write(r)
                    self.gd_steps.append(r)
                if not all(math.isfinite(r["loss"]) for r in new):
                    return "diverged"
                if step >= settings.steps:
                    return "completed"
                if stop_at is not None and step >= stop_at:
                    return "interrupted"
                for t in tracks.values():
                    t.advance(settings.every)
                step += settings.every
        except KeyboardInterrupt:
            return "interrupted"
        except FlowDiverged:
            return "diverged"
        finally:
            self.log.close()
            self.step_log.close()

    def _checkpoint(self, step: int) -> None:
        self.log.sync()
        self.step_log.sync()
        state = {"step": step, "rows": list(self.rows), "gd_steps": list(self.gd_steps),
                 "tracks": {name: t.state_dict() for name, t in self.tracks.items()},
                 "record": store.table_record(self.config, [self.log.path, self.step_log.path])}
        store.save_checkpoint(self.out / "checkpoints", step, state,
                              keep=self.settings.keep_checkpoints)

    def _restore(self) -> int | None:
        out, tracks = self.out, self.tracks
        latest = store.load_latest_checkpoint(out / "checkpoints")
        if latest is None:
            return None
        state, _ = latest
        if "gd_steps" not in state:  # its gd_steps.csv would start at the resume step
            raise ValueError(f"cannot resume {out}: its checkpoint was written by an eoskit "
                             "without gd_steps.csv; start the run again")
        if "record" not in state:  # its tables cannot be checked against it
            raise ValueError(f"cannot resume {out}: its checkpoint was written by an eoskit "
                             "without table records; start the run again")
        store.check_config(out, state["step"], state["record"]["config"], self.config,
                           "flow_config.json")
        if set(state["tracks"]) != set(tracks):
            raise ValueError(f"cannot resume: the checkpoint has flows {sorted(state['tracks'])}")
        device = next(iter(tracks.values())).obj.device
        for name, t in tracks.items():
            t.load_state_dict(state["tracks"][name], device)
        self.rows = [r for r in state["rows"] if r["step"] < state["step"]]
        self.gd_steps = list(state["gd_steps"])
        for note in store.repair_tables(out, state["record"]):
            print(f"eoskit: resume: {note}", file=sys.stderr)
        return int(state["step"])


def _finite(gd) -> bool:
    """GD's current loss and iterate are finite."""
    return math.isfinite(gd.stats[gd.step][0]) and bool(gd.x.isfinite().all())


def _record(step: int, tracks: dict) -> list[dict]:
    gd = tracks["gd"]
    rows = [gd.row()]
    rows += [t.row(gd.x) for name, t in tracks.items() if name != "gd"]
    return [{"step": step, **r} for r in rows]


def _costs(tracks: dict) -> dict:
    """Per track: totals, and seconds per unit of time relative to a GD step."""
    gd = tracks["gd"].cost
    gd_step = gd["seconds"] / max(gd["grads"], 1)
    out = {}
    for name, t in tracks.items():
        c = dict(t.cost)
        per_unit = c["seconds"] / c["time"] if c["time"] else None
        if name == "gd":
            per_unit = gd_step  # GD runs a window ahead: its gradients are its steps
        c["seconds_per_unit_time"] = per_unit
        c["cost_in_gd_steps"] = None if per_unit is None or not gd_step else per_unit / gd_step
        c["grads_per_unit_time"] = c["grads"] / c["time"] if c["time"] else None
        out[name] = c
    return out
