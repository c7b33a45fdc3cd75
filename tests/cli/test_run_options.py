"""``eoskit run``'s options are RunConfig's fields: same names, types, help and defaults."""

import importlib
import typing

import pytest
import typer.main
from typer.testing import CliRunner

import eoskit.training.loop
from eoskit.cli import _register, app
from eoskit.cli._common import plain_help
from eoskit.training.config import RunConfig


def _run_command():
    _register()
    return typer.main.get_command(app).commands["run"]


def _options() -> dict:
    return {p.name: p for p in _run_command().params}


def test_every_field_is_an_option_with_its_help_and_default():
    opts = _options()
    for name, field in RunConfig.model_fields.items():
        opt = opts[name]
        assert opt.opts == ["--" + name.replace("_", "-")], name
        assert field.description, f"{name} has no description (its --help line)"
        assert opt.help == plain_help(field.description), name
        assert opt.default is None, name  # so that a config file's value stands
        shown = opt.show_default
        if field.default is None:
            assert shown is False, name
        else:
            assert isinstance(shown, str), name
            assert RunConfig.model_validate({name: shown}) == RunConfig(), name


@pytest.fixture
def captured(monkeypatch):
    """Run ``eoskit run`` in-process with training replaced by recording its configuration."""
    seen = {}

    def fake_train(cfg, out, **kw):
        seen["cfg"] = cfg
        return {"status": "completed", "steps": 0}

    monkeypatch.setattr(eoskit.training.loop, "train", fake_train)
    _register()

    def invoke(*args):
        r = CliRunner().invoke(app, ["run", *args])
        return r, seen.get("cfg")

    return invoke


def test_config_file_values_stand_unless_an_option_is_given(tmp_path, captured):
    toml = tmp_path / "run.toml"
    toml.write_text('[run]\ndataset = "digits"\nlr = 0.3\nsteps = 7\ndeterministic = true\n'
                    "classes = [1, 2]\n")
    r, cfg = captured("--config", str(toml), "--out", str(tmp_path / "o"))
    assert r.exit_code == 0, r.output
    assert (cfg.lr, cfg.steps, cfg.deterministic, cfg.classes) == (0.3, 7, True, (1, 2))
    r, cfg = captured("--config", str(toml), "--out", str(tmp_path / "o"), "--steps", "2",
                      "--no-deterministic", "--classes", "0,1,2", "--keep-checkpoints", "5")
    assert r.exit_code == 0, r.output
    assert (cfg.lr, cfg.steps, cfg.deterministic, cfg.classes) == (0.3, 2, False, (0, 1, 2))
    assert cfg.keep_checkpoints == 5 and cfg.n_train == RunConfig().n_train


def test_option_types_follow_the_field_types(tmp_path, captured):
    opts = _options()
    own = ["out", "config", "resume", "overwrite", "progress", "json_out", "nproc", "log",
           "mlflow_uri"]
    assert list(opts) == own[:3] + list(RunConfig.model_fields) + own[3:]
    assert opts["deterministic"].secondary_opts == ["--no-deterministic"]
    for name, field in RunConfig.model_fields.items():
        if name == "deterministic":
            continue
        r, _ = captured("--" + name.replace("_", "-"), "x", "--out", str(tmp_path))
        # an int or float field (optional or not) is an int or float option: "x" is refused
        numeric = bool({int, float} & {field.annotation, *typing.get_args(field.annotation)})
        refused = f"Invalid value for '--{name.replace('_', '-')}'" in r.stderr
        assert refused == numeric, (name, r.stderr)
        if numeric:
            assert r.exit_code == 2, name


def test_flags_and_lists_parse(tmp_path, captured):
    r, cfg = captured("--dataset", "digits", "--deterministic", "--out", str(tmp_path))
    assert r.exit_code == 0 and cfg.deterministic is True and cfg.classes is None
    r, _ = captured("--dataset", "digits", "--classes", "0,x", "--out", str(tmp_path))
    assert r.exit_code == 2
    assert "--classes must be comma-separated integers, got '0,x'" in r.stderr


def test_resume_refuses_field_options(tmp_path, captured):
    r, _ = captured("--resume", str(tmp_path), "--lr", "0.1", "--classes", "1,2")
    assert r.exit_code == 2 and "drop --classes, --lr" in r.stderr


def test_help_shows_brackets_and_defaults():
    _register()  # alone (-k) nothing else has registered the commands yet
    r = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "120"})
    assert r.exit_code == 0
    assert "TOML file: a [run] table of options." in r.output
    assert "--keep-checkpoints" in r.output and "(1000)" in r.output


def test_no_option_help_loses_a_bracketed_word_to_rich_markup():
    """``[run]`` in an unescaped help string is read as a style tag and vanishes from --help
    (``eoskit flow --config`` showed "a  table"); every command's help must be escaped."""
    from rich.text import Text

    _register()
    root = typer.main.get_command(app)
    stack = [root]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        for p in cmd.params:
            text = getattr(p, "help", None) or ""
            shown = Text.from_markup(text).plain
            assert shown == text.replace("\\[", "["), (cmd.name, p.name, text)


def test_one_process_trains_here_not_through_distributed(tmp_path, captured, monkeypatch):
    # the module, not the function eoskit.distributed.launch that the package exports
    launch = importlib.import_module("eoskit.distributed.launch")

    def refuse(*args, **kw):
        raise AssertionError("a one-process run went through eoskit.distributed")

    monkeypatch.setattr(launch, "train_parallel", refuse)
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    r, cfg = captured("--out", str(tmp_path / "o"), "--steps", "2")
    assert r.exit_code == 0, r.output
    assert cfg.steps == 2
