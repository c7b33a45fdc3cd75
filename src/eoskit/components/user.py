"""A user's model, data set and loss, each built from an import spec.

* model: ``NAME(**kw)`` returns an ``nn.Module``; ``kw`` are those of
  ``input_shape``, ``n_outputs``, ``width``, ``depth``, ``seed`` that the
  signature accepts (all of them for ``**kwargs``), called after
  ``torch.manual_seed(seed)`` inside a forked RNG, so the global stream is untouched.
* data set: ``NAME(**kw)`` returns a mapping with ``x_train``, ``y_train`` and
  optionally ``x_test``, ``y_test`` (tensors or arrays); ``kw`` are those of
  ``n_train``, ``n_test``, ``seed`` it accepts. Integer ``y`` are class ids,
  floating ``y`` regression targets. eoskit never subsets, rescales or
  reorders user data; it only encodes integer targets for a built-in loss
  (one-hot for ``mse``), as it does its own data sets'.
* loss: ``NAME(output, target)`` returns the *mean* loss over the samples it is
  given (``torch.nn.functional``'s ``reduction='mean'``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from eoskit.components.imports import ComponentError, Imported, import_target
from eoskit.data import Dataset

DATASET_KEYS = ("x_train", "y_train", "x_test", "y_test")


def accepted_kwargs(fn: Callable, offered: dict) -> dict:
    """The entries of ``offered`` that ``fn``'s signature takes by keyword.

    >>> def f(width, seed=0): ...
    >>> accepted_kwargs(f, {"width": 8, "depth": 2, "seed": 1})
    {'width': 8, 'seed': 1}
    """
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: offer nothing
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return dict(offered)
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in offered.items() if k in names}


def _call(imported: Imported, what: str, kwargs: dict):
    if not callable(imported.target):
        raise ComponentError(f"{what} {imported.spec} is not callable")
    try:
        return imported.target(**kwargs)
    except Exception as err:  # noqa: BLE001 - user code: one message, no traceback
        raise ComponentError(f"{what} {imported.spec}({', '.join(kwargs)}) raised "
                             f"{type(err).__name__}: {err}") from err


def user_model(spec: str, input_shape: tuple[int, ...], n_outputs: int, *, width: int,
               depth: int, seed: int) -> tuple[nn.Module, Imported]:
    """The user's network for inputs of ``input_shape`` (without the batch dimension)."""
    imported = import_target(spec, "model")
    offered = dict(input_shape=tuple(input_shape), n_outputs=int(n_outputs), width=width,
                   depth=depth, seed=seed)
    kwargs = accepted_kwargs(imported.target, offered) if callable(imported.target) else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _call(imported, "model", kwargs)
    if not isinstance(model, nn.Module):
        raise ComponentError(f"model {spec} returned {type(model).__name__}, not a torch.nn.Module")
    if not any(p.requires_grad for p in model.parameters()):
        raise ComponentError(f"model {spec} has no trainable parameters")
    return model, imported


def _tensor(value, key: str, spec: str) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.number):
        return torch.as_tensor(value)
    raise ComponentError(f"dataset {spec}: {key} is {type(value).__name__}, not a tensor "
                         "or numeric array")


