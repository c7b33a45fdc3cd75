"""Thread-pool hygiene.

NumPy/SciPy's OpenBLAS and torch each start one thread per core. Around torch
HVPs, a scipy solve then fights torch for the cores (2.6-3.5x slower on two
cores), so eoskit limits BLAS to one thread the first time a solver runs.
Set ``EOSKIT_BLAS_THREADS`` to choose another count (0 leaves BLAS alone).
"""

from __future__ import annotations

import os

_limiter = None


def limit_blas_threads() -> None:
    """Limit numpy/scipy BLAS to ``EOSKIT_BLAS_THREADS`` (default 1) threads, once."""
    global _limiter
    if _limiter is not None:
        return
    n = int(os.environ.get("EOSKIT_BLAS_THREADS", "1"))
    if n <= 0:
        _limiter = False
        return
    from threadpoolctl import threadpool_limits

    _limiter = threadpool_limits(limits=n, user_api="blas")
