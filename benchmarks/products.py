"""Hessian-vector product engines on a GPT-2-style Transformer: time, memory, error, routing.

The model of issue 22: ``transformers.GPT2Config(n_layer=4, n_embd=256, n_head=4,
vocab_size=8192, n_positions=128)`` (d = 5.29M), a batch of 8×128 token ids, next-token
cross-entropy, float32. For each engine (``hvp_method``):

* time per product in units of one gradient: every engine and the gradient are timed in
  turn, ``--repeats`` rounds in one process, medians compared (a retained point's build
  and its further products are separate rows);
* peak memory above the gradient's own peak: on CPU each engine runs in a fresh child
  process (the resident set's peak during one product minus during one gradient, each
  above its start, sampled every millisecond); on CUDA ``torch.cuda.max_memory_allocated``
  of a product minus of a gradient;
* relative error against double backward: float32 at full size (against ``retained``),
  and float64 on a smaller config (``--small``: float64 at full size is slow on 2 cores);
* the exact-derivative routing before/after: the gradient and a retained product with
  every layer routed (what every call did before) against the routing each order needs.

    nice -n 10 python benchmarks/products.py --threads 2 --repeats 5
    python benchmarks/products.py --device cuda --repeats 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import warnings

import torch
import transformers
from torch import nn

from eoskit.objective import ModelObjective

ENGINES = ["retained", "rev-rev", "fwd-rev", "fd", "fd+compile"]
NO_DROPOUT = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # a deterministic loss
FULL = dict(n_layer=4, n_embd=256, n_head=4, vocab_size=8192, n_positions=128, **NO_DROPOUT)
SMALL = dict(n_layer=2, n_embd=64, n_head=4, vocab_size=512, n_positions=32, **NO_DROPOUT)


class Logits(nn.Module):
    """A GPT-2 language model returning its logits (N, P, V)."""

    def __init__(self, config: dict):
        super().__init__()
        self.gpt = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config))

    def forward(self, ids):
        return self.gpt(ids.long()).logits


class AlwaysRouted(ModelObjective):
    """Every term under the full exact-derivative routing, whatever the order: as before."""

    def exact_terms(self, needs: str = "any"):
        return super().exact_terms("any")


def build(config: dict, batch: int, dtype, device, method="retained", routed=False):
    torch.manual_seed(0)
    model = Logits(config).to(dtype=dtype, device=device)
    ids = torch.randint(0, config["vocab_size"], (batch, config["n_positions"] + 1),
                        generator=torch.Generator().manual_seed(1)).to(device)
    cls = AlwaysRouted if routed else ModelObjective
    return cls(model, "ce", ids[:, :-1], ids[:, 1:], dtype=dtype, device=device,
               hvp_method=method, count_correct=False)


def direction(obj) -> torch.Tensor:
    gen = torch.Generator().manual_seed(2)
    v = torch.randn(obj.dim, generator=gen, dtype=torch.float64)
    return (v / v.norm()).to(dtype=obj.dtype, device=obj.device)


def product(obj, x, v) -> torch.Tensor:
    with obj.at(x) as point:
        return point.hvp(v)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_rows(args, device) -> dict[str, float]:
    """Median seconds of each operation, all alternated in one process."""
    objs = {m: build(FULL, args.batch, torch.float32, device, m) for m in ENGINES}
    routed = build(FULL, args.batch, torch.float32, device, "retained", routed=True)
    x = objs["retained"].x0()
    v = direction(objs["retained"])
    held: dict[str, object] = {}

    def retained_build():
        held["point"] = objs["retained"].at(x)

    def retained_next():
        held.pop("point").hvp(v)

    ops = {"gradient": lambda: objs["retained"].value_grad_aux(x),
           "gradient, all routed (before)": lambda: routed.value_grad_aux(x),
           "retained: build the point": retained_build,
           "retained: a product at a held point": retained_next,
           "retained: build + 1 product, all routed (before)": lambda: product(routed, x, v),
           **{m: (lambda m=m: objs[m].product(x, v)) for m in ENGINES if m != "retained"}}
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        if "fd+compile" in objs:
            objs["fd+compile"].product(x, v)  # compile once, outside the timed rounds
    compile_s = time.perf_counter() - start
    for op in ops.values():  # warm-up round
        op()
    times: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(args.repeats):
        for name, op in ops.items():
            sync(device)
            t0 = time.perf_counter()
            op()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    rows = {name: statistics.median(ts) for name, ts in times.items()}
    if "fd+compile" in objs:
        rows["fd+compile: compile seconds"] = compile_s
        rows["fd+compile: fell back to eager"] = float(bool(caught))
    return rows


def errors(config: dict, batch: int, dtype, device, reference: str) -> dict[str, float]:
    objs = {m: build(config, batch, dtype, device, m) for m in ENGINES}
    x = objs[reference].x0()
    v = direction(objs[reference])
    want = objs[reference].product(x, v)
    return {m: float((objs[m].product(x, v) - want).norm() / want.norm())
            for m in ENGINES if m != reference}


def peak_above_gradient(args, method: str, device) -> float:
    """MB by which one product's peak exceeds one gradient's (this process only)."""
    obj = build(FULL, args.batch, torch.float32, device, method)
    x, v = obj.x0(), direction(obj)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        obj.value_grad_aux(x)
        grad_peak = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        product(obj, x, v)
        return (torch.cuda.max_memory_allocated() - grad_peak) / 2 ** 20
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        product(obj, x, v)  # warm-up (a compile, lazily built state)
        grad_peak = rss_peak_above_start(lambda: obj.value_grad_aux(x))
        return (rss_peak_above_start(lambda: product(obj, x, v)) - grad_peak) / 2 ** 20


def rss_peak_above_start(op) -> int:
    """Bytes by which the resident set peaks above its size at the start of ``op``.

    A thread samples /proc/self/statm every millisecond (torch releases the GIL in its
    kernels); the parent runs this child with a fixed mmap threshold so large freed
    tensors leave the resident set at once instead of staying in malloc's arenas.
    """
    page = resource.getpagesize()

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    start, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        op()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], rss()) - start


def memory_rows(args, device) -> dict[str, float]:
    if device.type == "cuda":
        return {m: peak_above_gradient(args, m, device) for m in ENGINES}
    rows = {}
    for m in ENGINES:  # a fresh process each: the CPU high-water mark never goes down
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
        out = subprocess.run([sys.executable, __file__, "--memory-of", m, "--threads",
                              str(args.threads), "--batch", str(args.batch)],
                             capture_output=True, text=True, check=True, env=env)
        rows[m] = float(out.stdout.strip().splitlines()[-1])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--no-compile", action="store_true", help="leave out fd+compile "
                    "(its inductor build takes minutes on a loaded 2-core CPU)")
    ap.add_argument("--timing-only", action="store_true", help="only the time rows")
    ap.add_argument("--memory-of", help=argparse.SUPPRESS)  # the child of memory_rows
    args = ap.parse_args()
    if args.no_compile:
        ENGINES.remove("fd+compile")
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    device = torch.device(args.device)
    if args.memory_of:
        print(peak_above_gradient(args, args.memory_of, device))
        return
    timed = timed_rows(args, device)
    grad = timed["gradient"]
    report = {
        "device": str(device), "threads": args.threads, "repeats": args.repeats,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "seconds": {k: round(t, 4) for k, t in timed.items()},
        "in_gradients": {k: round(t / grad, 3) for k, t in timed.items()
                         if not k.startswith("fd+compile:")},
        "loadavg_end": open("/proc/loadavg").read().split()[:3],
    }
    if not args.timing_only:
        report.update({
            "peak_mb_above_gradient": {k: round(mb, 1)
                                       for k, mb in memory_rows(args, device).items()},
            "rel_error_float32_full_vs_retained": errors(FULL, args.batch, torch.float32,
                                                         device, "retained"),
            "rel_error_float64_small_vs_rev_rev": errors(SMALL, 4, torch.float64, device,
                                                         "rev-rev"),
            "dim": build(FULL, 1, torch.float32, device).dim,
            "dim_small": build(SMALL, 1, torch.float64, device).dim,
            "loadavg_end": open("/proc/loadavg").read().split()[:3],
        })
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
