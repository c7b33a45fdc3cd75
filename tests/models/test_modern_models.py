"""Transformers, ResNets and the sequence tasks: layout, seeding, exact Hessians, a tiny run.

References are independent of eoskit's objective code: dense Hessians are
columns of plain double backward through ``torch.func.functional_call`` of a
hand-written mean loss (math-backend attention, fused norms are correct at
second order), in float64.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from eoskit import store
from eoskit.data import DATASETS, DataError, load_dataset
from eoskit.eigs import LanczosTracker
from eoskit.models import MODELS, NORMS, ModelError, build_model, count_parameters
from eoskit.models.resnet import parameter_count as resnet_parameters
from eoskit.models.transformer import parameter_count as transformer_parameters
from eoskit.objective import ModelObjective, ce_sum, mse_sum, n_correct
from eoskit.training.config import RunConfig
from eoskit.training.loop import train
from eoskit.training.run_problem import build_problem
from tests import references as R

METHODS = ["retained", "rev-rev", "fwd-rev"]
TRANSFORMERS = ["transformer", "transformer-causal"]


def _tiny_transformer(name="transformer", seed=0):
    return build_model(name, (3,), 4, width=4, depth=1, heads=2, seed=seed).double()


def _tiny_resnet(norm, seed=0):
    return build_model("resnet", (1, 4, 4), 3, width=2, depth=1, norm=norm, seed=seed).double()


def _plain_loss(model, X, Y, loss):
    """Mean loss as a function of the flat parameters, written without eoskit."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    buffers = {n: b.clone() for n, b in model.named_buffers()}

    def f(x):
        params, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            params[n] = x[i:i + s.numel()].view(s)
            i += s.numel()
        with sdpa_kernel(SDPBackend.MATH):  # fused CPU attention has no double backward
            out = functional_call(model, {**params, **{n: b.clone() for n, b in
                                                       buffers.items()}}, (X,))
        if loss == "ce":  # (N, P, V) or (N, V): mean over positions, then over samples
            per_token = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]),
                                                    Y.reshape(-1), reduction="none")
            return per_token.view(len(X), -1).mean(dim=1).mean()
        per_token = 0.5 * ((out - Y) ** 2).sum(dim=-1)
        return per_token.reshape(len(X), -1).mean(dim=1).mean()

    return f


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# ---------------------------------------------------------------- layout and seeding


def test_registry_names():
    assert {"transformer", "transformer-causal", "resnet", "resnet-relu",
            "resnet-tanh"} <= set(MODELS)
    assert NORMS == ("none", "batch", "group", "layer")
    assert {"sorting", "copying"} <= set(DATASETS)


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformer_parameter_count_and_layout(name):
    model = build_model(name, (10,), 12, width=16, depth=3, heads=4, seed=0)
    assert count_parameters(model) == transformer_parameters(12, 10, 12, 16, 3)
    d, m = 16, 64
    by_hand = 12 * d + 10 * d + 3 * (4 * d + 3 * d * d + 3 * d + d * d + d + d * m + m + m * d + d)
    assert transformer_parameters(12, 10, 12, 16, 3) == by_hand + 2 * d + d * 12 + 12
    assert sum(isinstance(m, nn.LayerNorm) for m in model.modules()) == 2 * 3 + 1
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    small = build_model(name, (10,), 12, width=16, depth=1, heads=4, mlp_ratio=2, vocab=20,
                        bias=False)
    assert count_parameters(small) == 20 * d + 10 * d + 2 * d + 4 * d * d + 2 * 2 * d * d + d \
        + d * 12


