"""Spectral density and trace at equal products: eoskit against PyHessian and curvlinops.

Setting: the benchmark's ``TINY`` data (MNIST-5k, 200 images) with ``fc-tanh``
784-8-8-10 (d = 6,442), eoskit's MSE, float64, at the point after 60 GD steps
at η = 0.1 (the TINY schedule). The reference is exact: the dense Hessian from
d products, its eigenvalues by ``torch.linalg.eigvalsh``.

* trace, ``--products`` products (default 102: a multiple of 3 for Hutch++, even for
  XTrace): eoskit Hutch++ and Hutchinson; curvlinops ``hutchinson_trace``,
  ``hutchpp_trace``, ``xtrace``; PyHessian ``hessian.trace(maxIter, tol=0)``.
  Accuracy: RMS relative error over the repeats.
* density, ``probes × steps`` products: eoskit :func:`eoskit.slq`; curvlinops
  ``fast_lanczos`` (Papyan's Lanczos, no reorthogonalisation, the one under its
  ``lanczos_approximate_spectrum``, here without its extra boundary solves);
  PyHessian ``hessian.density``. PyHessian calls ``torch.eig``, removed in torch 2:
  it is supplied here from ``torch.linalg.eigh`` for its symmetric tridiagonal.
  Every method's nodes and weights are smoothed by the same Gaussian (σ = 1% of
  the spectral width); accuracy: L1 distance to the exact smoothed density, relative
  errors of the first two moments (tr H/d, tr H²/d) and of the top node against λ₁.

Times include each method's setup (its gradient graph); methods alternate within
each repeat. PyHessian draws the same Rademacher bits as eoskit for a seed (both
from torch's CPU generator, in parameter order), so its rows repeat eoskit's
numbers up to rounding: the same estimator, differing in time and
reorthogonalisation. Writes ``benchmarks/results/spectrum.md``.

    OMP_NUM_THREADS=1 python benchmarks/spectrum_peers.py
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from eoskit import hessian_trace, slq
from eoskit.bench.bench_problem import build, set_params
from eoskit.bench.peers import curvlinops_operator, default_dtype, pyhessian_setup
from eoskit.bench.setting import TINY
from eoskit.spectrum import SpectralDensity

OUT = Path(__file__).parent / "results" / "spectrum.md"


def trained_problem(width: int, steps: int):
    prob, x = build(dataclasses.replace(TINY, width=width), "float64")
    for _ in range(steps):
        x = (x - TINY.lr * prob.obj.grad(x)).detach()
    set_params(prob.model, x)
    return prob, x


def dense_eigenvalues(prob, x, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The Hessian's eigenvalues and its diagonal, from the dense matrix."""
    d = prob.dim
    H = torch.empty(d, d, dtype=torch.float64)
    with prob.obj.at(x) as point:
        for lo in range(0, d, block):
            E = torch.zeros(d, min(block, d - lo), dtype=torch.float64)
            E[lo + torch.arange(E.shape[1]), torch.arange(E.shape[1])] = 1.0
            H[:, lo: lo + E.shape[1]] = point.hvp(E)
    return torch.linalg.eigvalsh((H + H.T) / 2).numpy(), torch.diagonal(H).numpy().copy()


def trace_methods(prob, x, products: int) -> dict:
    import curvlinops

    def ours(method):
        return lambda seed: hessian_trace(prob.obj, x, products, method, seed).estimate

    def theirs(fn):
        def run(seed):
            torch.manual_seed(seed)
            return float(fn(curvlinops_operator(prob), products))
        return run

    def pyhessian(seed):
        torch.manual_seed(seed)
        with default_dtype(torch.float64):
            return float(np.mean(pyhessian_setup(prob).trace(maxIter=products, tol=0.0)))

    return {"eoskit Hutch++": ours("hutch++"), "eoskit Hutchinson": ours("hutchinson"),
            "curvlinops hutchpp_trace": theirs(curvlinops.hutchpp_trace),
            "curvlinops xtrace": theirs(curvlinops.xtrace),
            "curvlinops hutchinson_trace": theirs(curvlinops.hutchinson_trace),
            "PyHessian trace": pyhessian}


def density_methods(prob, x, probes: int, steps: int) -> dict:
    from curvlinops.papyan2020traces.spectrum import fast_lanczos

    def ours(seed):
        return slq(prob.obj, x, probes, steps, seed)

    def curv(seed):
        torch.manual_seed(seed)
        A = curvlinops_operator(prob)
        runs = [fast_lanczos(A, steps) for _ in range(probes)]
        return SpectralDensity(np.stack([e.numpy() for e, _ in runs]),
                               np.stack([(v[0] ** 2).numpy() for _, v in runs]), prob.dim,
                               probes * steps)

    def pyhessian(seed):
        torch.manual_seed(seed)
        with default_dtype(torch.float64), _torch_eig():
            nodes, weights = pyhessian_setup(prob).density(iter=steps, n_v=probes)
        return SpectralDensity(np.array(nodes), np.array(weights), prob.dim, probes * steps)

    return {"eoskit slq": ours, "curvlinops fast_lanczos": curv, "PyHessian density": pyhessian}


