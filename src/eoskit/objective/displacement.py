"""A point displaced in place and given back bit for bit, with no copy of it kept.

The ``fd`` product evaluates gradients at ``x ± h v̂``. Formed in ``x``'s own storage (a
model's parameters) it needs no d-long vector for the point, provided ``x`` comes back
exactly: the Monitor's loop must go on from the very bits it left.

:func:`displace` writes ``x ← fl(x + δ)`` with ``δ = fl(a·v)``; :func:`undo` writes
``x ← fl(x − δ)`` with the same ``δ``. Rounding makes the undo exact in nearly every
coordinate, not all: where the sum crossed a power of two, where it was a tie, or where
``|δ| > |x|``, ``fl(fl(x + δ) − δ)`` can differ from ``x`` (in its last bit, by more where
``|δ| > |x|``, or in the sign of a zero). So before writing a slice, :func:`displace`
computes the undo it will do, compares it with ``x`` bit for bit, and records the
coordinates that would not come back and their values; :func:`undo` writes them after the
subtraction. Both sides compute ``δ`` and the subtraction with the same elementwise
kernels, which are deterministic. On the
bench's 5.3M-parameter GPT-2 after 20 AdamW steps (``benchmarks/fd_displacement.py``) the
record held 1325 and 1263 coordinates (2.5 in 10⁴); a slice whose record would exceed a
quarter of it is kept whole, so the record never exceeds one copy of ``x``. The price is
a few passes over ``x``: about 30 ms to displace and undo there, twice per product of
0.55–0.64 s.

Example:
    >>> x = torch.tensor([1.0, -0.0, 0.3, 2.0 ** -126])
    >>> v = torch.tensor([1e-8, 1e-3, -0.1, 1.0])
    >>> before = x.clone()
    >>> record = displace([x], [v], 1.0)
    >>> bool(torch.equal(x, before + v)), undo([x], [v], 1.0, record)
    (True, None)
    >>> bool(torch.equal(x.view(torch.int32), before.view(torch.int32)))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

# temporaries are three slices, never d-long; at 1 MB of float32 a slice's ops run long
# enough that their dispatch no longer shows (gpt-small: 29–30 ms to displace and undo,
# 34–36 ms at a quarter of it; benchmarks/displacement_slices.py)
SLICE = 1 << 18
_BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}

Record = list[tuple[int, int, Tensor | None, Tensor]]  # (tensor, offset, where, values)


def _slices(tensors: Sequence[Tensor], directions: Sequence[Tensor]):
    """(tensor index, offset, slice of the tensor, slice of its direction), all checked
    before anything is written."""
    pairs = list(zip(tensors, directions, strict=False))
    if len(tensors) != len(directions) or any(
            t.shape != v.shape or not t.is_contiguous() for t, v in pairs):
        raise ValueError("displace needs contiguous tensors and directions of their shapes")
    out = []
    for i, (t, v) in enumerate(zip(tensors, directions, strict=True)):
        flat, vflat = t.detach().view(-1), v.detach().reshape(-1)
        out += [(i, lo, flat[lo:lo + SLICE], vflat[lo:lo + SLICE])
                for lo in range(0, flat.numel(), SLICE)]
    return out


def _step(v: Tensor, alpha: float, out: Tensor) -> Tensor:
    # δ: one rounding in the point's dtype (a product, then a sum: no fused multiply-add,
    # so displace and undo get the same bits whatever path the kernel takes)
    return torch.mul(v, alpha, out=out) if v.dtype == out.dtype else out.copy_(v).mul_(alpha)


@torch.no_grad()
def displace(tensors: Sequence[Tensor], directions: Sequence[Tensor], alpha: float) -> Record:
    """``t ← fl(t + fl(alpha·v))`` for each tensor and its direction, in place; returns the
    record :func:`undo` needs to give every bit back. Interrupted, it gives back what it
    had moved before raising."""
    slices, record, done = _slices(tensors, directions), [], 0
    d, moved, off = _buffer(slices), _buffer(slices), _buffer(slices, torch.bool)
    try:
        for i, lo, x, v in slices:
            n = x.numel()
            _step(v, alpha, d[:n])
            torch.add(x, d[:n], out=moved[:n])
            torch.sub(moved[:n], d[:n], out=d[:n])  # what undo will compute
            bits = _BITS[x.element_size()]
            torch.ne(d[:n].view(bits), x.view(bits), out=off[:n])
            if off[:n].any():
                where = off[:n].nonzero().squeeze(1)
                record.append((i, lo, None, x.clone()) if where.numel() > n // 4 else
                              (i, lo, where.to(torch.int32), x[where]))
            x.copy_(moved[:n])
            done += 1
    except BaseException:
        _give_back(tensors, slices[:done], alpha, record)
        raise
    return record


@torch.no_grad()
def undo(tensors: Sequence[Tensor], directions: Sequence[Tensor], alpha: float,
         record: Record) -> None:
    """Give back what :func:`displace` ``(tensors, directions, alpha)`` moved, bit for bit."""
    _give_back(tensors, _slices(tensors, directions), alpha, record)


def _buffer(slices, dtype: torch.dtype | None = None) -> Tensor:
    """One slice-long buffer (the slices' dtype unless given), reused by every slice: no
    allocation per slice."""
    if not slices:
        return torch.empty(0)
    x = slices[0][2]
    n = max(s[2].numel() for s in slices)
    return torch.empty(n, dtype=dtype or x.dtype, device=x.device)


def _give_back(tensors, slices, alpha: float, record: Record) -> None:
    d = _buffer(slices)
    for _, _, x, v in slices:
        x.sub_(_step(v, alpha, d[:x.numel()]))
    for i, lo, where, values in record:
        x = tensors[i].detach().view(-1)[lo:lo + SLICE]
        if where is None:
            x.copy_(values)
        else:
            x[where.long()] = values