@pytest.mark.parametrize("norm", NORMS)
def test_resnet_parameter_count_and_norm_layers(norm):
    model = build_model("resnet", (3, 8, 8), 10, width=8, depth=2, norm=norm)
    assert count_parameters(model) == resnet_parameters(3, 10, 8, 2, norm)
    conv = 9 * 8 * 8 + 8
    affine = 0 if norm == "none" else 16
    assert resnet_parameters(3, 10, 8, 2, norm) == (27 * 8 + 8 + affine) + 4 * (conv + affine) \
        + 8 * 10 + 10
    kinds = {"none": (), "batch": (nn.BatchNorm2d,), "group": (nn.GroupNorm,),
             "layer": (nn.GroupNorm,)}[norm]
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    assert len(norms) == (0 if norm == "none" else 5) and all(isinstance(m, kinds) for m in norms)
    if norm in ("group", "layer"):
        assert {m.num_groups for m in norms} == {8 if norm == "group" else 1}


@pytest.mark.parametrize("name,shape,kw", [
    ("transformer", (5,), {"heads": 2}), ("transformer-causal", (5,), {"heads": 2}),
    ("resnet", (1, 8, 8), {"norm": "batch"}), ("resnet-relu", (3, 8, 8), {"norm": "group"}),
    ("resnet-tanh", (1, 8, 8), {"norm": "layer"}),
])
def test_same_seed_same_parameters_regardless_of_global_rng(name, shape, kw):
    torch.manual_seed(123)
    a = build_model(name, shape, 4, width=4, depth=2, seed=4, **kw)
    torch.rand(1000)
    state = torch.get_rng_state()
    b = build_model(name, shape, 4, width=4, depth=2, seed=4, **kw)
    assert torch.equal(torch.get_rng_state(), state)
    c = build_model(name, shape, 4, width=4, depth=2, seed=5, **kw)
    pa, pb, pc = _flat(a), _flat(b), _flat(c)
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformer_runs_on_tokens_and_masks_only_when_causal(name):
    model = build_model(name, (6,), 5, width=8, depth=2, heads=2, seed=0)
    tokens = torch.randint(0, 5, (3, 6), generator=torch.Generator().manual_seed(0))
    out = model(tokens)
    assert out.shape == (3, 6, 5) and torch.isfinite(out).all()
    torch.testing.assert_close(model(tokens.double().float()), out, rtol=0, atol=0)
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 5  # alter the last token only
    earlier = (model(changed) - out)[:, :-1].abs().max()
    assert (earlier == 0) == (name == "transformer-causal")


@pytest.mark.parametrize("norm", NORMS)
def test_resnet_runs_on_images(norm):
    model = build_model("resnet", (3, 32, 32), 10, width=4, depth=2, norm=norm)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "transformer", "input_shape": (1, 8, 8)}, r"\(P,\) token"),
    ({"name": "transformer", "width": 5, "heads": 2}, "divisible"),
    ({"name": "transformer", "heads": 0}, "heads"),
    ({"name": "resnet", "input_shape": (8,)}, r"\(C, H, W\)"),
    ({"name": "resnet", "input_shape": (1, 8, 8), "norm": "instance"}, "norm must be"),
    ({"name": "fc-tanh", "input_shape": (8,), "norm": "batch"}, "resnet option"),
    ({"name": "resnet-gelu2"}, "unknown model"),
])
def test_bad_options_raise_model_error(kwargs, match):
    args = {"input_shape": (6,), "n_outputs": 3, "width": 4} | kwargs
    with pytest.raises(ModelError, match=match):
        build_model(args.pop("name"), args.pop("input_shape"), args.pop("n_outputs"), **args)


# ---------------------------------------------------------------- exact Hessians


def _hessian_problem(kind):
    gen = torch.Generator().manual_seed(7)
    if kind in TRANSFORMERS:
        model, loss = _tiny_transformer(kind), "ce"
        X = torch.randint(0, 4, (5, 3), generator=gen)
        Y = torch.randint(0, 4, (5, 3), generator=gen)
    else:
        model, loss = _tiny_resnet(kind), "mse"
        X = torch.randn(5, 1, 4, 4, dtype=torch.float64, generator=gen)
        Y = torch.randn(5, 3, dtype=torch.float64, generator=gen)
    return model, X, Y, loss


