"""The fixed measurement set of a :class:`~eoskit.monitor.Monitor`.

``data`` is ``(inputs, targets)`` (tensors, or a tuple/dict of input tensors
and a target tensor), a dict of tensors (a Hugging Face batch: the model
computes its own loss, targets are None), or an iterable of such batches (a
``DataLoader``), which is read once, in order, and concatenated. ``probe_size``
keeps a seeded random subset of that many samples (drawn with a private
generator, in the original order), so the measured objective is the same at
every step; from a ``DataLoader`` the subset is drawn over its dataset, so a
shuffled loader measures the same samples as an unshuffled one.

Example:
    >>> import torch
    >>> X, Y = torch.arange(10.0)[:, None], torch.arange(10)
    >>> inputs, targets = measurement_set((X, Y), probe_size=4, seed=0)
    >>> inputs.shape, bool((targets[1:] > targets[:-1]).all())
    (torch.Size([4, 1]), True)
"""

from __future__ import annotations

import torch
from torch import Tensor

from eoskit.objective.model import n_samples, pick, take


def _split(batch) -> tuple[object, object]:
    """A batch as (inputs, targets): ``(x, y)``, ``[x, y]`` or a dict (targets None)."""
    if isinstance(batch, dict):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, Tensor):
        return batch, None
    raise TypeError("data must be (inputs, targets), a dict of tensors, or an iterable of "
                    f"those (a DataLoader); got a batch of type {type(batch).__name__}")


def _cat(parts: list):
    first = parts[0]
    if first is None:
        return None
    if isinstance(first, dict):
        return {k: _cat([p[k] for p in parts]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(_cat([p[i] for p in parts]) for i in range(len(first)))
    return torch.cat([p.detach() for p in parts])


def _is_batch(data) -> bool:
    if isinstance(data, (dict, Tensor)):
        return True
    return isinstance(data, tuple) and len(data) == 2 and not _looks_like_batches(data)


def _looks_like_batches(data: tuple) -> bool:
    # a tuple of two (x, y) pairs is a list of batches, a tuple of two tensors is one batch
    return all(isinstance(b, (tuple, list, dict)) for b in data) and not isinstance(data[0], dict)


def _probe_of_loader(loader, probe_size: int, seed: int) -> tuple[object, object] | None:
    """A DataLoader's probe drawn over its *dataset* (indices of a seeded generator, in
    index order), so a shuffled loader's order never changes which samples are measured;
    None for a loader without an indexable dataset (then its batches are read)."""
    dataset = getattr(loader, "dataset", None)
    collate = getattr(loader, "collate_fn", None)
    if collate is None or not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        return None
    n = len(dataset)
    if probe_size >= n:
        return None
    index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:probe_size]
    return _split(collate([dataset[int(i)] for i in index.sort().values]))


def measurement_set(data, probe_size: int | None = None, seed: int = 0) -> tuple[object, object]:
    """``(inputs, targets)`` of the fixed measurement set (targets may be None)."""
    if probe_size is not None and not _is_batch(data):
        probe = _probe_of_loader(data, probe_size, seed)
        if probe is not None:
            return probe
    if _is_batch(data):
        inputs, targets = _split(data)
    else:
        pairs = [_split(b) for b in data]
        if not pairs:
            raise ValueError("the data loader yielded no batches")
        inputs, targets = _cat([p[0] for p in pairs]), _cat([p[1] for p in pairs])
    n = n_samples(inputs)
    if probe_size is not None and probe_size < n:
        gen = torch.Generator().manual_seed(seed)
        index = torch.randperm(n, generator=gen)[:probe_size].sort().values
        return pick(inputs, index), pick(targets, index)
    return take(inputs, 0, n), take(targets, 0, n)
