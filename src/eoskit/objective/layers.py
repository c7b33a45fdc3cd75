"""Layers whose PyTorch kernels have wrong or missing higher derivatives, made exact.

PyTorch's fused normalisation kernels (``layer_norm``, ``group_norm``,
``rms_norm``, ``batch_norm``) give correct first derivatives but not correct higher ones
through every autograd path: ``torch.func.hessian`` of a LayerNorm model is
asymmetric, and fourth directional derivatives are off by tens of percent.
Fused attention on CPU has no double backward at all. Inside
:func:`exact_derivatives` those calls are routed to their composite formulas
(mean, centred variance, ``rsqrt``; softmax attention by the math backend),
whose derivatives of every order are those of elementary operations. Values
agree with the fused kernels to rounding. Batch normalisation in training
mode uses the statistics of the batch it is given (one physical chunk of the
data) and leaves the module's running statistics untouched, so measuring a
model never changes it.

Every :class:`~eoskit.objective.Objective` evaluates its terms inside this
context, so user models and user closures get it without asking, routed only as far
as the derivative it takes needs (``needs``): values, gradients and finite-difference
products run on the fused kernels. Batch normalisation's buffers then follow the
fused kernel (a training-mode call updates the running statistics it is given);
:class:`~eoskit.objective.ModelObjective` hands it copies, so the model never changes.

Example:
    >>> import torch
    >>> ln = torch.nn.LayerNorm(4).double()
    >>> x = torch.randn(3, 4, dtype=torch.float64)
    >>> with exact_derivatives():
    ...     y = ln(x)
    >>> torch.allclose(y, ln(x), atol=1e-12)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode


def _normalized_dims(x: Tensor, shape: Sequence[int] | int) -> tuple[int, ...]:
    n = 1 if isinstance(shape, int) else len(shape)
    return tuple(range(x.ndim - n, x.ndim))


def layer_norm(x: Tensor, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """``F.layer_norm`` as mean, centred (biased) variance and ``rsqrt``."""
    dims = _normalized_dims(x, normalized_shape)
    centred = x - x.mean(dim=dims, keepdim=True)
    y = centred * torch.rsqrt((centred * centred).mean(dim=dims, keepdim=True) + eps)
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


def group_norm(x: Tensor, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """``F.group_norm``: statistics over each group of channels and all positions."""
    n, c = x.shape[:2]
    grouped = x.reshape(n, num_groups, -1)  # (N, G, C/G · positions)
    centred = grouped - grouped.mean(dim=-1, keepdim=True)
    y = centred * torch.rsqrt((centred * centred).mean(dim=-1, keepdim=True) + eps)
    y = y.reshape(x.shape)
    affine = (1, c) + (1,) * (x.ndim - 2)  # per-channel weight and bias
    if weight is not None:
        y = y * weight.reshape(affine)
    return y if bias is None else y + bias.reshape(affine)


def rms_norm(x: Tensor, normalized_shape, weight=None, eps: float | None = None) -> Tensor:
    """``F.rms_norm``: ``x / sqrt(mean(x²) + ε)``; ε defaults to the dtype's epsilon, as torch."""
    dims = _normalized_dims(x, normalized_shape)
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    y = x * torch.rsqrt((x * x).mean(dim=dims, keepdim=True) + eps)
    return y if weight is None else y * weight


def batch_norm(x: Tensor, running_mean=None, running_var=None, weight=None, bias=None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """``F.batch_norm`` without side effects: in training mode the statistics of this
    batch (biased variance, as torch normalises), and the running buffers are *not*
    updated; otherwise the running statistics."""
    dims = (0,) + tuple(range(2, x.ndim))  # all but the channel dimension
    affine = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if training or running_mean is None:
        mean = x.mean(dim=dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    else:
        mean, var = running_mean.reshape(affine), running_var.reshape(affine)
    y = (x - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight.reshape(affine)
    return y if bias is None else y + bias.reshape(affine)


_COMPOSITE = {F.layer_norm: layer_norm, F.group_norm: group_norm, F.batch_norm: batch_norm}
if hasattr(F, "rms_norm"):
    _COMPOSITE[F.rms_norm] = rms_norm


class _CompositeNorms(TorchFunctionMode):
    """Intercepts the fused normalisation functions and calls their composite formulas."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        return _COMPOSITE.get(func, func)(*args, **kwargs)


NEEDS = ("grad", "double-backward", "any")


@contextmanager
def exact_derivatives(needs: str = "any"):
    """Evaluate models so that the derivatives ``needs`` names are exact.

    ``"any"`` (every order, forward mode included): fused norms and attention routed.
    ``"double-backward"`` (second order by reverse mode): attention only, since the
    fused norms' double backward is right and only fused attention has none.
    ``"grad"`` (value, gradient, finite differences of gradients): nothing, so the model
    runs on its own kernels. The routing intercepts every torch call in Python, which
    is why it is applied only where an order needs it.
    """
    if needs not in NEEDS:
        raise ValueError(f"needs must be one of {NEEDS}, got {needs!r}")
    if needs == "grad":
        yield
    elif needs == "double-backward":
        with sdpa_kernel(SDPBackend.MATH):
            yield
    else:
        with sdpa_kernel(SDPBackend.MATH), _CompositeNorms():
            yield


