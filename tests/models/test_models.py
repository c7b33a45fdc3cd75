"""Tests for eoskit.models: shapes, seeded init, parameter counts and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from eoskit.models import MODELS, ModelError, build_model, count_parameters

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
# fc and cnn models: (n, *shape) images -> (n, outputs); the rest in test_modern_models.py
IMAGE_MODELS = [m for m in MODELS if m.startswith(("fc-", "cnn-"))]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_model_maps_inputs_to_outputs(name, shape):
    model = build_model(name, shape, 7, width=8)
    out = model(torch.randn(5, *shape))
    assert out.shape == (5, 7) and torch.isfinite(out).all()


def test_models_tuple():
    assert set(MODELS) == {
        "fc-tanh",
        "fc-relu",
        "fc-elu",
        "fc-gelu",
        "fc-softplus",
        "cnn-relu",
        "cnn-tanh",
        "transformer",
        "transformer-causal",
        "resnet",
        "resnet-relu",
        "resnet-tanh",
    }


def test_fc_accepts_flat_inputs_and_works_in_float64():
    model = build_model("fc-softplus", (20,), 1, width=16).double()
    assert model(torch.randn(3, 20, dtype=torch.float64)).dtype == torch.float64


def test_fc_tanh_mnist_parameter_count_and_layout():
    model = build_model("fc-tanh", (1, 28, 28), 10, width=150, depth=2)
    expected = 784 * 150 + 150 + 150 * 150 + 150 + 150 * 10 + 10
    assert count_parameters(model) == expected
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 150), (150, 150), (150, 10)]
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 2


def test_depth_and_bias_options():
    model = build_model("fc-relu", (4,), 3, width=5, depth=3, bias=False)
    assert count_parameters(model) == 4 * 5 + 5 * 5 + 5 * 5 + 5 * 3
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Linear))


def test_cnn_parameter_count():
    model = build_model("cnn-tanh", (3, 32, 32), 10, width=16)
    conv = (3 * 9 * 16 + 16) + (16 * 9 * 16 + 16)
    assert count_parameters(model) == conv + 16 * 8 * 8 * 10 + 10
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_same_seed_same_parameters_regardless_of_global_rng(name):
    torch.manual_seed(123)
    a = build_model(name, (1, 8, 8), 3, width=6, seed=4)
    torch.rand(1000)  # move the global RNG on; init must not depend on it
    state = torch.get_rng_state()
    b = build_model(name, (1, 8, 8), 3, width=6, seed=4)
    assert torch.equal(torch.get_rng_state(), state)  # global RNG left untouched
    c = build_model(name, (1, 8, 8), 3, width=6, seed=5)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)


@pytest.mark.parametrize("name", ["fc-gelu", "cnn-relu"])
def test_no_buffers_and_functional_call_matches(name):
    model = build_model(name, (1, 8, 8), 4, width=6, seed=0)
    assert list(model.buffers()) == []
    other = build_model(name, (1, 8, 8), 4, width=6, seed=1)
    x = torch.randn(3, 1, 8, 8)
    swapped = functional_call(model, dict(other.named_parameters()), (x,))
    torch.testing.assert_close(swapped, other(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "resnet-50"}, "unknown model.*fc-tanh"),
        ({"name": "fc-sigmoid"}, "unknown model"),
        ({"name": "fc-tanh", "width": 0}, "width"),
        ({"name": "fc-tanh", "depth": 0}, "depth"),
        ({"name": "fc-tanh", "depth": -1}, "depth"),
        ({"name": "fc-tanh", "width": 2.5}, "width"),
        ({"name": "fc-tanh", "n_outputs": 0}, "n_outputs"),
        ({"name": "cnn-relu", "input_shape": (64,)}, r"\(C, H, W\)"),
        ({"name": "cnn-relu", "depth": 4}, "too small"),
        ({"name": "fc-tanh", "input_shape": (0, 8)}, "input_shape"),
        ({"name": "fc-tanh", "input_shape": 5}, "input_shape"),
    ],
)
def test_bad_options_raise_model_error(kwargs, match):
    args = {"name": "fc-tanh", "input_shape": (1, 8, 8), "n_outputs": 3} | kwargs
    with pytest.raises(ModelError, match=match):
        build_model(args.pop("name"), args.pop("input_shape"), args.pop("n_outputs"), **args)
    assert issubclass(ModelError, ValueError)