@functools.cache
def _dense_reference(kind):
    model, X, Y, loss = _hessian_problem(kind)
    return R.dense_hessian(_plain_loss(model, X, Y, loss), _flat(model))  # (d, d)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", TRANSFORMERS + list(NORMS))
def test_hvps_match_dense_plain_hessian(kind, method):
    model, X, Y, loss = _hessian_problem(kind)
    x0, dense = _flat(model), _dense_reference(kind)
    obj = ModelObjective(model, loss, X, Y, dtype=torch.float64, hvp_method=method)
    assert obj.dim == len(x0) <= 400
    V = torch.randn(obj.dim, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with obj.at(x0) as point:
        got = point.hvp(V)  # (d, 3)
        single = point.hvp(V[:, 0])  # (d,)
    want = dense @ V
    assert float((got - want).norm() / want.norm()) < 1e-8
    assert float((single - want[:, 0]).norm() / want[:, 0].norm()) < 1e-8
    assert float((dense - dense.T).abs().max() / dense.abs().max()) < 1e-12  # a sound reference


def test_sequence_losses_average_over_positions():
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(4, 3, 5, dtype=torch.float64, generator=gen)
    labels = torch.randint(0, 5, (4, 3), generator=gen)
    per_position = [ce_sum(out[:, p], labels[:, p]) for p in range(3)]
    torch.testing.assert_close(ce_sum(out, labels), sum(per_position) / 3)
    onehot = nn.functional.one_hot(labels, 5).double()
    per_position = [mse_sum(out[:, p], onehot[:, p]) for p in range(3)]
    torch.testing.assert_close(mse_sum(out, onehot), sum(per_position) / 3)
    exact = torch.nn.functional.one_hot(labels, 5).double()
    exact[0, 1] = exact[0, 1].roll(1)  # sample 0 now has one wrong position
    assert int(n_correct(exact, labels)) == 3 == int(n_correct(exact, onehot))


# ---------------------------------------------------------------- sequence data


@pytest.mark.parametrize("name", ["sorting", "copying", "sorting-5-3", "copying-4-6"])
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_sequence_datasets_shapes_and_seeding(name, loss):
    ds = load_dataset(name, n_train=30, n_test=10, seed=3, loss=loss)
    length = {"sorting": 8, "copying": 12, "sorting-5-3": 5, "copying-4-6": 8}[name]
    vocab = {"sorting": 8, "copying": 8, "sorting-5-3": 3, "copying-4-6": 6}[name]
    assert ds.input_shape == (length,) and ds.n_outputs == vocab and ds.task == "classification"
    assert ds.x_train.shape == (30, length) and ds.x_train.dtype == torch.int64
    assert ds.labels_train.shape == (30, length) and ds.x_test.shape == (10, length)
    if loss == "ce":
        assert torch.equal(ds.y_train, ds.labels_train)
    else:
        assert ds.y_train.shape == (30, length, vocab) and ds.y_train.dtype == torch.float32
        assert torch.equal(ds.y_train.argmax(dim=-1), ds.labels_train)
    assert int(ds.x_train.max()) < vocab and int(ds.labels_train.max()) < vocab
    same = load_dataset(name, n_train=30, n_test=0, seed=3, loss=loss)
    other = load_dataset(name, n_train=30, n_test=10, seed=4, loss=loss)
    assert torch.equal(same.x_train, ds.x_train) and torch.equal(same.y_train, ds.y_train)
    assert not torch.equal(other.x_train, ds.x_train)
    moved = ds.to(dtype=torch.float64)
    assert moved.x_train.dtype == torch.int64 and moved.labels_train.dtype == torch.int64


def test_sorting_targets_are_the_sorted_inputs():
    ds = load_dataset("sorting", n_train=200, seed=0, loss="ce")
    x, y = ds.x_train, ds.labels_train
    assert (y[:, 1:] >= y[:, :-1]).all()  # sorted
    assert torch.equal(y, x.sort(dim=1).values)  # and a permutation of the input
    assert not torch.equal(x, y)


def test_copying_targets_reproduce_the_content():
    ds = load_dataset("copying-5-7", n_train=100, seed=0, loss="ce")
    x, y = ds.x_train, ds.labels_train  # (100, 10)
    blank, delimiter = 5, 6
    assert torch.equal(y[:, 5:], x[:, :5])  # the copy part
    assert (y[:, :5] == blank).all() and (x[:, 5] == delimiter).all()
    assert (x[:, 6:] == blank).all() and (x[:, :5] < blank).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "sorting", "classes": [0, 1]}, "classes must be None"),
    ({"name": "sorting-4"}, "unknown data set"),
    ({"name": "copying-4-2"}, "V >= 3"),
])
def test_sequence_dataset_errors(kwargs, match):
    with pytest.raises(DataError, match=match):
        load_dataset(kwargs.pop("name"), n_train=4, **kwargs)


