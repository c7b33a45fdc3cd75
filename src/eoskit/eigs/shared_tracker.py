"""Raw and preconditioned sharpness along a trajectory from one shared set of products.

:class:`SharedTracker` measures the top-k eigenvalues of ``H`` and, given an
optimiser's diagonal preconditioner ``p``, of ``P^{-1/2} H P^{-1/2}`` in one
:class:`~eoskit.eigs.shared_basis.SharedBasis`: every product grows both
searches. A warm measurement starts from the last raw and the last
preconditioned top vectors, each advanced by one free power step (their
images are known), so both estimates cost ``2k`` products; further products
(residuals of the worst unconverged pair) are taken only while an error bound
exceeds ``tol``. A full basis restarts thick, keeping each target's top Ritz vectors and,
where the budget leaves room, its top ones of one row before (:func:`_kept`, GD+k).

The bound is that of the eigenvalue criterion (:func:`~eoskit.eigs.krylov.eigenvalue_bounds`):
``min(‖r‖, ‖r‖²/gap)`` with the gap to λ_{k+1}. A warm basis of ``2k`` vectors
knows nothing of λ_{k+1}, so it is carried: the last measurement's estimate,
shifted by how far the top values moved since and raised to this basis's own
(k+1)-th Ritz value (by interlacing a lower bound of λ_{k+1}). The estimate is
refreshed at every cold solve and whenever the basis grows past ``2k + 1``
rows. A warm solve that does not converge within ``max_matvecs`` products is
replaced by a cold one (random start, same basis bound), unless
``max_warm_products`` caps it: then the warm solve stops there and its values are
reported with their error estimates (``EigResult.error_estimates``, ``converged``
False), the estimate a few warm products per measurement can give (each measurement
continues the last one's iteration). Each estimate would bound the error for exact
products and a known gap; a warm one rests on the carried λ_{k+1} estimate, so where the
top eigenvectors turn faster than the solve follows (a capped one above all) the true
error can exceed it (``benchmarks/results/monitor.md`` counts how often); every
``restart_every`` measurements a cold probe runs as well and replaces a
target's values only when its top-k sum is larger (Ritz values are lower bounds).

``criterion`` is the stopping test of the top k: ``"eigenvalue"`` (default) the estimate
above ≤ ``tol·|θ|``; ``"residual"`` ``‖r‖ ≤ tol·|θ|`` (stricter); ``"change"`` also stops
a *warm* solve once an expansion moved no top-k value by more than ``tol·|θ|``, the rule
power iteration in PyHessian and hessian-eigenthings stops on. It can stop early on a
stagnating search: the values it reports are estimates, each still with the eigenvalue
criterion's error estimate (cold solves keep the eigenvalue test: they set the λ_{k+1}
estimate the warm ones use).

Memory, for ``T`` quantities (2: raw and preconditioned; 1: one of them): rows and images
(``2·max_basis`` at most; a thick restart rewrites them in place), the carried vectors
(``T·k``; a warm solve's rows take them over, so they are not held twice), the results (``T·k``
next starts, and ``T·k`` Ritz vectors unless ``eigenvectors=False``) and four temporaries, all
in the work dtype; ``p`` is the caller's (sliced only: the Monitor's is read off the
optimiser's state a slice at a time). ``max_vectors`` (default
:func:`~eoskit.eigs.shared_budget.default_shared_vectors`) sets the basis bound,
``(max_vectors − held) // 2`` rows with at least ``2k + 3``; the accounting
(:func:`~eoskit.eigs.shared_budget.held_vectors`) still counts the carried vectors apart,
so it is an upper bound.

Example:
    >>> import torch
    >>> H = torch.diag(torch.linspace(0.0, 5.0, 30, dtype=torch.float64))
    >>> p = torch.linspace(1.0, 2.0, 30, dtype=torch.float64)
    >>> tr = SharedTracker(1, 1e-8)
    >>> out = tr.measure(lambda v: H @ v, 30, torch.float64, "cpu", p)
    >>> round(float(out["raw"].eigenvalues[0]), 6), round(float(out["pre"].eigenvalues[0]), 6)
    (5.0, 2.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from eoskit._threads import limit_blas_threads
from eoskit.eigs.krylov import EigResult, norm, work_dtype
from eoskit.eigs.shared_basis import SharedBasis, scale_by
from eoskit.eigs.shared_budget import default_shared_vectors, held_vectors, min_rows
from eoskit.eigs.warm_stopping import moved, stop_ratios, upper_estimate
from eoskit.eigs.warm_tracker import WarmTracker, block


def _done(state: dict) -> bool:
    """A target's solve may stop: its test passed, or (``"change"``) its values settled."""
    return state["ratio"] <= 1.0 or state.get("settled", False)


