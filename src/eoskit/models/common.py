"""What every model builder shares: the error type, the activations and the option checks."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
}


class ModelError(ValueError):
    """Unknown model name or invalid model options."""


def positive_int(label: str, value: object) -> int:
    """``value`` if it is a positive int (not a bool), else a :class:`ModelError`.

    >>> positive_int("width", 3)
    3
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ModelError(f"{label} must be a positive integer, got {value!r}")
    return value


def check_options(input_shape, n_outputs, width, depth) -> tuple[int, ...]:
    """The input shape as a tuple of positive ints; every size option a positive int."""
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise ModelError(f"input_shape must be a tuple of ints, got {input_shape!r}") from None
    if not shape or min(shape) <= 0:
        raise ModelError(f"input_shape must be positive sizes, got {input_shape!r}")
    for label, value in (("n_outputs", n_outputs), ("width", width), ("depth", depth)):
        positive_int(label, value)
    return shape
