"""The optimiser and sink registries are the one source: RunConfig's fields and help, the
Monitor's thresholds and preconditioner, flows' optimisers and the run's loggers are
derived from the rule and sink classes, so a new class needs no edit elsewhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import eoskit
from eoskit.flows.flow_run import FLOW_TRACKS, FlowSettings
from eoskit.loggers import SINKS, NamedSink, parse_loggers
from eoskit.loggers.run_logging import RunLoggers
from eoskit.monitor.optimizers import adaptive, optimizer_kind, optimizer_threshold
from eoskit.optim import HYPERPARAMETERS, OPTIMIZERS, RULES, Polyak, rules_with, torch_rule
from eoskit.training.config import RunConfig


def test_runconfig_fields_and_help_come_from_the_rules():
    fields = RunConfig.model_fields
    assert fields["optimizer"].annotation.__args__ == OPTIMIZERS
    for name in HYPERPARAMETERS:
        users = [r for r in RULES.values() if name in r.hyperparameters]
        text = fields[name].description
        assert text.startswith(HYPERPARAMETERS[name].meaning), name
        assert all(r.name in text for r in users), (name, text)
    assert "0.9" in fields["beta1"].description and "0.01" in fields["weight_decay"].description
    assert all(n in fields["beta"].description for n in rules_with("momentum"))
    assert all(n in fields["batch_size"].description for n in rules_with("samples_batch"))


def test_a_torch_optimisers_threshold_is_its_rules_own_formula(monkeypatch):
    p = [torch.nn.Parameter(torch.zeros(2))]
    heavy_ball = torch.optim.SGD(p, lr=0.1, momentum=0.5, dampening=0.5)
    assert optimizer_kind(heavy_ball) == "polyak" and torch_rule(heavy_ball) is Polyak
    assert optimizer_threshold(heavy_ball) == pytest.approx(Polyak.threshold_for(0.05, 0.5))
    monkeypatch.setattr(Polyak, "threshold_for", classmethod(lambda cls, lr, beta=0.0: 7.0))
    assert optimizer_threshold(heavy_ball) == 7.0
    made = {"sgd": torch.optim.SGD(p, lr=0.1), "adam": torch.optim.Adam(p, lr=0.1),
            "adamw": torch.optim.AdamW(p, lr=0.1), "rmsprop": torch.optim.RMSprop(p, lr=0.1),
            "nesterov": torch.optim.SGD(p, lr=0.1, momentum=0.5, nesterov=True)}
    for name, opt in made.items():
        assert optimizer_kind(opt) == name and adaptive(opt) == RULES[name].preconditioned
        assert optimizer_threshold(opt) == pytest.approx(RULES[name].threshold_for(
            **RULES[name].torch_settings(opt.param_groups[0])))
    assert torch_rule(torch.optim.Adam(p, lr=0.1, amsgrad=True)) is None
    assert optimizer_kind(torch.optim.Adagrad(p)) == "adagrad"


def _module_imports(module: str) -> set[str]:
    """The eoskit modules ``module`` imports at its top level, transitively."""
    src = Path(eoskit.__file__).parent.parent
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        path = src / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = src / name.replace(".", "/") / "__init__.py"
        if name in seen or not path.exists():
            continue
        seen.add(name)
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("eoskit"):
                todo += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return seen


def test_the_monitors_optimiser_reading_needs_no_config_nor_pydantic():
    reached = _module_imports("eoskit.monitor.optimizers")
    assert "eoskit.optim" in reached and "eoskit.training.config" not in reached
    assert not any(m.startswith("eoskit.models") for m in reached)


def test_flows_follow_the_rules_they_have_tracks_for():
    assert {r.name for r in FLOW_TRACKS} == {"gd", "rmsprop"}
    with pytest.raises(ValueError, match="flows follow gd or rmsprop, got optimizer 'adam'"):
        FlowSettings(lr=0.1, steps=2, optimizer="adam")


class Memory(NamedSink):
    """A sink kept in memory: what it was opened with and what it was given."""

    name = "memory"
    opened: list = []

    def __init__(self, saved, start):
        self.saved, self.start, self.rows, self.params, self.status = saved, start, [], None, None
        self.continued = saved is not None and start > 0
        Memory.opened.append(self)

    @classmethod
    def open(cls, out, options=None, saved=None, start=0):
        return cls(saved, start)

    def saved_state(self):
        return {"memory_token": "kept"}

    def log_params(self, config):
        self.params = config

    def log_row(self, row):
        self.rows.append(row["step"])

    def log_artifact(self, path):
        pass

    def close(self, status="completed"):
        self.status = status


def test_a_named_sink_is_opened_resumed_and_closed_through_its_class(monkeypatch, tmp_path):
    monkeypatch.setitem(SINKS, "memory", Memory)
    assert parse_loggers("memory") == ["memory"]
    first = RunLoggers(tmp_path, ["memory"], {}, resumed=False, stream=True, params={"a": 1})
    for step in range(3):
        first.write({"step": step, "loss": 1.0})
    first.finish("interrupted")
    sink = Memory.opened[-1]
    assert (sink.params, sink.rows, sink.status) == ({"a": 1}, [0, 1, 2], "interrupted")
    (tmp_path / "metrics.csv").write_text("step,loss\n0,1.0\n1,1.0\n2,1.0\n")
    again = RunLoggers(tmp_path, [], {}, resumed=True, stream=True, params={"a": 1})
    again.finish("completed")
    sink = Memory.opened[-1]
    assert sink.saved["memory_token"] == "kept" and sink.start == 3 and sink.continued
    assert (sink.params, sink.rows, sink.status) == (None, [], "completed")
