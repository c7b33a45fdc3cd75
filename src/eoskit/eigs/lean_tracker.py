"""Raw and preconditioned sharpness along a trajectory in a few d-long vectors.

:class:`LeanTracker` measures the top-k eigenvalues of ``H`` and, given an optimiser's
diagonal preconditioner ``p``, of ``P^{-1/2} H P^{-1/2}``, one after the other, each by a
thick-restart Lanczos search that keeps rows and no images
(:class:`~eoskit.eigs.thick_lanczos.ThickLanczos`): a search of m rows holds ``m + 1``
d-long vectors where the :class:`~eoskit.eigs.shared_tracker.SharedTracker`'s basis holds
``2m``. The price is that a product serves one quantity, not both.

A warm measurement starts each quantity from its last top vectors, advanced by one free
power step (the sum of them for k > 1: Lanczos from one vector); a cold one (the first, or
after a warm search that did not converge within ``max_matvecs``) from a random vector.
A full search restarts keeping its top k + 1 Ritz vectors. The stopping rules
and the carried λ_{k+1} estimate are the shared tracker's
(:mod:`~eoskit.eigs.warm_stopping`); every ``restart_every`` measurements a cold probe runs
as well and replaces a quantity's values when its top-k sum is larger.

``max_warm_products`` caps a warm measurement's products, as the shared tracker's does: its
searches stop there, without a cold one after them, and report what they reached with their
error estimates (``converged`` False where the estimate exceeds ``tol``). Each quantity has
its own search, so the cap is split: a quantity gets what the quantities before it left over,
shared evenly with those after it (cap 4: 2 raw, then 2 to 3 preconditioned), and must be at
least the number of quantities.

Memory: ``max_vectors`` bounds the d-long vectors the tracker holds while a product runs
(the product's output included, the objective's point not): the other quantity's starts
(and Ritz vectors, with ``eigenvectors``), the rows and the output. The default
(:func:`default_lean_vectors`) gives ``k + 2`` rows, the fewest that keep ``k + 1`` Ritz
vectors and add one; a cold search gets no more (the other quantity's room stays free, so
the first measurement keeps the bound too). Carried starts are kept in :func:`carry_dtype` (bfloat16
below float64) and counted whole, so below float64 the bound is an over-count by half a
vector per carried start: for k = 1 and two quantities a warm measurement holds 4.5
float32 vectors' worth where the bound says 5.

Example:
    >>> H = torch.diag(torch.linspace(0.0, 5.0, 30, dtype=torch.float64))
    >>> p = torch.linspace(1.0, 2.0, 30, dtype=torch.float64)
    >>> tr = LeanTracker(1, 1e-8)
    >>> out = tr.measure(lambda v: H @ v, 30, torch.float64, "cpu", p)
    >>> round(float(out["raw"].eigenvalues[0]), 6), round(float(out["pre"].eigenvalues[0]), 6)
    (5.0, 2.5)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from eoskit._threads import limit_blas_threads
from eoskit.eigs.krylov import EigResult, work_dtype
from eoskit.eigs.shared_basis import scale_by
from eoskit.eigs.thick_lanczos import ThickLanczos
from eoskit.eigs.warm_stopping import moved, stop_ratios, upper_estimate
from eoskit.eigs.warm_tracker import WarmTracker, block


def carry_dtype(work: torch.dtype) -> torch.dtype:
    """The dtype a float search's carried starts are kept in: bfloat16 below float64, else
    the search's own. A start only steers the next search (its products are taken of rows
    in the work dtype): bfloat16's rounding turns it by about 2e-3 rad, against the 0.06–1.3
    rad the top vector moves between measurements (``benchmarks/start_spaces.py``), and it
    halves the vectors kept between measurements and beside the other quantity's search."""
    return work if work == torch.float64 else torch.bfloat16


def held_lean_vectors(k: int, quantities: int = 2, eigenvectors: bool = True) -> int:
    """d-long vectors held beside one quantity's search: the other's starts (k) and, with
    ``eigenvectors``, its Ritz vectors (k)."""
    return (quantities - 1) * k * (2 if eigenvectors else 1)


def default_lean_vectors(k: int, quantities: int = 2, eigenvectors: bool = True) -> int:
    """The default (and smallest) bound: what is held beside a search, ``k + 2`` rows and a
    product's output. For k = 1, two quantities and no Ritz vectors kept (the Monitor): 5."""
    return held_lean_vectors(k, quantities, eigenvectors) + (k + 2) + 1


