"""Give the C heap's free memory back to the system before a measurement.

On Linux, glibc serves a CPU tensor below its mmap threshold (which rises to 32 MB once
such a block is freed) from the heap, and keeps freed heap memory mapped for reuse. A
training loop's per-parameter gradients and activations leave that memory behind, so the
resident set a measurement adds to is the loop's peak plus what the heap kept: on the
124M-parameter GPT-2 of issue 22 about 0.6 model-sized vectors more at a warm measurement
than with freed memory returned (``benchmarks/results/monitor.md``). ``malloc_trim(0)``
returns every free page of every arena; the pages fault back in when they are used again.

Set ``EOSKIT_TRIM_HEAP=0`` to leave the heap alone. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import torch

_trim = None  # the C function, False where there is none


def release_free_heap(device="cpu") -> bool:
    """Before a measurement on ``device``: ``malloc_trim(0)`` where the measurement runs on
    the CPU, glibc has it and ``EOSKIT_TRIM_HEAP`` is not ``0``; True if it returned memory
    to the system. A GPU measurement's memory is not the C heap's: nothing is done."""
    global _trim
    if torch.device(device).type != "cpu" or os.environ.get("EOSKIT_TRIM_HEAP", "1") == "0":
        return False
    if _trim is None:
        _trim = _find_trim()
    return bool(_trim and _trim(0))


def _find_trim():
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):  # no libc by that name, or not glibc
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim
