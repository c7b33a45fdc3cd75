"""User components: ``--model/--dataset/--loss FILE.py:NAME`` trained by ``eoskit run``.

The references here never touch eoskit: the user's files are imported with
importlib, the model is built under ``torch.manual_seed(seed)``, its Hessian is
the dense double-backward Hessian of a plain closure (tests/references.py), and GD
is a hand-written loop over ``model.parameters()``.
"""

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

from eoskit import store
from eoskit.components import ComponentChanged, ComponentError, accepted_kwargs, import_target
from eoskit.training.config import RunConfig
from eoskit.training.run_problem import build_problem
from eoskit.training.stored_run import load_run
from tests import references as R
from tests.cli_runner import invoke

USER = Path(__file__).resolve().parents[2] / "examples" / "user"
SEED, DATA_SEED, N_TRAIN, LR, STEPS, WIDTH = 3, 5, 40, 0.2, 20, 8
ARGS = ["--model", f"{USER / 'model.py'}:ResidualNet", "--dataset", f"{USER / 'data.py'}:teacher",
        "--loss", f"{USER / 'loss.py'}:log_cosh", "--n-train", str(N_TRAIN), "--n-test", "8",
        "--width", str(WIDTH), "--depth", "1", "--seed", str(SEED), "--data-seed",
        str(DATA_SEED), "--lr", str(LR), "--steps", str(STEPS), "--dtype", "float64",
        "--sharpness-every", "1", "--eig-tol", "1e-7", "--eval-every", "5",
        "--physical-batch", "16", "--checkpoint-every", "5"]


def _module(name):
    spec = importlib.util.spec_from_file_location(f"ref_{name}", USER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reference():
    """The user's model, data and loss built by hand, in float64."""
    data = _module("data").teacher(n_train=N_TRAIN, n_test=8, seed=DATA_SEED)
    torch.manual_seed(SEED)
    model = _module("model").ResidualNet((6,), 2, width=WIDTH, depth=1).double()
    x, y = data["x_train"].double(), data["y_train"].double()
    return model, x, y, _module("loss").log_cosh



@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("user") / "run"
    r = invoke("run", *ARGS, "--out", str(out))
    assert r.exit_code == 0, r.output
    return out


def test_sharpness_at_step_0_equals_the_dense_hessian_of_the_users_model(user_run):
    model, x, y, loss_fn = _reference()
    flat0, params_of = R.flat_parameters(model)

    def loss_of(flat):
        return loss_fn(functional_call(model, params_of(flat), (x,)), y)

    # double backward: torch.func.hessian is wrong through native layer_norm in torch 2.13
    dense = torch.linalg.eigvalsh(R.dense_hessian(loss_of, flat0))
    rows = store.read_csv(user_run / "metrics.csv")
    assert abs(float(rows[0]["sharpness"]) - float(dense[-1])) <= 1e-8 * abs(float(dense[-1]))
    assert abs(float(rows[0]["loss"]) - float(loss_of(flat0))) <= 1e-12


def test_losses_along_20_steps_equal_a_plain_pytorch_gd_loop(user_run):
    model, x, y, loss_fn = _reference()
    losses = []
    for _ in range(STEPS):
        loss = loss_fn(model(x), y)
        losses.append(float(loss.detach()))
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads, strict=True):
                p -= LR * g
    rows = store.read_csv(user_run / "metrics.csv")
    assert len(rows) == STEPS
    worst = max(abs(float(r["loss"]) - ref) / ref for r, ref in zip(rows, losses, strict=True))
    assert worst <= 1e-10, worst


def test_config_json_records_each_spec_and_its_files_sha256(user_run):
    import hashlib

    recorded = store.read_json(user_run / "config.json")["components"]
    assert set(recorded) == {"model", "dataset", "loss"}
    for kind, name in (("model", "model"), ("dataset", "data"), ("loss", "loss")):
        path = USER / f"{name}.py"
        assert recorded[kind]["file"] == str(path)
        assert recorded[kind]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_run(user_run).objective.dim == sum(p.numel() for p in _reference()[0].parameters())


def _copy_user_files(tmp_path):
    for name in ("model", "data", "loss"):
        (tmp_path / f"{name}.py").write_text((USER / f"{name}.py").read_text())
    return [a.replace(str(USER), str(tmp_path)) for a in ARGS]


def test_a_changed_model_file_stops_resume_load_run_and_report_with_exit_2(tmp_path):
    args = _copy_user_files(tmp_path)
    out = tmp_path / "run"
    r = invoke("run", *[a if a != str(STEPS) else "6" for a in args], "--out", str(out))
    assert r.exit_code == 0, r.output
    store.write_json(out / "summary.json", {"status": "running", "steps": 0})  # as if killed
    model_file = tmp_path / "model.py"
    model_file.write_text(model_file.read_text() + "\n# edited\n")
    r = invoke("run", "--resume", str(out))
    assert r.exit_code == 2, r.output
    assert "model file" in r.output and "changed since the run started" in r.output
    with pytest.raises(ComponentChanged):
        load_run(out)
    r = invoke("report", str(out))
    assert r.exit_code == 2, r.output
    model_file.write_text(model_file.read_text().replace("\n# edited\n", ""))
    assert load_run(out).config.steps == 6  # restored bytes: accepted again


def test_chunking_never_changes_a_user_mean_loss():
    base = dict(model=f"{USER / 'model.py'}:ResidualNet", dataset=f"{USER / 'data.py'}:teacher",
                loss=f"{USER / 'loss.py'}:huber", n_train=30, n_test=0, width=6, depth=1,
                dtype="float64")
    whole = build_problem(RunConfig(**base, physical_batch=None)).train
    chunked = build_problem(RunConfig(**base, physical_batch=7)).train
    x = whole.x0()
    assert torch.equal(x, chunked.x0())
    assert abs(float(whole.value(x)) - float(chunked.value(x))) <= 1e-14
    v = torch.randn(whole.dim, dtype=torch.float64)
    with whole.at(x) as a, chunked.at(x) as b:
        assert torch.allclose(a.hvp(v), b.hvp(v), rtol=1e-12, atol=1e-14)


