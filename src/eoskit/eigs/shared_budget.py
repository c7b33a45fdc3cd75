"""How many d-long vectors a :class:`~eoskit.eigs.shared_tracker.SharedTracker` may hold,
and the basis that leaves.

A tracker's bound (``max_vectors``) covers its basis's rows and images and what it holds
beside them (:func:`held_vectors`); the basis gets the rest, at least :func:`min_rows`
rows. :func:`budget_for` sizes the bound from the vectors' bytes, as the Monitor does.

Example:
    >>> min_shared_vectors(1), default_shared_vectors(1)
    (20, 22)
    >>> budget_for(1, 5_289_472, torch.float32, quantities=2, eigenvectors=False)
    18
    >>> shared_fits(1, 5_289_472, torch.float32, quantities=2, eigenvectors=False)
    False
"""

from __future__ import annotations

import torch

from eoskit.eigs.krylov import work_dtype

# d-long temporaries allowed beside the basis: a Ritz vector and its image, a residual
# (one vector: z is formed by slices) and a product's second output (a flat objective's
# second gradient; a model's fd product sums both into its one output)
TEMPS = 4


def held_vectors(k: int, quantities: int = 2, eigenvectors: bool = True) -> int:
    """Vectors held besides rows and images: carried (T·k), results (T·k next starts and,
    with ``eigenvectors``, T·k Ritz vectors) and the temporaries."""
    return quantities * k * (3 if eigenvectors else 2) + TEMPS


def min_rows(k: int) -> int:
    # a restart keeps k + 1 per quantity and one row is added: 2k + 3 for both. One quantity
    # gets as many: with k + 2 rows the cold solve of the preconditioned sharpness of the
    # issue-22 GPT-2 stopped 3.7e-3 off (its λ_{k+1} estimate came from too small a space)
    return 2 * (k + 1) + 1


def default_shared_vectors(k: int, quantities: int = 2, eigenvectors: bool = True) -> int:
    """Default bound on a :class:`~eoskit.eigs.shared_tracker.SharedTracker`'s d-long
    vectors: a basis of 2k + 4 rows."""
    return 2 * (min_rows(k) + 1) + held_vectors(k, quantities, eigenvectors)


def min_shared_vectors(k: int, quantities: int = 2, eigenvectors: bool = True) -> int:
    """The smallest bound: a basis of 2k + 3 rows (a restart keeps k + 1 per quantity)."""
    return 2 * min_rows(k) + held_vectors(k, quantities, eigenvectors)


ALLOWANCE_BYTES = 256 * 2**20  # what a tracker may hold before its budget drops to the minimum


def budget_for(k: int, dim: int, dtype: torch.dtype, allowance: int = ALLOWANCE_BYTES,
               quantities: int = 2, eigenvectors: bool = True) -> int:
    """A budget of d-long vectors for products in ``dtype``: as many work vectors
    (:func:`~eoskit.eigs.krylov.work_dtype`) as fit ``allowance`` bytes, between
    :func:`min_shared_vectors` and a basis of ``2k + 12`` rows.

    A small basis costs products where the top of the spectrum is clustered (a 17k-parameter
    GPT-2 did not converge in 80 products with 5 rows, and did within 67 with 14), so small
    models get the large basis; at scale the minimum holds (a 5.3M-parameter float32 model
    has 21 MB vectors: 12 fit 256 MB, below the minimum: 20 for k = 1 with Ritz vectors
    kept, 18 and 16 as the Monitor sizes it for two quantities and for one).
    """
    held = held_vectors(k, quantities, eigenvectors)
    most = 2 * (2 * k + 12) + held
    return max(min_shared_vectors(k, quantities, eigenvectors),
               min(most, allowance // _vector_bytes(dim, dtype)))


def shared_fits(k: int, dim: int, dtype: torch.dtype, allowance: int | None = None,
                quantities: int = 2, eigenvectors: bool = True) -> bool:
    """Whether the smallest shared bound (:func:`min_shared_vectors`) of work vectors fits
    ``allowance`` bytes (default :data:`ALLOWANCE_BYTES`): up to about 3.7M float32
    parameters for k = 1 and two quantities without Ritz vectors (18 vectors in 256 MiB).
    Beyond it the Monitor's ``mode="auto"`` takes the :class:`~eoskit.eigs.LeanTracker`."""
    allowance = ALLOWANCE_BYTES if allowance is None else allowance
    return min_shared_vectors(k, quantities, eigenvectors) * _vector_bytes(dim, dtype) <= allowance


def _vector_bytes(dim: int, dtype: torch.dtype) -> int:
    """Bytes of one d-long work vector (:func:`~eoskit.eigs.krylov.work_dtype`) for products
    in ``dtype``."""
    return max(int(dim), 1) * torch.finfo(work_dtype(dtype)).bits // 8
