"""What a tracker reports holds only its k eigenvectors (``tracker.compact``).

Reference: the storage sizes themselves (a view into the solver's Ritz block keeps the
whole block alive; a copy holds k·d elements).
"""

from __future__ import annotations

import numpy as np
import torch

from eoskit.eigs.krylov import EigResult
from eoskit.eigs.tracker import compact


def _result(vectors):
    return EigResult(np.array([2.0]), vectors, np.array([0.0]), 1, True)


def test_a_view_into_the_ritz_block_is_copied_and_its_own_vectors_are_not():
    block = torch.randn(50, 3)
    viewed = compact(_result(block[:, :1]))
    assert viewed.eigenvectors.untyped_storage().nbytes() == 50 * 4  # the block is not held
    assert torch.equal(viewed.eigenvectors, block[:, :1])
    own = torch.randn(1, 50).T  # formed anew, e.g. (S.T @ top.T).T
    assert compact(_result(own)).eigenvectors is own  # no second copy