def _kept(coef: Tensor, last: Tensor | None, each: int) -> tuple[Tensor, int]:
    """What a thick restart keeps of one target, (m, ≤ each) coefficients, and how many of
    them are its current Ritz vectors (their pairs survive the restart unchanged).

    Its top ``each`` Ritz vectors; or, given ``last`` (m − 1, k), the top k of the basis
    before its last row, and room for them beside the k + 1 a cold solve converges
    (``each ≥ 2k + 1``): its top ``each − k`` and those (GD+k, the restart of Davidson
    methods that keeps the direction the last step moved in, as LOBPCG keeps its P block).
    A restart that keeps only Ritz vectors forgets it: on a top pair 1% apart (the
    preconditioned sharpness of the issue-22 GPT-2) a one-target cold solve with 5 rows
    took 59 products, with GD+k 31.
    """
    if last is None or each < 2 * last.shape[1] + 1:
        return coef[:, :each], min(each, coef.shape[1])
    mine = coef[:, :each - last.shape[1]]
    before = coef.new_zeros(coef.shape[0], last.shape[1])
    before[:last.shape[0]] = last  # the basis then was this one less its last row
    return torch.cat([mine, before], 1), mine.shape[1]


@dataclass
class SharedTracker(WarmTracker):
    """Top-k of the raw and the preconditioned Hessian, warm-started, from shared products."""

    image_dtype: torch.dtype | None = None  # the basis's images kept narrower (bfloat16)

    def __post_init__(self):
        self.check_options()
        if self.max_vectors is None:
            self.max_vectors = default_shared_vectors(self.k, self.quantities, self.eigenvectors)
        self.max_basis(self.quantities)

    def max_basis(self, quantities: int = 2) -> int:
        """Rows a basis of ``quantities`` targets may hold under ``max_vectors``:
        ``(max_vectors − held) // 2`` (:func:`~eoskit.eigs.shared_budget.held_vectors`), or
        as many rows as fit when the images are kept narrower (a bfloat16 image counts as
        half a float32 vector)."""
        row = 1 + (1.0 if self.image_dtype is None else min(
            torch.finfo(self.image_dtype).bits / 32, 1.0))  # a row and its image
        held = held_vectors(self.k, quantities, self.eigenvectors)
        cap = int((self.max_vectors - held) // row)
        if cap < min_rows(self.k):
            least = held + math.ceil(min_rows(self.k) * row)
            raise ValueError(f"max_vectors must be at least {least} for k = {self.k} and "
                             f"{quantities} quantit{'y' if quantities == 1 else 'ies'}, "
                             f"got {self.max_vectors}")
        return cap

    def measure(self, hvp, dim: int, dtype, device, p: Tensor | None = None,
                raw: bool = True) -> dict[str, EigResult]:
        """Top-k pairs of ``H`` (``"raw"``) and, with ``p`` (d,), of ``P^{-1/2}HP^{-1/2}``
        (``"pre"``) at the current point. Each result's ``n_matvecs`` is the shared count.
        ``raw=False`` (needs ``p``): the preconditioned operator alone."""
        limit_blas_threads()
        p, targets = self.targets_for(p, raw, dtype, device)
        self.max_basis(len(targets))  # a budget sized for one quantity may not hold two
        warm = all(t in self.carried for t in targets)
        info = self.last_info = {"warm": warm, "products": 0}  # _probe notes its outcome here
        # each solve is harvested (its results and next starts kept, its basis dropped)
        # before another one starts, so two bases are never held at once
        if warm:
            solve = self._solve(hvp, dim, dtype, device, p, targets, cold=False)
            if not solve["converged"] and self.max_warm_products is None:
                info["cold_after_warm"] = True
                spent = solve["products"]
                solve = None
                solve = self._solve(hvp, dim, dtype, device, p, targets, cold=True)
                solve["products"] += spent
                kept = self._harvest(solve, targets)
            elif self.restart_every and self.solves % self.restart_every == 0:
                kept = self._harvest(solve, targets)
                solve = None
                kept = self._probe(kept, hvp, dim, dtype, device, p, targets)
            else:
                kept = self._harvest(solve, targets)
        else:
            solve = self._solve(hvp, dim, dtype, device, p, targets, cold=True)
            kept = self._harvest(solve, targets)
        solve = None
        info["products"] = kept["products"]
        self.solves += 1
        return self._adopt(kept)

    # ---- one solve
    def _solve(self, hvp, dim, dtype, device, p, targets, cold: bool) -> dict:
        wd = work_dtype(dtype)
        b = SharedBasis(hvp, p, dtype, targets, image_dtype=self.image_dtype)
        gen = torch.Generator().manual_seed(1000 + self.solves)
        budget = 2 * self.max_matvecs if cold else self.max_warm_products or self.max_matvecs
        for v in self._starts(dim, wd, device, p, gen, cold, targets):
            w = b.orthogonal(v)
            if w is not None and b.products < budget:
                b.add(w)
        # per target, its top-k values before its own last expansion: another target's
        # expansion barely moves them, and must not make them look settled
        cap, before = self.max_basis(len(b.targets)), {}
        last, known = {}, {}  # the top k before the last row; residuals a restart kept
        while True:
            state = {t: self._check(b, t, cold, known.get(t)) for t in b.targets}
            known = {}
            if self.criterion == "change" and not cold:
                for t in before:
                    state[t]["settled"] = moved(state[t]["ritz"].values, before[t],
                                                 self.k) <= self.tol
            open_ = [t for t, st in state.items() if not _done(st)]
            if not open_ or b.products >= budget:
                break
            if len(b) >= cap:
                each = (cap - 1) // len(b.targets)  # at least k + 1 per target
                kept = {t: _kept(state[t]["ritz"].coef, last.get(t), each) for t in b.targets}
                b.compress(torch.cat([c for c, _ in kept.values()], 1))
                # a Ritz pair whose vector the restart kept is a Ritz pair of the smaller
                # space too, with the same residual: not formed again (a pass over the basis)
                known = {t: state[t]["resid"][:n] for t, (_, n) in kept.items()}
                continue
            last = {t: state[t]["ritz"].coef[:, :self.k] for t in b.targets}
            worst = max(open_, key=lambda t: state[t]["ratio"])
            before[worst] = state[worst]["ritz"].values[:self.k].copy()
            st = state[worst]
            i = st["index"]
            new = b.orthogonal(b.expansion(worst, st["ritz"].coef[:, i], st["ritz"].values[i]))
            if new is None:
                new = b.orthogonal(torch.randn(dim, dtype=wd, generator=gen).to(device))
            if new is None:
                break
            b.add(new)
        return {"basis": b, "state": state, "products": b.products, "cold": cold,
                "converged": all(_done(s) for s in state.values())}

    def _starts(self, dim, wd, device, p, gen, cold, targets):
        """Start rows, one at a time: the carried vectors of the targets (each as the row
        ``w`` it needs), or one random vector."""
        if cold:
            yield torch.randn(dim, dtype=wd, generator=gen).to(device)
            return
        # the rows take the carried vectors over (no copies held beside the basis); a solve
        # that raises leaves nothing carried, and the next measurement starts cold
        carried, self.carried = self.carried, {}
        if "raw" in targets:
            for c in carried.pop("raw").T:
                yield c.to(wd).contiguous()
        if "pre" in targets:  # a preconditioned vector u needs the row w = D u = u / √p
            for c in carried.pop("pre").T:
                yield scale_by(c.to(wd).contiguous(), p, -0.5)

    def _check(self, b: SharedBasis, target: str, cold: bool,
               known: np.ndarray | None = None) -> dict:
        """Ritz values, residual norms and error bounds of the top k of one target;
        ``known``: the residual norms of its top pairs where they are already known."""
        ritz = b.ritz(target)
        # a cold solve converges λ_{k+1} too: the warm solves' gap is carried from it
        th = ritz.values
        q = min(len(th), (self.k + 1 if cold else self.k) + 1)
        known = () if known is None else known
        resid = np.array([known[i] if i < len(known) else
                          b.residual_norm(target, ritz.coef[:, i], float(th[i]))
                          for i in range(q)])
        upper = None if cold else upper_estimate(self.next_value.get(target),
                                                 self.values.get(target), th, self.k)
        err, ratio, i = stop_ratios(th, resid, self.k, self.tol, self.criterion, cold, upper)
        return {"ritz": ritz, "resid": resid, "err": err, "ratio": ratio, "index": i}

    def _probe(self, warm: dict, hvp, dim, dtype, device, p, targets) -> dict:
        """A cold solve after the (harvested) warm one; the larger top-k sum wins, per target."""
        cold = self._solve(hvp, dim, dtype, device, p, targets, cold=True)
        total = warm["products"] + cold["products"]
        wins = all(self.probe_wins(cold["state"][t]["ritz"].values,
                                   warm["targets"][t]["values"]) for t in targets)
        self.last_info["probe"] = "adopted" if wins else "kept"
        if wins:
            # the caller's dict: its vectors go before the cold ones are built
            warm["targets"].clear()
            best = self._harvest(cold, targets)
        else:
            best = warm
        return {**best, "products": total}

    # ---- results and what is carried
    def _harvest(self, solve: dict, targets) -> dict:
        """What a solve leaves once its basis goes: per target all Ritz values, their error
        estimates, whether it converged, the top-k residuals, Ritz vectors and next starts
        (each Ritz vector advanced by one power step: its image is known)."""
        b, out = solve["basis"], {}
        coefs = {t: solve["state"][t]["ritz"].coef for t in targets}
        ks = {t: min(self.k, len(solve["state"][t]["ritz"].values)) for t in targets}
        vectors = {t: block([b.vector(t, coefs[t][:, i]) for i in range(ks[t])]) if (
            self.eigenvectors) else None for t in targets}
        # the next starts need only the images: the rows go first, so the starts are not
        # built beside the whole basis (its peak would be there otherwise)
        b.rows.clear()
        for t in targets:
            st = solve["state"][t]
            k = ks[t]
            out[t] = {"values": st["ritz"].values.copy(), "err": st["err"],
                      "resid": st["resid"][:k].copy(), "converged": _done(st),
                      "vectors": vectors[t],
                      "starts": block([s.div_(norm(s)) for s in
                                        (b.image(t, coefs[t][:, i]) for i in range(k))])}
        return {"targets": out, "products": solve["products"], "cold": solve["cold"]}

    def _adopt(self, kept: dict) -> dict[str, EigResult]:
        out = {}
        for t, got in kept["targets"].items():
            th, err = got["values"], got["err"]
            k = min(self.k, len(th))
            self.carried[t] = got["starts"]
            self.remember(t, th, err, kept["cold"])
            out[t] = EigResult(th[:k].copy(), got["vectors"], got["resid"], kept["products"],
                               got["converged"], error_estimates=np.asarray(err[:k], float).copy())
        return out