def test_class_id_datasets_give_a_user_loss_class_ids_and_builtin_mse_one_hot(tmp_path):
    (tmp_path / "d.py").write_text(
        "import torch\n"
        "def blobs(n_train):\n"
        "    g = torch.Generator().manual_seed(0)\n"
        "    return {'x_train': torch.randn(n_train, 3, generator=g),\n"
        "            'y_train': torch.arange(n_train) % 3}\n")
    spec = f"{tmp_path / 'd.py'}:blobs"
    common = dict(dataset=spec, n_train=12, n_test=0, width=4, depth=1, dtype="float64")
    mse = build_problem(RunConfig(**common))
    assert mse.dataset.n_outputs == 3 and mse.train.targets.shape == (12, 3)
    assert mse.dataset.preprocessing.startswith("none")
    user = build_problem(RunConfig(**common, loss=f"{USER / 'loss.py'}:one_hot_mse"))
    assert user.train.targets.dtype == torch.int64 and user.train.count_correct
    # nn.MSELoss averages over the 3 outputs too; the built-in mse is ½·sum over outputs
    x = mse.train.x0()
    assert float(mse.train.value(x)) == pytest.approx(1.5 * float(user.train.value(x)), rel=1e-12)


def test_accepted_kwargs_and_module_specs():
    def builder(input_shape, n_outputs, *, seed): ...
    offered = dict(input_shape=(3,), n_outputs=2, width=8, depth=1, seed=4)
    assert accepted_kwargs(builder, offered) == dict(input_shape=(3,), n_outputs=2, seed=4)
    assert accepted_kwargs(lambda **kw: None, offered) == offered
    imported = import_target("json:dumps")  # a package: its __init__.py is hashed
    assert imported.file is not None and imported.file.name == "__init__.py"
    assert len(imported.sha256) == 64


@pytest.mark.parametrize("change, message", [
    (("--model", "nope.py:Net"), "model file not found: "),
    (("--model", "json:dumps"), "json:dumps(input_shape, n_outputs, width, depth, seed) raised"),
    (("--model", "collections:OrderedDict"), "not a torch.nn.Module"),
    (("--loss", "torch:sub"), "must return the mean loss"),
    (("--loss", "torch:sum"), "with loss torch:sum failed on two training samples: TypeError"),
    (("--dataset", "builtins:dict"), "no 'x_train'"),
    (("--model", "model.py:Missing"), "has no attribute 'Missing'"),
    (("--model", "model.py:1x"), "is not a Python name"),
    (("--classes", "0,1"), "classes: a user dataset is used as it is"),
])
def test_bad_components_are_one_message_and_exit_2(tmp_path, change, message):
    args = _copy_user_files(tmp_path)
    flag, value = change
    value = str(tmp_path / value) if value.startswith("model.py") else value
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    r = invoke("run", *args, "--steps", "2", "--out", str(tmp_path / "run"))
    assert r.exit_code == 2, r.output
    assert message in r.output, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_a_dataset_with_unknown_keys_or_a_wrong_count_is_refused(tmp_path):
    (tmp_path / "d.py").write_text(
        "import torch\n"
        "def typo(n_train):\n"
        "    return {'x_train': torch.zeros(n_train, 2), 'y_train': torch.zeros(n_train, 1),\n"
        "            'x_tst': torch.zeros(3, 2)}\n"
        "def short(n_train):\n"
        "    n = n_train - 1\n"
        "    return {'x_train': torch.zeros(n, 2), 'y_train': torch.zeros(n)}\n")
    for name, message in (("typo", "unknown keys ['x_tst']"), ("short", "asked for n_train=5")):
        with pytest.raises(ComponentError, match=re_escape(message)):
            build_problem(RunConfig(dataset=f"{tmp_path / 'd.py'}:{name}", n_train=5, n_test=0))


def re_escape(text):
    import re

    return re.escape(text)


def test_a_module_spec_is_imported_from_the_current_folder_and_hashed(tmp_path, monkeypatch):
    import hashlib
    import sys

    (tmp_path / "my_components_pkg").mkdir()
    source = "def loss(out, y):\n    return ((out - y) ** 2).mean()\n"
    (tmp_path / "my_components_pkg" / "losses.py").write_text(source)
    (tmp_path / "my_components_pkg" / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    imported = import_target("my_components_pkg.losses:loss")
    assert imported.sha256 == hashlib.sha256(source.encode()).hexdigest()
    assert imported.file == tmp_path / "my_components_pkg" / "losses.py"


def test_flow_resume_refuses_a_changed_objective_file(tmp_path):
    src = tmp_path / "loss.py"
    src.write_text("def loss(x):\n    return ((x[0] ** 2 - 1) ** 2 / 4 + x[1] ** 2 / 2)\n")
    out = tmp_path / "flow"
    r = invoke("flow", "--objective", f"{src}:loss", "--x0", "1.3,0.5", "--lr", "0.9", "--steps",
             "6", "--every", "2", "--substeps", "1", "--neigs", "1", "--window", "3",
             "--flows", "gradient", "--out", str(out))
    assert r.exit_code == 0, r.output
    recorded = store.read_json(out / "flow_config.json")["source"]["components"]
    assert recorded["objective"]["file"] == str(src)
    src.write_text(src.read_text() + "# edited\n")
    r = invoke("flow", "--resume", str(out))
    assert r.exit_code == 2 and "objective file" in r.output, r.output
