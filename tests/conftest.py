import pytest
import torch

from eoskit.models import build_model
from eoskit.objective import ModelObjective


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_objective(model="fc-tanh", loss="mse", n=20, shape=(1, 4, 4), outputs=3, width=6,
                   depth=2, target_scale=1.0, seed=1, **kw) -> ModelObjective:
    """A small float64 network objective on random data, for dense-Hessian checks."""
    gen = torch.Generator().manual_seed(seed)
    net = build_model(model, shape, outputs, width=width, depth=depth, seed=seed)
    X = torch.randn(n, *shape, dtype=torch.float64, generator=gen)
    if loss == "mse":
        Y = torch.randn(n, outputs, dtype=torch.float64, generator=gen) * target_scale
    else:
        Y = torch.randint(0, outputs, (n,), generator=gen)
    return ModelObjective(net, loss, X, Y, dtype=torch.float64, **kw)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped without one); "
                            "benchmarks/device_check.sh runs these")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