@dataclass
class LeanTracker(WarmTracker):
    """Top-k of the raw and the preconditioned Hessian, warm-started, rows only."""

    def __post_init__(self):
        self.check_options()
        least = default_lean_vectors(self.k, self.quantities, self.eigenvectors)
        if self.max_vectors is None:
            self.max_vectors = least
        if self.max_vectors < least:
            raise ValueError(f"max_vectors must be at least {least} for k = {self.k} and "
                             f"{self.quantities} quantities, got {self.max_vectors}")
        if self.max_warm_products is not None and self.max_warm_products < self.quantities:
            raise ValueError(f"max_warm_products must be at least {self.quantities} for "
                             f"{self.quantities} quantities (each search takes products of "
                             f"its own), got {self.max_warm_products}")

    def measure(self, hvp, dim: int, dtype, device, p: Tensor | None = None,
                raw: bool = True) -> dict[str, EigResult]:
        """Top-k pairs of ``H`` (``"raw"``) and, with ``p`` (d,), of ``P^{-1/2}HP^{-1/2}``
        (``"pre"``). Each result's ``n_matvecs`` is the measurement's total. ``raw=False``
        (needs ``p``): the preconditioned operator alone."""
        limit_blas_threads()
        p, targets = self.targets_for(p, raw, dtype, device)
        if len(targets) > self.quantities:
            raise ValueError(f"a tracker sized for {self.quantities} quantity cannot "
                             f"measure {len(targets)}")
        info = self.last_info = {"warm": all(t in self.carried for t in targets),
                                 "products": 0}
        kept, warm_spent, info["by_quantity"] = {}, 0, {}
        # the quantities measured before this one hold their results
        for i, t in enumerate(targets):
            cap = self._warm_cap(warm_spent, len(targets) - i)
            before = info["products"]
            kept[t], spent = self._measure_one(t, hvp, dim, dtype, device,
                                               p if t == "pre" else None, info, cap)
            warm_spent += spent
            info["by_quantity"][t] = info["products"] - before
        self.solves += 1
        out = {}
        for t, got in kept.items():
            out[t] = self._adopt(t, got, info["products"])
        return out

    def _warm_cap(self, spent: int, left: int) -> int | None:
        """A warm search's share of ``max_warm_products``: what the searches before it
        left (``spent`` taken), split evenly with the ``left − 1`` after it."""
        if self.max_warm_products is None:
            return None
        return (self.max_warm_products - spent) // left

    def _measure_one(self, t, hvp, dim, dtype, device, p, info, cap) -> tuple[dict, int]:
        """Target ``t``'s result and the products its warm search took (0 if none ran)."""
        if t not in self.carried:
            return self._solve(t, hvp, dim, dtype, device, p, cold=True, info=info), 0
        got = self._solve(t, hvp, dim, dtype, device, p, cold=False, info=info, most=cap)
        spent = got["products"]
        if not got["converged"] and cap is None:
            got = None  # dropped before the cold search starts
            info["cold_after_warm"] = True
            return self._solve(t, hvp, dim, dtype, device, p, cold=True, info=info), spent
        if self.restart_every and self.solves % self.restart_every == 0:
            self.carried[t] = got["starts"]  # held while the probe runs, as a start would be
            probe = self._solve(t, hvp, dim, dtype, device, p, cold=True, info=info)
            del self.carried[t]
            wins = self.probe_wins(probe["values"], got["values"])
            info["probe"] = "adopted" if wins else "kept"
            return (probe if wins else got), spent
        return got, spent

    def _solve(self, t, hvp, dim, dtype, device, p, cold: bool, info: dict,
               most: int | None = None) -> dict:
        """One search of target ``t`` (a warm one of at most ``most`` products); what it
        leaves once its basis is spent."""
        wd = work_dtype(dtype)
        gen = torch.Generator().manual_seed(1000 + 2 * self.solves + (t == "pre"))
        if cold:
            start = torch.randn(dim, dtype=wd, generator=gen).to(device)
        else:  # the rows take the carried vectors over: not held twice
            start = self.carried.pop(t).to(wd).sum(1)
            if p is not None:  # a preconditioned vector u needs the row w = u / √p
                scale_by(start, p, -0.5)
        # the other quantity's slot is kept free whether or not it holds anything yet, so a
        # cold first search stays within the bound a warm one keeps (on gpt-small 4 rows
        # instead of 3 took it from 112 products to 90, and the peak above the bound)
        cap = max(self.max_vectors - 1 - held_lean_vectors(self.k, self.quantities,
                                                           self.eigenvectors), self.k + 2)
        b = ThickLanczos(hvp, p, dtype)
        b.begin(start)
        budget = 2 * self.max_matvecs if cold else most or self.max_matvecs
        upper = None
        before, ratio, settled, err, resid = None, np.inf, False, np.zeros(0), np.zeros(0)
        while b.products < budget:
            if len(b) >= cap:
                # the top k + 1 Ritz vectors: the more rows a cycle adds, the better its
                # filter (on a Hessian-like spectrum a cold search of 5 rows took 15
                # products keeping 2, 19 keeping 4)
                b.compress(b.ritz()[1][:, :self.k + 1])
            fallback = None if b.f is not None else torch.randn(
                dim, dtype=wd, generator=gen).to(device)
            if not b.expand(fallback):
                break
            th, _, resid = b.ritz()
            if not cold:
                upper = upper_estimate(self.next_value.get(t), self.values.get(t), th, self.k)
            err, ratio, _ = stop_ratios(th, resid, self.k, self.tol, self.criterion, cold, upper)
            settled = (self.criterion == "change" and not cold and before is not None
                       and moved(th, before, self.k) <= self.tol)
            before = th[:self.k].copy()
            if ratio <= 1.0 or settled:
                break
        info["products"] += b.products
        th = b.ritz()[0]
        vectors, starts = b.take_top(self.k, self.eigenvectors)
        kk = len(starts)
        return {"values": th, "err": err, "resid": resid[:kk].copy(), "cold": cold,
                "products": b.products,
                "converged": bool(ratio <= 1.0 or settled),
                "vectors": None if vectors is None else block(vectors),
                "starts": block(starts).to(carry_dtype(wd))}

    def _adopt(self, t: str, got: dict, products: int) -> EigResult:
        th, err = got["values"], got["err"]
        k = min(self.k, len(th))
        self.carried[t] = got["starts"]
        self.remember(t, th, err, got["cold"])
        return EigResult(th[:k].copy(), got["vectors"], got["resid"], products,
                         got["converged"], error_estimates=np.asarray(err[:k], float).copy())