class _torch_eig:
    """``torch.eig`` (removed in torch 2) for PyHessian's symmetric tridiagonal, from eigh."""

    def __enter__(self):
        def eig(T, eigenvectors=False):
            vals, vecs = torch.linalg.eigh(T)
            return torch.stack([vals, torch.zeros_like(vals)], 1), vecs

        self.had = hasattr(torch, "eig")
        self.old = getattr(torch, "eig", None)
        torch.eig = eig

    def __exit__(self, *exc):
        if self.had:
            torch.eig = self.old
        else:
            del torch.eig


def alternate(methods: dict, repeats: int) -> dict:
    """Each method once per repeat, in turn; (seconds, result) lists per method."""
    out = {name: [] for name in methods}
    for seed in range(repeats):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            res = fn(seed)
            out[name].append((time.perf_counter() - t0, res))
    return out


def density_accuracy(sd: SpectralDensity, eig: np.ndarray, grid, sigma) -> tuple:
    z = (grid[:, None] - eig[None, :]) / sigma
    ref = np.exp(-0.5 * z * z).mean(1) / (sigma * np.sqrt(2 * np.pi))
    l1 = np.trapezoid(np.abs(sd.density(grid, sigma) - ref), grid)
    m1, m2 = eig.mean(), (eig ** 2).mean()
    return (l1, abs(sd.moment(1) - m1) / abs(m1), abs(sd.moment(2) - m2) / m2,
            abs(sd.nodes.max() - eig.max()) / eig.max())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--gd-steps", type=int, default=60)
    ap.add_argument("--products", type=int, default=102)
    ap.add_argument("--probes", type=int, default=4)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=5, help="density seeds")
    ap.add_argument("--trace-repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    prob, x = trained_problem(args.width, args.gd_steps)
    eig, diag = dense_eigenvalues(prob, x)
    ref_s = time.perf_counter() - t0
    truth = float(eig.sum())
    lines = _header(prob, eig, diag, args, ref_s)
    lines += ["", f"## Trace, {args.products} products each, {args.trace_repeats} seeds", "",
              "| method | RMS relative error | median s |", "|---|---|---|"]
    for name, runs in alternate(trace_methods(prob, x, args.products),
                                args.trace_repeats).items():
        err = np.sqrt(np.mean([((r - truth) / truth) ** 2 for _, r in runs]))
        lines.append(f"| {name} | {err:.2e} | {statistics.median(t for t, _ in runs):.2f} |")
    sigma = 0.01 * (eig.max() - eig.min())
    grid = np.linspace(eig.min() - 6 * sigma, eig.max() + 6 * sigma, 4001)
    lines += ["", f"## Density, {args.probes} probes × {args.steps} steps = "
              f"{args.probes * args.steps} products each, {args.repeats} seeds (means)", "",
              "| method | L1 to exact | rel. err. tr H/d | rel. err. tr H²/d | top node vs λ₁ "
              "| median s |", "|---|---|---|---|---|---|"]
    for name, runs in alternate(density_methods(prob, x, args.probes, args.steps),
                                args.repeats).items():
        acc = np.mean([density_accuracy(sd, eig, grid, sigma) for _, sd in runs], axis=0)
        lines.append(f"| {name} | " + " | ".join(f"{a:.2e}" for a in acc)
                     + f" | {statistics.median(t for t, _ in runs):.2f} |")
    lines += ["", f"load average at the end: {os.getloadavg()[0]:.1f} (1 min), "
              f"{os.getloadavg()[1]:.1f} (5 min); total {time.perf_counter() - t0:.0f} s."]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _header(prob, eig, diag, args, ref_s) -> list[str]:
    sq = np.sort(eig ** 2)[::-1]
    top, on_diag = sq[: args.products // 3].sum() / sq.sum(), (diag ** 2).sum() / sq.sum()
    return ["# Spectrum: eoskit against PyHessian and curvlinops (issue 23)", "",
            "Run: `OMP_NUM_THREADS=1 python benchmarks/spectrum_peers.py` (defaults), CPU, "
            f"torch {torch.__version__}, 1 thread.", "",
            f"Setting: TINY data (MNIST-5k, {prob.n} images), fc-tanh 784-{args.width}-"
            f"{args.width}-10 (d = {prob.dim}), MSE, float64, after {args.gd_steps} GD steps "
            f"at η = {TINY.lr}. Exact reference: dense Hessian ({prob.dim} products) and "
            f"eigvalsh, {ref_s:.0f} s. λ₁ = {eig.max():.6g}, λ_min = {eig.min():.6g}, "
            f"tr H = {eig.sum():.6g}, tr H² = {(eig ** 2).sum():.6g}. A Rademacher "
            "Hutchinson sample's variance is 2·(‖H‖_F² − Σ H_ii²): the diagonal holds "
            f"{on_diag:.0%} of ‖H‖_F² here. Hutch++ deflates the top {args.products // 3} "
            f"directions ({top:.0%} of ‖H‖_F²) but keeps only a third of the products "
            "for the rest."]


if __name__ == "__main__":
    main()