def _split(raw: Mapping, spec: str) -> dict[str, Tensor]:
    if not isinstance(raw, Mapping):
        raise ComponentError(f"dataset {spec} returned {type(raw).__name__}, not a mapping "
                             f"with keys {', '.join(DATASET_KEYS)}")
    unknown = sorted(set(raw) - set(DATASET_KEYS))
    if unknown:  # a typo (x_tst) must not silently drop the test set
        raise ComponentError(f"dataset {spec}: unknown keys {unknown}; the keys are "
                             f"{', '.join(DATASET_KEYS)}")
    for need in ("x_train", "y_train"):
        if need not in raw:
            raise ComponentError(f"dataset {spec}: no {need!r}")
    if ("x_test" in raw) != ("y_test" in raw):
        raise ComponentError(f"dataset {spec}: give both x_test and y_test, or neither")
    parts = {k: _tensor(raw[k], k, spec) for k in DATASET_KEYS if k in raw}
    if "x_test" not in parts:
        parts["x_test"], parts["y_test"] = parts["x_train"][:0], parts["y_train"][:0]
    for split in ("train", "test"):
        x, y = parts[f"x_{split}"], parts[f"y_{split}"]
        if len(x) != len(y):
            raise ComponentError(f"dataset {spec}: x_{split} has {len(x)} samples but "
                                 f"y_{split} has {len(y)}")
        if tuple(x.shape[1:]) != tuple(parts["x_train"].shape[1:]):
            raise ComponentError(f"dataset {spec}: x_test's sample shape "
                                 f"{tuple(x.shape[1:])} differs from x_train's")
        for name, t in ((f"x_{split}", x), (f"y_{split}", y)):
            if t.is_floating_point() and not bool(t.isfinite().all()):  # not a divergence
                raise ComponentError(f"dataset {spec}: {name} holds NaN or infinite values")
        if y.is_floating_point() != parts["y_train"].is_floating_point():
            raise ComponentError(f"dataset {spec}: y_train and y_test must both be integer "
                                 "class ids or both floating targets")
    if len(parts["x_train"]) == 0:
        raise ComponentError(f"dataset {spec}: x_train is empty")
    return parts


def _targets(y: Tensor, n_classes: int, loss: str) -> Tensor:
    """The loss's targets: one-hot for the built-in ``mse`` on class ids, else as given."""
    if y.is_floating_point():
        return y.unsqueeze(1) if loss == "mse" and y.ndim == 1 else y
    if loss == "mse":
        return nn.functional.one_hot(y.long(), n_classes).float()
    return y.long()


def user_dataset(spec: str, *, n_train: int, n_test: int, seed: int,
                 loss: str) -> tuple[Dataset, Imported]:
    """The user's data as a :class:`~eoskit.data.Dataset` (``loss`` picks the target encoding)."""
    imported = import_target(spec, "dataset")
    offered = dict(n_train=n_train, n_test=n_test, seed=seed)
    kwargs = accepted_kwargs(imported.target, offered) if callable(imported.target) else {}
    parts = _split(_call(imported, "dataset", kwargs), spec)
    for key, asked in (("x_train", n_train), ("x_test", n_test)):
        name = "n_" + key[2:]
        if name in kwargs and len(parts[key]) != asked:
            raise ComponentError(f"dataset {spec}: asked for {name}={asked}, it returned "
                                 f"{len(parts[key])} samples")
    y_train, y_test = parts["y_train"], parts["y_test"]
    classification = not y_train.is_floating_point()
    if classification:
        lowest = min(int(y.min()) for y in (y_train, y_test) if len(y))
        if lowest < 0:
            raise ComponentError(f"dataset {spec}: class ids must be ≥ 0 (found {lowest})")
        n_outputs = 1 + max(int(y.max()) for y in (y_train, y_test) if len(y))
    else:
        if loss == "ce":
            raise ComponentError(f"loss 'ce' needs integer class ids; dataset {spec} has "
                                 "floating targets")
        n_outputs = int(y_train.shape[-1]) if y_train.ndim >= 2 else 1
    data = Dataset(
        name=spec,
        x_train=parts["x_train"], y_train=_targets(y_train, n_outputs, loss),
        x_test=parts["x_test"], y_test=_targets(y_test, n_outputs, loss),
        labels_train=y_train.long() if classification else None,
        labels_test=y_test.long() if classification else None,
        input_shape=tuple(parts["x_train"].shape[1:]), n_outputs=n_outputs,
        task="classification" if classification else "regression",
        classes=None, preprocessing="none (user data set)",
    )
    return data, imported


def user_loss(spec: str) -> tuple[Callable[[Tensor, Tensor], Tensor], Imported]:
    """The user's mean loss ``fn(output, target)``."""
    imported = import_target(spec, "loss")
    if not callable(imported.target):
        raise ComponentError(f"loss {spec} is not callable")
    return imported.target, imported