# ---------------------------------------------------------------- tracking


TINY_RUN = dict(dataset="sorting", model="transformer", n_train=8, n_test=4, width=4,
                depth=1, dtype="float64", steps=2, lr=0.5, checkpoint_every=0, eval_every=1,
                neigs=2, eig_tol=1e-10)


@functools.cache
def _dense_top_at_start(loss):
    problem = build_problem(RunConfig(**TINY_RUN, loss=loss))
    data = problem.dataset
    y = data.y_train.double() if loss == "mse" else data.y_train
    plain = _plain_loss(problem.model.double(), data.x_train, y, loss)
    return torch.linalg.eigvalsh(R.dense_hessian(plain, problem.x0)).flip(0)[:2].numpy()


@pytest.mark.parametrize("loss,method", [("ce", m) for m in METHODS] + [("mse", "retained")])
def test_transformer_run_first_sharpness_is_dense_top_eigenvalue(tmp_path, loss, method):
    cfg = RunConfig(**TINY_RUN, loss=loss, hvp_method=method)
    summary = train(cfg, tmp_path, progress=False)
    assert summary["status"] == "completed"
    rows = store.read_rows(tmp_path / "metrics.csv")
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)
    top = _dense_top_at_start(loss)
    got = np.array([rows[0]["eig_1"], rows[0]["eig_2"]])
    assert np.max(np.abs(got - top) / np.abs(top)) <= 1e-8
    assert rows[0]["sharpness"] == got[0]
    assert 0.0 <= rows[0]["accuracy"] <= 1.0  # exact-match accuracy, CE and one-hot MSE alike


class UserTokens(nn.Module):
    """A user's model: nn.TransformerEncoder on embedded tokens, a per-position head."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(4, 4)
        layer = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(4, 4)

    def forward(self, x):  # ModelObjective hands over float token ids
        return self.head(self.enc(self.embed(x.long())))


def test_user_transformer_encoder_tracked_with_every_method():
    torch.manual_seed(0)
    model = UserTokens().double()
    data = load_dataset("sorting-4-4", n_train=6, seed=1, loss="ce")
    plain = _plain_loss(model, data.x_train, data.y_train, "ce")
    objs = {m: ModelObjective(model, "ce", data.x_train, data.y_train, dtype=torch.float64,
                              hvp_method=m) for m in METHODS}
    trackers = {m: LanczosTracker(1, 1e-10, 0) for m in METHODS}
    x, lr = objs["retained"].x0(), 0.5
    for _ in range(3):  # tracked GD steps, every method warm-started along the same path
        top = float(torch.linalg.eigvalsh(R.dense_hessian(plain, x))[-1])
        for method, obj in objs.items():
            with obj.at(x) as point:
                eig = trackers[method].measure(point.hvp, obj.dim, x.dtype, x.device)
                step = -lr * point.grad
            assert abs(float(eig.eigenvalues[0]) - top) <= 1e-8 * abs(top), method
        x = x + step
